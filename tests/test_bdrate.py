"""BD-rate: exact answers on curves with a known rate ratio, symmetry, input checks, and the reference numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vqcodec.bench.bdrate import bd_rate

RATES = [0.1, 0.25, 0.5, 1.0, 2.0]
PSNR = [26.0, 29.5, 32.0, 35.5, 39.0]


def test_identical_curves_give_zero_over_the_whole_range() -> None:
    r = bd_rate(RATES, PSNR, RATES, PSNR)
    assert r.percent == pytest.approx(0.0, abs=1e-9)
    assert (r.low, r.high) == (26.0, 39.0)


def test_half_the_rate_gives_minus_fifty_percent() -> None:
    assert bd_rate(RATES, PSNR, [x / 2 for x in RATES], PSNR).percent == pytest.approx(-50.0, abs=1e-9)


def test_double_the_rate_gives_plus_hundred_percent() -> None:
    assert bd_rate(RATES, PSNR, [x * 2 for x in RATES], PSNR).percent == pytest.approx(100.0, abs=1e-9)


def test_growing_log_rate_gap_is_averaged_over_the_overlap() -> None:
    d = np.linspace(0.0, 10.0, 6)
    # log r = d/10 for the anchor and d/5 for the test: the gap d/10 averages 0.5 over [0, 10].
    r = bd_rate(np.exp(d / 10), d, np.exp(d / 5), d)
    assert r.percent == pytest.approx(100 * math.expm1(0.5), rel=1e-9)


def test_only_the_overlapping_range_counts() -> None:
    anchor_d = np.array([20.0, 25.0, 30.0, 35.0])
    test_d = np.array([28.0, 32.0, 36.0, 40.0])
    # Same log-rate line d/10 for both: zero gap, averaged over [28, 35].
    r = bd_rate(np.exp(anchor_d / 10), anchor_d, 0.8 * np.exp(test_d / 10), test_d)
    assert (r.low, r.high) == (28.0, 35.0)
    assert r.percent == pytest.approx(-20.0, abs=1e-9)


def test_points_may_come_in_any_order() -> None:
    assert bd_rate(RATES[::-1], PSNR[::-1], [x / 2 for x in RATES], PSNR).percent == pytest.approx(-50.0, abs=1e-9)


monotone = st.lists(st.floats(0.5, 5.0), min_size=4, max_size=10).map(lambda steps: np.cumsum(steps) + 20.0)


@given(monotone, st.floats(0.1, 10.0))
@settings(max_examples=100, deadline=None)
def test_scaling_every_rate_by_k_gives_k_minus_one(dist: np.ndarray, k: float) -> None:
    rates = np.exp(0.23 * dist - 7.0)
    assert bd_rate(rates, dist, k * rates, dist).percent == pytest.approx(100 * (k - 1), rel=1e-6, abs=1e-6)


@given(monotone, monotone)
@settings(max_examples=100, deadline=None)
def test_swapping_anchor_and_test_inverts_the_rate_ratio(d1: np.ndarray, d2: np.ndarray) -> None:
    d2 = d2 + (d1[0] - d2[0]) + 0.25
    r1, r2 = np.exp(0.2 * d1 - 6), np.exp(0.25 * d2 - 7)
    forward, backward = bd_rate(r1, d1, r2, d2), bd_rate(r2, d2, r1, d1)
    assert (1 + forward.percent / 100) * (1 + backward.percent / 100) == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("anchor, test, message", [
    (([1, 2, 3, 4], [20, 21, 22, 23]), ([1, 2, 3, 4], [30, 31, 32, 33]), "do not overlap"),
    (([1, 2, 3], [20, 21, 22]), ([1, 2, 3, 4], [20, 21, 22, 23]), "fewer than 4"),
    (([1, 2, 3, 4], [20, 21, 21, 23]), ([1, 2, 3, 4], [20, 21, 22, 23]), "same distortion"),
    (([0, 2, 3, 4], [20, 21, 22, 23]), ([1, 2, 3, 4], [20, 21, 22, 23]), "positive"),
    (([1, 2, 3, 4], [20, 21, 22, math.nan]), ([1, 2, 3, 4], [20, 21, 22, 23]), "finite"),
])
def test_unusable_curves_are_refused(anchor: tuple[list[float], list[float]], test: tuple[list[float], list[float]],
                                     message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bd_rate(*anchor, *test)


def test_reproduces_the_reference_bd_rates_of_shared_benchmarks_md() -> None:
    """BENCHMARKS.md lists WebP -36.7% and AVIF -49.8% against JPEG; from its own table, with the JPEG anchor
    over q5..q85 (the reference evidently left out q2 and q95), this implementation gives the same."""
    jpeg = ([0.141, 0.256, 0.449, 0.610, 0.743, 0.869, 1.005, 1.344, 1.836],
            [23.85, 26.67, 29.14, 30.49, 31.42, 32.17, 32.91, 34.52, 36.46])
    webp = ([0.103, 0.217, 0.274, 0.377, 0.476, 0.577, 0.673, 0.769, 0.939, 1.448, 2.798],
            [25.67, 28.11, 28.93, 30.19, 31.23, 32.20, 33.01, 33.73, 34.87, 37.61, 41.66])
    avif = ([0.076, 0.105, 0.162, 0.247, 0.381, 0.602, 0.888, 1.425, 1.908],
            [25.84, 26.78, 28.11, 29.58, 31.26, 33.40, 35.42, 38.24, 39.91])
    assert bd_rate(*jpeg, *webp).percent == pytest.approx(-36.7, abs=0.2)
    assert bd_rate(*jpeg, *avif).percent == pytest.approx(-49.8, abs=0.2)
