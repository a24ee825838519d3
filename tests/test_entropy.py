"""Entropy coding: lossless round trips, and payloads within 1% of the ideal code length."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vqcodec.entropy import FrequencyPrior


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
