"""The learned context prior: exact integer arithmetic, lossless round trips, training that learns.

A small random context network stands in for the shipped one where only the mechanism matters;
`test_shipped_*` tests pin the shipped model's probabilities.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqcodec.entropy.context_net import (MAX_TERMS, QMAX, IntLayer, QConv, NetShape, input_codebooks,
                                         same_stage_input, stage_inputs)
from vqcodec.entropy.fitting import FitConfig, GridSampler, count_tables, stage0_prior, train_context_net
from vqcodec.entropy.learned import LearnedPrior, stage_contexts
from vqcodec.entropy.schedule import anchors, passes

K, D, S = 32, 8, 3
SHAPE = NetShape(dim=D, proj=16, spatial=4, hidden=16, contexts=8, stages=S)


def structured_grids(n: int, seed: int = 0, shape: tuple[int, int] = (12, 16)) -> list[np.ndarray]:
    """Grids whose later stages depend on the earlier ones and on their neighbours, so context helps."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        g = np.zeros((S, *shape), dtype=np.int64)
        g[0] = np.cumsum(rng.integers(0, 2, shape), axis=1) % K
        for s in range(1, S):
            g[s] = (g[s - 1] % 8) * 4 + rng.integers(0, 4, shape)
        out.append(g)
    return out


@pytest.fixture(scope="module")
def codebooks() -> tuple[np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    return input_codebooks([torch.randn(K, D) * 2.0 ** -s for s in range(S)])


@pytest.fixture(scope="module")
def prior(codebooks) -> LearnedPrior:
    recon, code = codebooks
    grids = structured_grids(24)
    net = train_context_net(GridSampler(grids, recon, code), SHAPE, K, FitConfig(steps=150, batch=4, crop=8, lr=1e-2))
    inet = net.export()
    counts = count_tables(inet, grids, recon, code, K) + 1
    return LearnedPrior(stage0_prior(grids, K), inet, counts, recon.astype(np.int64), code.astype(np.int64))


def test_checkerboard_passes_cover_every_cell_once() -> None:
    first, second = passes(5, 7)
    cover = np.zeros((5, 7), dtype=int)
    cover[first] += 1
    cover[second] += 1
    assert (cover == 1).all()
    assert anchors(5, 7)[first].all() and not anchors(5, 7)[second].any()


def test_every_second_pass_cell_sees_only_decoded_neighbours() -> None:
    a = anchors(6, 6)
    for r, c in zip(*np.nonzero(~a)):
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            if 0 <= r + dr < 6 and 0 <= c + dc < 6:
                assert a[r + dr, c + dc]


def test_integer_layers_refuse_ranges_that_would_not_be_exact() -> None:
    with pytest.raises(ValueError):
        IntLayer(np.full((1, 1, 1, 1), QMAX + 1), np.zeros(1, np.int64), np.ones(1, np.int64))
    with pytest.raises(ValueError):
        IntLayer(np.ones((1, MAX_TERMS + 1, 1, 1), np.int64), np.zeros(1, np.int64), np.ones(1, np.int64))
    with pytest.raises(ValueError):
        IntLayer(np.ones((1, 1, 1, 1), np.int64), np.zeros(1, np.int64), np.full(1, 1 << 27))


def test_worst_case_sums_are_exact_in_float32() -> None:
    """The largest sum a layer may form (every product 127 * 127) is computed exactly."""
    layer = IntLayer(np.full((2, MAX_TERMS, 1, 1), QMAX), np.zeros(2, np.int64), np.ones(2, np.int64))
    x = np.full((3, MAX_TERMS), QMAX, dtype=np.float32)
    assert (layer.accumulate(x) == MAX_TERMS * QMAX * QMAX).all()
    assert MAX_TERMS * QMAX * QMAX < 1 << 24


def test_round_trip(prior: LearnedPrior) -> None:
    for g in structured_grids(3, seed=7, shape=(9, 13)):
        streams = prior.encode_grids(g)
        assert len(streams) == S
        assert (prior.decode_grids(streams, 9, 13) == g).all()
        assert (prior.decode_grids(streams[:2], 9, 13) == g[:2]).all()


@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (40, 1), (2, 3)])
def test_round_trip_of_thin_and_tiny_grids(prior: LearnedPrior, shape: tuple[int, int]) -> None:
    g = np.random.default_rng(1).integers(0, K, (S, *shape))
    assert (prior.decode_grids(prior.encode_grids(g), *shape) == g).all()


