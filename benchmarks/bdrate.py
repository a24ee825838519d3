"""Bjontegaard delta rate (BD-rate): the mean bitrate change between two rate-distortion curves.

Each curve's log-rate is interpolated as a function of distortion (PSNR or MS-SSIM in dB) with a
piecewise-cubic Hermite interpolant (PCHIP, shape preserving, as in the common "piecewise-cubic"
variant of Bjontegaard's method), both are integrated over the distortion range the two curves share,
and the mean log-rate difference is turned back into a percentage. Negative means the test codec
needs fewer bits than the anchor for the same quality.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator


@dataclass(frozen=True)
class BDRate:
    """A BD-rate in percent and the distortion range [low, high] it was averaged over."""

    percent: float
    low: float
    high: float


def _log_rate_curve(rate: Sequence[float], distortion: Sequence[float], min_points: int) -> PchipInterpolator:
    r = np.asarray(rate, dtype=np.float64)
    d = np.asarray(distortion, dtype=np.float64)
    if r.ndim != 1 or r.shape != d.shape:
        raise ValueError("rate and distortion must be 1-D sequences of the same length")
    if len(r) < min_points:
        raise ValueError(f"{len(r)} points, fewer than {min_points}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(d))) or np.any(r <= 0):
        raise ValueError("rates must be positive and all values finite")
    order = np.argsort(d)
    d = d[order]
    if np.any(np.diff(d) <= 0):
        raise ValueError("two points of a curve have the same distortion")
    return PchipInterpolator(d, np.log(r[order]))


def bd_rate(anchor_rate: Sequence[float], anchor_dist: Sequence[float], test_rate: Sequence[float],
            test_dist: Sequence[float], min_points: int = 4) -> BDRate:
    """BD-rate of the test curve against the anchor, in percent, over their overlapping distortion range.

    Raises ValueError when a curve has fewer than `min_points` points, repeats a distortion value,
    or the two curves' distortion ranges do not overlap.
    """
    anchor = _log_rate_curve(anchor_rate, anchor_dist, min_points)
    test = _log_rate_curve(test_rate, test_dist, min_points)
    low = max(anchor.x[0], test.x[0])
    high = min(anchor.x[-1], test.x[-1])
    if not high > low:
        raise ValueError(f"the distortion ranges do not overlap ({anchor.x[0]:.3f}..{anchor.x[-1]:.3f} "
                         f"vs {test.x[0]:.3f}..{test.x[-1]:.3f})")
    mean_diff = (test.integrate(low, high) - anchor.integrate(low, high)) / (high - low)
    return BDRate(percent=100.0 * math.expm1(mean_diff), low=float(low), high=float(high))
