"""More residual stages for a trained model (`vqcodec add-stages`): old stages, tables and files kept, new ones fitted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import vqcodec
from vqcodec import codec, pricing
from vqcodec.entropy import ContextPrior
from vqcodec.model import VQVAE, ModelConfig
from vqcodec.stage_extension import fit_stage
from vqcodec.zoo import load_model, save_model

from tests.conftest import TINY, run_cli, synthetic_image, write_photos


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos"), 3, (64, 48))


@pytest.fixture(scope="module")
def priced_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINY (3 stages) with a random context prior and rate weights, as a model file."""
    rng = np.random.default_rng(0)
    k, s, g = TINY.codebook_size, TINY.num_stages, 4
    prior = ContextPrior(rng.integers(1, 50, size=(s, g + 1, k)) ** 2, rng.integers(0, g, size=(s, k)))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("priced") / "priced.safetensors"
    save_model(VQVAE(TINY).eval(), prior, path, pricing.stage_weights(s, [0.002]))
    return path


@pytest.fixture(scope="module")
def extended(tmp_path_factory: pytest.TempPathFactory, priced_path: Path, photos: Path) -> Path:
    out = tmp_path_factory.mktemp("extended") / "longer.safetensors"
    done = run_cli("add-stages", str(priced_path), "--data", str(photos), "--stages", "5", "--out", str(out),
                    "--rate-weight", "0.001", "--views", "2", "--count-views", "2", "--rounds", "2")
    assert done.returncode == 0, done.stderr
    assert "stage: stage 5" in done.stderr and "counts: done 3/3" in done.stderr
    return out


def test_extended_model_keeps_every_old_stage_table_and_default(priced_path: Path, extended: Path) -> None:
    old, new = load_model(priced_path), load_model(extended)
    assert new.config.num_stages == 5 and new.config.default_quality == codec.default_quality(old) == 3
    assert codec.default_quality(new) == 3 and len(codec.quality_levels(new)) == 7
    for name, tensor in old.net.state_dict().items():
        assert torch.equal(new.net.state_dict()[name], tensor), name
    assert isinstance(new.prior, ContextPrior)
    np.testing.assert_array_equal(new.prior.counts[:3], old.prior.counts)
    np.testing.assert_array_equal(new.prior.groups[:3], old.prior.groups)
    np.testing.assert_array_equal(new.rate_weights, [0.0, 0.002, 0.002, 0.001, 0.001])
    assert new.decodes == (old.fingerprint,)
    report = json.loads(extended.with_suffix(".json").read_text())
    energies = [s["residual_energy"] for s in report["new_stages"]]
    assert [s["stage"] for s in report["new_stages"]] == [4, 5] and energies[1] < energies[0]


def test_extended_model_reads_old_files_and_codes_old_qualities_alike(priced_path: Path, extended: Path) -> None:
    old, new = load_model(priced_path), load_model(extended)
    image = synthetic_image(size=(72, 40), seed=7)
    data = vqcodec.compress(image, old, quality=3)
    assert np.array_equal(np.asarray(vqcodec.decompress(data, new)), np.asarray(vqcodec.decompress(data, old)))
    for q in (1, 3):
        a = codec.decompress_indices(vqcodec.compress(image, old, q, effort=0), old)[2]
        b = codec.decompress_indices(vqcodec.compress(image, new, q, effort=0), new)[2]
        np.testing.assert_array_equal(a, b)
    top = codec.decompress_indices(vqcodec.compress(image, new, 5), new)[2]
    assert top.shape[0] == 5


