"""Entropy coding: lossless round trips, and payloads within 1% of the ideal code length."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vqcodec.entropy import ContextPrior, FrequencyPrior


def skewed_prior(k: int = 512, stages: int = 2) -> FrequencyPrior:
    ranks = np.arange(1, k + 1)
    return FrequencyPrior(np.stack([(10_000 / ranks ** (1 + s)).astype(np.int64) + 1 for s in range(stages)]))


@given(st.lists(st.integers(0, 511), max_size=300), st.integers(0, 1))
@settings(max_examples=200, deadline=None)
def test_round_trip(symbols: list[int], stage: int) -> None:
    prior = skewed_prior()
    data = prior.encode(np.array(symbols), stage)
    assert prior.decode(data, stage, len(symbols)).tolist() == symbols


@pytest.mark.parametrize("stage", [0, 1])
def test_payload_within_one_percent_of_ideal(stage: int) -> None:
    prior = skewed_prior()
    rng = np.random.default_rng(stage)
    symbols = rng.choice(512, size=6144, p=prior.probabilities(stage))
    data = prior.encode(symbols.reshape(64, 96), stage)
    ideal = prior.ideal_bits(symbols, stage)
    assert 8 * len(data) <= 1.01 * ideal + 8 * 8
    assert prior.decode(data, stage, symbols.size).tolist() == symbols.tolist()


def test_probabilities_come_from_integer_counts_exactly() -> None:
    prior = FrequencyPrior(np.array([[1, 2, 3, 4]]))
    assert prior.probabilities(0).tolist() == [0.1, 0.2, 0.3, 0.4]


def test_fit_smooths_unseen_symbols() -> None:
    prior = FrequencyPrior.fit(np.array([[0, 5, 0]]))
    assert prior.counts.tolist() == [[1, 6, 1]]
    assert prior.decode(prior.encode(np.array([0, 2, 1]), 0), 0, 3).tolist() == [0, 2, 1]


def test_rejects_bad_counts_and_symbols() -> None:
    with pytest.raises(ValueError):
        FrequencyPrior(np.array([[0, 1]]))
    with pytest.raises(ValueError):
        FrequencyPrior(np.array([1, 2]))
    with pytest.raises(ValueError):
        skewed_prior().encode(np.array([512]), 0)
    with pytest.raises(ValueError):
        skewed_prior().decode(b"abc", 0, 1)


def correlated_grids(rng: np.random.Generator, k: int = 64, stages: int = 3, shape=(24, 32)) -> np.ndarray:
    """Stage 0 changes little from row to row (as in smooth image areas); stage s depends strongly
    on stage s-1's code at the same cell, as in residual VQ."""
    grids = np.empty((stages, *shape), dtype=np.int64)
    grids[0, 0] = rng.integers(0, k, shape[1])
    for r in range(1, shape[0]):
        grids[0, r] = (grids[0, r - 1] + rng.integers(-1, 2, shape[1])) % k
    for s in range(1, stages):
        noise = rng.integers(-2, 3, shape)
        grids[s] = (grids[s - 1] * 7 + noise) % k
    return grids


def statistics(grids: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """What `vqcodec.train.index_statistics` gathers: top-row counts and conditioning pairs."""
    top = sum(np.bincount(g[0, 0], minlength=k) for g in grids)
    pairs = np.zeros((grids[0].shape[0], k, k), dtype=np.int64)
    for g in grids:
        np.add.at(pairs[0], (g[0, :-1].ravel(), g[0, 1:].ravel()), 1)
        for s in range(1, g.shape[0]):
            np.add.at(pairs[s], (g[s - 1].ravel(), g[s].ravel()), 1)
    return top, pairs


def fitted_context_prior(rng: np.random.Generator, k: int = 64, stages: int = 3) -> ContextPrior:
    top, pairs = statistics([correlated_grids(rng, k, stages) for _ in range(20)], k)
    return ContextPrior.fit(top, pairs, num_groups=16)


def test_context_prior_round_trips_and_stays_near_ideal() -> None:
    rng = np.random.default_rng(0)
    prior = fitted_context_prior(rng)
    grids = correlated_grids(rng)
    streams = prior.encode_grids(grids)
    assert np.array_equal(prior.decode_grids(streams, *grids.shape[1:]), grids)
    assert np.array_equal(prior.decode_grids(streams[:2], *grids.shape[1:]), grids[:2])
    assert 8 * sum(map(len, streams)) <= 1.01 * prior.ideal_bits(grids) + 8 * 8 * len(streams)


def test_context_prior_beats_per_stage_frequencies_on_correlated_stages_and_rows() -> None:
    rng = np.random.default_rng(1)
    context = fitted_context_prior(rng)
    frequency = FrequencyPrior(context.counts.sum(1) - (context.counts.shape[1] - 1))
    grids = correlated_grids(rng)
    with_context = [len(s) for s in context.encode_grids(grids)]
    without = [len(s) for s in frequency.encode_grids(grids)]
    assert with_context[0] < 0.6 * without[0]  # stage 0: the row above predicts the row
    assert sum(with_context[1:]) < 0.6 * sum(without[1:])  # later stages: the stage before predicts


def test_context_prior_reproduces_a_spatial_table_exactly() -> None:
    """Stage-0 probabilities come from the cell above: a hand-made table gives the ideal cost it implies."""
    counts = np.ones((1, 3, 4), dtype=np.int64)
    counts[0, 0] = [97, 1, 1, 1]  # above in group 0 -> code 0 is likely
    counts[0, 1] = [1, 1, 1, 97]  # above in group 1 -> code 3 is likely
    counts[0, 2] = [25, 25, 25, 25]  # top row
    prior = ContextPrior(counts, np.array([[0, 0, 1, 1]]))
    grids = np.array([[[0, 3], [0, 3], [0, 3]]])
    expected = 2 * 2 + 2 * 2 * -np.log2(0.97)
    assert prior.ideal_bits(grids) == pytest.approx(expected)
    assert np.array_equal(prior.decode_grids(prior.encode_grids(grids), 3, 2), grids)


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_context_prior_round_trips_any_grid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    prior = fitted_context_prior(np.random.default_rng(5), k=16, stages=2)
    grids = rng.integers(0, 16, (2, int(rng.integers(1, 9)), int(rng.integers(1, 9))))
    assert np.array_equal(prior.decode_grids(prior.encode_grids(grids), *grids.shape[1:]), grids)


def test_context_prior_rejects_inconsistent_tables() -> None:
    with pytest.raises(ValueError):
        ContextPrior(np.ones((2, 4, 8), dtype=np.int64), np.zeros((2, 7), dtype=np.int64))
    with pytest.raises(ValueError):
        ContextPrior(np.ones((2, 4, 8), dtype=np.int64), np.full((2, 8), 3))  # 3 is the top-row context
