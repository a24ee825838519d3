"""Rate-aware coding priced in context: code costs, penalties, rate weights in model files, and their use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vqcodec
from vqcodec import pricing
from vqcodec.codec import decompress_indices, encode_indices
from vqcodec.entropy import ContextPrior, FrequencyPrior
from vqcodec.errors import ModelError
from vqcodec.model import VQVAE
from vqcodec.quantizer import ResidualVQ
from vqcodec.zoo import load_model, save_model

from tests.conftest import TINY, run_cli, synthetic_image, write_photos


def context_prior(seed: int = 0) -> ContextPrior:
    """A context prior for TINY with random skewed tables and 4 groups."""
    rng = np.random.default_rng(seed)
    k, s, g = TINY.codebook_size, TINY.num_stages, 4
    counts = rng.integers(1, 50, size=(s, g + 1, k)) ** 2
    groups = rng.integers(0, g, size=(s, k))
    return ContextPrior(counts, groups)


@pytest.fixture(scope="module")
def priced_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("priced") / "priced.safetensors"
    save_model(VQVAE(TINY).eval(), context_prior(), path, pricing.stage_weights(TINY.num_stages, [0.05]))
    return path


def test_context_costs_are_the_table_row_of_each_cells_group() -> None:
    prior = context_prior()
    previous = np.array([0, 5, 15, 5])
    costs = prior.code_costs(2, previous)
    table = prior.counts[2] / prior.counts[2].sum(1, keepdims=True)
    expected = -np.log2(table[prior.groups[2][previous]])
    assert costs.shape == (4, TINY.codebook_size) and costs.dtype == np.float32
    np.testing.assert_allclose(costs, expected, rtol=1e-6)
    # Stage 0's context (the row above) is chosen at the same time: it is priced by its marginal.
    np.testing.assert_allclose(prior.code_costs(0, previous), prior.code_bits(0), rtol=1e-6)


def test_frequency_prior_prices_without_context() -> None:
    prior = FrequencyPrior(np.arange(1, 17)[None].repeat(3, 0))
    np.testing.assert_allclose(prior.code_costs(1, np.array([1, 2])), prior.code_bits(1), rtol=1e-6)


def test_penalty_is_weight_times_costs_and_none_when_unweighted() -> None:
    prior = context_prior()
    assert pricing.penalty(prior, [0.0, 0.0, 0.0]) is None
    price = pricing.penalty(prior, [0.0, 0.5, 2.0])
    assert price is not None
    assert price(0, None) is None
    previous = torch.tensor([3, 7])
    expected = 2.0 * torch.from_numpy(prior.code_costs(2, previous.numpy()))
    assert torch.allclose(price(2, previous), expected)


def test_table_penalty_prices_as_penalty_does() -> None:
    """Training's prices, gathered from (K, K) tables made once, are the per-batch prices of `penalty`."""
    prior = context_prior()
    weights = [0.0, 0.5, 2.0]
    table, direct = pricing.table_penalty(prior, weights, TINY.codebook_size), pricing.penalty(prior, weights)
    previous = torch.randint(0, TINY.codebook_size, (50,))
    assert table(0, None) is None
    for stage in (1, 2):
        assert torch.allclose(table(stage, previous), direct(stage, previous))
    assert pricing.table_penalty(prior, [0.0, 0.0, 0.0], TINY.codebook_size) is None
    with pytest.raises(ValueError, match="stage 1 is not priced"):
        pricing.table_penalty(prior, [0.1, 0.0, 0.0], TINY.codebook_size)


def test_priced_training_picks_the_codes_priced_encoding_picks() -> None:
    """`ResidualVQ.forward` with a penalty (training) chooses the codes `encode` with it (compress) does."""
    torch.manual_seed(0)
    rvq = ResidualVQ(3, 16, 4).eval()
    for s, stage in enumerate(rvq.stages):
        stage.codebook.copy_(torch.randn(16, 4) * 0.5 ** s)
    price = pricing.table_penalty(context_prior(), [0.0, 0.3, 0.3], 16)
    x = torch.randn(400, 4)
    priced = rvq(x, 3, price).indices
    assert torch.equal(priced, rvq.encode(x, 3, price))
    assert not torch.equal(priced, rvq(x, 3).indices)


def test_contextual_penalty_in_beam_of_one_equals_greedy() -> None:
    torch.manual_seed(0)
    rvq = ResidualVQ(3, 16, 4)
    for s, stage in enumerate(rvq.stages):
        stage.codebook.copy_(torch.randn(16, 4) * 0.5 ** s)
    price = pricing.penalty(context_prior(), [0.0, 0.3, 0.3])
    x = torch.randn(400, 4)
    greedy = rvq.encode(x, 3, price)
    assert torch.equal(rvq.beam_encode(x, 3, 1, price), greedy)
    assert not torch.equal(greedy, rvq.encode(x, 3))


