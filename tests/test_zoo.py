"""Model files: round trip, fingerprints, and refusal of altered or foreign files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from vqcodec.errors import ModelError
from vqcodec.registry import DECODES_KEY
from vqcodec.zoo import fingerprint, load_model, resolve, save_model, shipped_models


def test_default_model_ships_and_loads(default_model) -> None:
    assert "default" in shipped_models()
    assert default_model.name == "default"
    assert not default_model.net.training
    assert shipped_models()["default"].stat().st_size < 30 * 2**20


def test_round_trip_keeps_weights_and_fingerprint(tiny_model, tmp_path: Path) -> None:
    path = tmp_path / "copy.safetensors"
    digest = save_model(tiny_model.net, tiny_model.prior, path)
    again = load_model(path)
    assert digest == tiny_model.fingerprint == again.fingerprint
    for (k, a), (_, b) in zip(tiny_model.net.state_dict().items(), again.net.state_dict().items()):
        assert torch.equal(a, b), k


def test_altered_model_file_is_refused(tiny_model_path: Path, tmp_path: Path) -> None:
    data = bytearray(tiny_model_path.read_bytes())
    data[-100] ^= 0x01  # inside the tensor data
    altered = tmp_path / "altered.safetensors"
    altered.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="fingerprint"):
        load_model(altered)


def test_non_model_files_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError):
        load_model(junk)
    with pytest.raises(ModelError, match="no model named"):
        resolve("no-such-model")


def test_shipped_models_have_cards_and_stay_within_30_mb() -> None:
    """The guide's budget for shipped weights, and a model card beside each model file."""
    from vqcodec import registry

    paths = registry.shipped_models().values()
    assert sum(p.stat().st_size for p in paths) <= 30 * 10**6
    for path in paths:
        card = path.with_suffix(".md").read_text()
        assert card.startswith(f"# Model card: `{path.stem}`"), path
        for part in ("## Exact commands", "## Training data", "## Results on Kodak"):
            assert part in card, (path.stem, part)


def _trained_ema(tiny_model) -> torch.nn.Module:
    """A copy of the tiny model's network whose codebooks took EMA steps (counts no longer all one)."""
    import copy

    net = copy.deepcopy(tiny_model.net).train()
    torch.manual_seed(3)
    for stage in net.quantizer.stages:
        stage(torch.randn(200, stage.dim) * 0.2)
    return net.eval()


def test_model_files_leave_the_ema_sums_out_and_loading_rebuilds_them(tiny_model, tmp_path: Path) -> None:
    from safetensors import safe_open

    net = _trained_ema(tiny_model)
    path = tmp_path / "ema.safetensors"
    save_model(net, tiny_model.prior, path)
    with safe_open(str(path), "pt") as f:
        assert not [k for k in f.keys() if k.endswith("embed_sum")]
    loaded = load_model(path)
    for a, b in zip(net.quantizer.stages, loaded.net.quantizer.stages):
        assert torch.equal(a.codebook, b.codebook) and torch.equal(a.cluster_size, b.cluster_size)
        assert not torch.equal(a.cluster_size, torch.ones_like(a.cluster_size))
        assert torch.allclose(a.embed_sum, b.embed_sum, rtol=1e-5, atol=1e-7)


def test_older_files_with_ema_sums_still_load_with_them(tiny_model, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from vqcodec.zoo import FORMAT_TAG, fingerprint

    net = _trained_ema(tiny_model)
    path = tmp_path / "new.safetensors"
    save_model(net, tiny_model.prior, path)
    tensors = load_file(str(path))
    tensors.update({k: v.contiguous() for k, v in net.state_dict().items() if k.endswith("embed_sum")})
    config = net.config.to_json()
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={"format": FORMAT_TAG, "config": config,
                                           "fingerprint": fingerprint(tensors, config).hex()})
    loaded = load_model(old)
    for a, b in zip(net.quantizer.stages, loaded.net.quantizer.stages):
        assert torch.equal(a.embed_sum, b.embed_sum)
    # the sums are covered by the fingerprint of a file that has them
    tensors["quantizer.stages.0.embed_sum"] = tensors["quantizer.stages.0.embed_sum"] + 1
    save_file(tensors, str(old), metadata={"format": FORMAT_TAG, "config": config,
                                           "fingerprint": fingerprint(load_file(str(path)), config).hex()})
    with pytest.raises(ModelError, match="fingerprint"):
        load_model(old)


def test_a_model_made_from_a_recounted_one_reads_its_files_with_their_shared_prior(tiny_model, tmp_path: Path) -> None:
    """A fine-tune of a model that carries its ancestors' prior keeps that model's prior: files of the
    model it was made from decode with `prior`, the older ones with `decodes_prior`; the count is covered
    by the fingerprint."""
    recounted = tmp_path / "recounted.safetensors"
    save_model(tiny_model.net, tiny_model.prior, recounted, decodes=(b"\x01" * 32,), decodes_prior=tiny_model.prior)
    carrier = load_model(recounted)
    assert carrier.lineage[2] == 1 and tiny_model.lineage[2] == 0
    tuned = tmp_path / "tuned.safetensors"
    save_model(carrier.net, carrier.prior, tuned, carrier.rate_weights, *carrier.lineage)
    model = load_model(tuned)
    assert model.decodes == (carrier.fingerprint, b"\x01" * 32) and model.own_prior_decodes == 1
    assert model.prior_for(carrier.fingerprint[:8]) is model.prior
    assert model.prior_for(b"\x01" * 8) is model.decodes_prior
    assert model.lineage[2] == 2
    tensors, meta = load_file(str(tuned)), safe_open(str(tuned), "pt").metadata()
    meta["decodes_own_prior"] = "0"
    forged = tmp_path / "forged.safetensors"
    forged.write_bytes(save(tensors, metadata=meta))
    with pytest.raises(ModelError, match="fingerprint"):
        load_model(forged)
    for bad in ("x", "2", "-1"):
        meta["decodes_own_prior"] = bad
        forged.write_bytes(save(tensors, metadata=meta))
        with pytest.raises(ModelError, match="bad 'decodes_own_prior'"):
            load_model(forged)
    with pytest.raises(ValueError, match="leave some"):
        save_model(carrier.net, carrier.prior, tmp_path / "x.safetensors", None, carrier.lineage[0], None, 1)


def test_a_prior_for_the_decoded_models_needs_them(tiny_model, tmp_path: Path) -> None:
    """`decodes_prior` (the prior of the models a recounted model still reads) round-trips with its `decodes`,
    and is refused without them, whether saved or found in a file."""
    path = tmp_path / "reads.safetensors"
    with pytest.raises(ValueError, match="decodes"):
        save_model(tiny_model.net, tiny_model.prior, path, decodes_prior=tiny_model.prior)
    save_model(tiny_model.net, tiny_model.prior, path, decodes=(tiny_model.fingerprint,), decodes_prior=tiny_model.prior)
    model = load_model(path)
    assert model.prior_for(tiny_model.fingerprint) is model.decodes_prior is not model.prior
    np.testing.assert_array_equal(model.decodes_prior.counts, tiny_model.prior.counts)
    tensors, meta = load_file(str(path)), safe_open(str(path), "pt").metadata()
    del meta[DECODES_KEY]
    meta["fingerprint"] = fingerprint(tensors, meta["config"]).hex()
    orphan = tmp_path / "orphan.safetensors"
    orphan.write_bytes(save(tensors, metadata=meta))
    with pytest.raises(ModelError, match="no `decodes` list"):
        load_model(orphan)