def test_stream_length_near_ideal(prior: LearnedPrior) -> None:
    g = structured_grids(1, seed=3, shape=(40, 48))[0]
    bits = 8 * sum(len(s) for s in prior.encode_grids(g))
    assert bits <= 1.02 * prior.ideal_bits(g) + 32 * 2 * S * SHAPE.contexts


def test_training_learns_contexts_that_beat_stage_frequencies(codebooks, prior: LearnedPrior) -> None:
    """On grids whose stages depend on each other, learned contexts need fewer bits than one table per stage."""
    g = structured_grids(4, seed=11)
    learned = sum(prior.stage_bits(x, s) for x in g for s in (1, 2))
    freq = prior.counts.sum(1)
    plain = sum(-np.log2(freq[s][x[s]] / freq[s].sum()).sum() for x in g for s in (1, 2))
    assert learned < 0.8 * plain


def test_contexts_match_the_float_twin(codebooks) -> None:
    """The exported integer network chooses (almost always) what the fake-quantised float network chooses."""
    recon, code = codebooks
    grids = structured_grids(8)
    net = train_context_net(GridSampler(grids, recon, code), SHAPE, K, FitConfig(steps=20, batch=4, crop=8))
    inet = net.export()
    g = grids[0]
    inputs = torch.from_numpy(stage_inputs(g, 2, recon, code).transpose(2, 0, 1)[None].copy())
    a = anchors(*g.shape[1:])
    same = torch.from_numpy(same_stage_input(g[2], a.astype(np.int32), 2, code).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        first = net(inputs, torch.zeros_like(same), torch.tensor([2])).argmax(1)[0].numpy()
        second = net(inputs, same, torch.tensor([2])).argmax(1)[0].numpy()
    want = np.where(a, first, second)
    assert (stage_contexts(inet, g, 2, recon, code) == want).mean() > 0.95


def test_prior_tensors_round_trip(prior: LearnedPrior) -> None:
    again = LearnedPrior.from_tensors(prior.tensors())
    g = structured_grids(1, seed=5)[0]
    assert again.encode_grids(g) == prior.encode_grids(g)


def test_contexts_do_not_depend_on_thread_count(prior: LearnedPrior) -> None:
    g = structured_grids(1, seed=9, shape=(30, 30))[0]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = prior.encode_grids(g)
        torch.set_num_threads(2)
        two = prior.encode_grids(g)
    finally:
        torch.set_num_threads(before)
    assert one == two


def test_float_twin_rejects_layers_too_wide_to_be_exact() -> None:
    with pytest.raises(ValueError):
        QConv(MAX_TERMS, 4, 3)


def test_fit_prior_command_writes_a_model_that_codes_with_its_learned_prior(tmp_path, tiny_model_path) -> None:
    """`vqcodec fit-prior` on a small folder: the written model carries a learned prior and round-trips images."""
    import json
    import subprocess
    import sys

    import vqcodec
    from vqcodec.zoo import load_model
    from tests.conftest import synthetic_image

    data = tmp_path / "photos"
    data.mkdir()
    for i in range(3):
        synthetic_image(size=(64, 48), seed=i).save(data / f"p{i}.png")
    out = tmp_path / "learned.safetensors"
    vqcodec_cli = [sys.executable, "-c", "from vqcodec.cli.main import main; main()"]
    args = ["fit-prior", str(tiny_model_path), "--data", str(data), "--val", str(data), "--out", str(out),
            "--learned", "--steps", "4", "--views", "2"]
    done = subprocess.run([*vqcodec_cli, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "network:" in done.stderr and "wrote" in done.stderr
    model = load_model(out)
    assert isinstance(model.prior, LearnedPrior)
    report = json.loads(out.with_suffix(".json").read_text())
    assert len(report["val_bits_per_stage"]["learned"]) == S
    image = synthetic_image(size=(40, 24), seed=9)
    decoded = vqcodec.decompress(vqcodec.compress(image, model=model, quality=S), model=model)
    assert decoded.size == image.size
    again = subprocess.run([*vqcodec_cli, *args], capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "exists" in again.stderr