def test_priced_beam_search_pays_the_price_of_each_beams_own_context() -> None:
    """A code that is free after code 0 and dear after any other: the search follows the cheap path."""
    torch.manual_seed(1)
    rvq = ResidualVQ(2, 8, 2)
    for stage in rvq.stages:
        stage.codebook.copy_(torch.randn(8, 2))

    def price(stage: int, previous: torch.Tensor | None) -> torch.Tensor | None:
        if previous is None:
            return None
        out = torch.full((previous.shape[0], 8), 100.0)
        out[previous == 0] = 0.0
        return out

    x = torch.randn(300, 2)
    codes = rvq.beam_encode(x, 2, 8, price)
    assert (codes[0] == 0).all()


def test_rate_weights_round_trip_and_default_to_zero(priced_model_path: Path, tiny_model) -> None:
    model = load_model(priced_model_path)
    np.testing.assert_array_equal(model.rate_weights, [0.0, 0.05, 0.05])
    np.testing.assert_array_equal(tiny_model.rate_weights, np.zeros(TINY.num_stages))


@pytest.mark.parametrize("weights", [[0.1, 0.1], [0.0, -1.0, 0.0], [0.0, np.nan, 0.0]])
def test_bad_rate_weights_are_refused(tmp_path: Path, weights) -> None:
    with pytest.raises(ValueError):
        save_model(VQVAE(TINY).eval(), context_prior(), tmp_path / "m.safetensors", np.array(weights))


def test_damaged_rate_weights_in_a_file_are_refused(priced_model_path: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save
    from safetensors import safe_open
    from vqcodec.zoo import fingerprint

    tensors = load_file(str(priced_model_path))
    with safe_open(str(priced_model_path), framework="pt") as f:
        meta = f.metadata()
    tensors["prior.rate_weights"] = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)
    meta["fingerprint"] = fingerprint(tensors, meta["config"]).hex()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(save(tensors, metadata=meta))
    with pytest.raises(ModelError, match="rate weights"):
        load_model(bad)


def test_compress_codes_with_the_models_rate_weights(priced_model_path: Path, tmp_path: Path) -> None:
    priced = load_model(priced_model_path)
    plain_path = tmp_path / "plain.safetensors"
    save_model(priced.net, priced.prior, plain_path)
    plain = load_model(plain_path)
    rgb = np.asarray(synthetic_image(size=(96, 64), seed=3))
    priced_codes = encode_indices(priced, rgb, 3, effort=0)  # greedy: a beam would choose stage 1 for the later ones
    plain_codes = encode_indices(plain, rgb, 3, effort=0)
    np.testing.assert_array_equal(priced_codes[0], plain_codes[0])  # stage 1 is unpriced
    assert not np.array_equal(priced_codes, plain_codes)
    assert priced.prior.ideal_bits(priced_codes) < plain.prior.ideal_bits(plain_codes)


def test_priced_greedy_coding_keeps_prefixes_equal_to_direct_encodes(priced_model_path: Path) -> None:
    """Each stage's prices depend only on earlier stages, so a quality-q prefix is the quality-q file."""
    model = load_model(priced_model_path)
    image = synthetic_image(size=(96, 64), seed=4)
    full = vqcodec.compress(image, model, 3, effort=0)
    for q in (1, 2):
        np.testing.assert_array_equal(decompress_indices(full, model, quality=q)[2],
                                      decompress_indices(vqcodec.compress(image, model, q, effort=0), model)[2])


def test_fit_prior_command_counts_a_rate_aware_prior(tmp_path: Path, tiny_model_path: Path) -> None:
    """`vqcodec fit-prior --rate-weights`: a context prior counted in rounds, with the weights in the file."""
    data = write_photos(tmp_path / "photos", 3, (64, 48))
    out = tmp_path / "priced.safetensors"
    done = run_cli("fit-prior", str(tiny_model_path), "--data", str(data), "--out", str(out),
                    "--rate-weights", "0.05,0.1", "--rounds", "2", "--views", "2")
    assert done.returncode == 0, done.stderr
    assert "counts: done 6/6" in done.stderr
    model = load_model(out)
    assert isinstance(model.prior, ContextPrior)
    np.testing.assert_array_equal(model.rate_weights, [0.0, 0.05, 0.1])
    image = synthetic_image(size=(40, 24), seed=9)
    assert vqcodec.decompress(vqcodec.compress(image, model=model), model=model).size == image.size