def test_a_carried_prior_gets_the_new_stages_and_still_reads_the_ancestors_files(
        tmp_path: Path, priced_path: Path, photos: Path) -> None:
    """A model whose prior was counted again carries its ancestor's (`decodes_prior`); the longer model
    carries it on, with the new stages' tables appended, so the ancestor's files decode as before."""
    from vqcodec.data import find_images
    from vqcodec.stage_extension import extend_stages

    ancestor = load_model(priced_path)
    rng = np.random.default_rng(5)
    k, s, g = TINY.codebook_size, TINY.num_stages, 4
    recounted = ContextPrior(rng.integers(1, 50, size=(s, g + 1, k)) ** 2, rng.integers(0, g, size=(s, k)))
    carrier_path = tmp_path / "carrier.safetensors"
    save_model(ancestor.net, recounted, carrier_path, ancestor.rate_weights, (ancestor.fingerprint,), ancestor.prior)
    carrier = load_model(carrier_path)
    longer = extend_stages(carrier, find_images(photos), 5, views=2, count_views=2, rounds=1)
    theirs = longer.decodes_prior
    assert isinstance(theirs, ContextPrior) and theirs.counts.shape[0] == 5
    np.testing.assert_array_equal(theirs.counts[:3], ancestor.prior.counts)
    np.testing.assert_array_equal(theirs.counts[3:], longer.prior.counts[3:])
    np.testing.assert_array_equal(longer.prior.counts[:3], recounted.counts)
    out = tmp_path / "longer.safetensors"
    save_model(longer.net, longer.prior, out, longer.rate_weights, longer.decodes, longer.decodes_prior,
               longer.own_prior_decodes)
    new = load_model(out)
    image = synthetic_image(size=(72, 40), seed=3)
    for model in (ancestor, carrier):
        data = vqcodec.compress(image, model, quality=3)
        assert np.array_equal(np.asarray(vqcodec.decompress(data, new)), np.asarray(vqcodec.decompress(data, model)))
    fewer = ContextPrior(ancestor.prior.counts[:, :3], ancestor.prior.groups % 2)
    odd = tmp_path / "odd.safetensors"
    save_model(ancestor.net, recounted, odd, ancestor.rate_weights, (ancestor.fingerprint,), fewer)
    with pytest.raises(vqcodec.ArgumentError, match="other context groups"):
        extend_stages(load_model(odd), find_images(photos), 5, views=2, count_views=2, rounds=1)


def test_priced_codebooks_spend_fewer_bits_than_plain_kmeans() -> None:
    """Entropy-constrained rounds trade squared error for bits: the heavier the weight, the lower the codes'
    entropy and the larger their error."""
    rng = np.random.default_rng(1)
    rows = torch.from_numpy(rng.normal(size=(4000, 4)).astype(np.float32))
    given = rng.integers(0, 16, 4000)

    def entropy(codes: torch.Tensor) -> float:
        p = np.bincount(codes.numpy(), minlength=16) / len(codes)
        return float(-(p[p > 0] * np.log2(p[p > 0])).sum())

    fits = [fit_stage(rows, given, 16, weight, 2, 4, seed=0) for weight in (0.0, 1.0, 2.0)]
    bits = [entropy(codes) for _, codes in fits]
    errors = [float((rows - codebook[codes]).pow(2).sum(1).mean()) for codebook, codes in fits]
    assert bits[0] > bits[1] + 0.3 > bits[2] + 0.6
    assert errors[0] < errors[1] < errors[2]


def test_add_stages_refuses_too_few_stages_and_an_existing_output(tmp_path: Path, priced_path: Path,
                                                                  photos: Path) -> None:
    done = run_cli("add-stages", str(priced_path), "--data", str(photos), "--stages", "3",
                    "--out", str(tmp_path / "m.safetensors"))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "more than the model's 3" in done.stderr
    (tmp_path / "m.safetensors").write_bytes(b"keep")
    done = run_cli("add-stages", str(priced_path), "--data", str(photos), "--stages", "4",
                    "--out", str(tmp_path / "m.safetensors"))
    assert done.returncode == 1 and "exists" in done.stderr
    assert (tmp_path / "m.safetensors").read_bytes() == b"keep"


def test_only_a_context_prior_model_is_extended(tiny_model, photos: Path) -> None:
    from vqcodec.data import find_images
    from vqcodec.stage_extension import extend_stages

    with pytest.raises(vqcodec.ArgumentError, match="context prior"):
        extend_stages(tiny_model, find_images(photos), 4)


def test_default_quality_in_the_config() -> None:
    assert "default_quality" not in json.loads(TINY.to_json())
    config = ModelConfig(num_stages=4, default_quality=2)
    assert ModelConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="default_quality"):
        ModelConfig(num_stages=4, default_quality=5)