def test_fit_prior_keep_reading_decodes_the_base_model_s_files(tmp_path: Path, tiny_model_path: Path) -> None:
    """`vqcodec fit-prior --keep-reading`: the model with the new prior writes its own streams and still decodes
    the base model's files (their prior is stored beside its own); it cannot carry a second such prior."""
    data = write_photos(tmp_path / "photos", 3, (64, 48))
    out = tmp_path / "recounted.safetensors"
    done = run_cli("fit-prior", str(tiny_model_path), "--data", str(data), "--out", str(out),
                   "--rate-weights", "0.05,0.1", "--rounds", "1", "--views", "2", "--keep-reading")
    assert done.returncode == 0, done.stderr
    base, model = load_model(tiny_model_path), load_model(out)
    assert model.decodes == (base.fingerprint,) and model.prior_for(base.fingerprint[:4]) is model.decodes_prior
    assert model.prior_for(model.fingerprint[:4]) is model.prior
    np.testing.assert_array_equal(model.decodes_prior.counts, base.prior.counts)
    image = synthetic_image(size=(40, 24), seed=9)
    old = vqcodec.compress(image, base, 2)
    np.testing.assert_array_equal(decompress_indices(old, model)[2], decompress_indices(old, base)[2])
    new = vqcodec.compress(image, model, 2)
    assert vqcodec.decompress(new, model).size == image.size
    with pytest.raises(vqcodec.VqzError, match="not by the given model"):
        vqcodec.decompress(new, base)
    again = run_cli("fit-prior", str(out), "--data", str(data), "--out", str(tmp_path / "twice.safetensors"),
                    "--views", "2", "--keep-reading")
    assert again.returncode == 2 and "already carries" in again.stderr


@pytest.mark.parametrize("weights", ["0.1,0.2,0.3", "-1", "abc"])
def test_fit_prior_refuses_bad_rate_weights_in_one_line(tmp_path: Path, tiny_model_path: Path, weights: str) -> None:
    done = run_cli("fit-prior", str(tiny_model_path), "--data", str(tmp_path), "--out", str(tmp_path / "m.safetensors"),
                    "--rate-weights", weights)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--rate-weights" in done.stderr


def test_priced_models_have_lighter_priced_top_qualities(priced_model_path: Path, tiny_model) -> None:
    from vqcodec.codec import check_quality, quality_levels

    priced = load_model(priced_model_path)
    s = TINY.num_stages
    assert quality_levels(tiny_model) == tuple((q, 1.0, 1.0) for q in range(1, s + 1))
    levels = quality_levels(priced)
    assert levels == tuple((q, 1.0, 1.0) for q in range(1, s + 1)) + tuple((s, x, 1.0) for x in pricing.TOP_SCALES)
    assert check_quality(priced, len(levels)) == len(levels)
    with pytest.raises(vqcodec.ArgumentError):
        check_quality(tiny_model, s + 1)
    image = synthetic_image(size=(96, 64), seed=5)
    files = [vqcodec.compress(image, priced, q) for q in range(s, len(levels) + 1)]
    grids = [decompress_indices(f, priced)[2] for f in files]
    assert all(g.shape[0] == s for g in grids)
    bits = [priced.prior.ideal_bits(g) for g in grids]
    assert bits[0] <= bits[1] <= bits[2] and bits[0] < bits[2]


def test_tokens_at_a_top_quality_are_the_grids_compress_writes(priced_model_path: Path, tmp_path: Path) -> None:
    from vqcodec.tokens import tokenize

    model = load_model(priced_model_path)
    top = TINY.num_stages + len(pricing.TOP_SCALES)
    image = synthetic_image(size=(96, 64), seed=6)
    path = tmp_path / "p.png"
    image.save(path)
    vqz = tmp_path / "p.vqz"
    vqz.write_bytes(vqcodec.compress(image, model, top))
    from_image = tokenize([path], model, top)
    from_file = tokenize([vqz], model, top)
    assert from_image.quality == from_file.quality == TINY.num_stages
    np.testing.assert_array_equal(from_image.images[0].grids, decompress_indices(vqz.read_bytes(), model)[2])
    np.testing.assert_array_equal(from_file.images[0].grids, from_image.images[0].grids)


def test_train_refuses_bad_rate_weights_in_one_line(tmp_path: Path) -> None:
    done = run_cli("train", "--data", str(tmp_path), "--out", str(tmp_path / "m.safetensors"), "--rate-weights", "1,2")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "rate weight" in done.stderr
