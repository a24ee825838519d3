"""Rate control: find the quality and rate weight that land a file on a target size.

Quality (the number of residual stages) moves the rate in coarse steps; the rate
weight lambda of rate-aware quantization moves it smoothly below each step. For a
target, `search` takes the lowest quality that reaches it at lambda = 0 and the next
one, bisects lambda on each until the size is within tolerance, and keeps whichever
lands with the smaller latent distortion. Each quality's stages cost a least number of
bits even for the cheapest codes, so some rates between qualities cannot be reached:
a target there lands on the nearest reachable size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vqcodec.errors import VqcodecWarning

TOLERANCE = 0.02
"""Relative distance from the target size within which a search has landed on it."""


class RateWarning(VqcodecWarning):
    """A size target could not be reached; the file has the nearest reachable size."""

Measure = Callable[[int, float], tuple[int, float]]
"""(quality, lambda) -> (bytes, latent distortion) of the resulting file."""


@dataclass(frozen=True)
class RatePoint:
    """One evaluated setting."""

    quality: int
    rate_weight: float
    size: int
    distortion: float


def _bisect(measure: Measure, quality: int, target: float, tolerance: float, steps: int) -> RatePoint:
    """Largest-rate point at or under `target * (1 + tolerance)` reachable by raising lambda from 0."""
    size, dist = measure(quality, 0.0)
    best = RatePoint(quality, 0.0, size, dist)
    if size <= target * (1 + tolerance):
        return best
    lo, hi = 0.0, 1e-3
    while True:
        size, dist = measure(quality, hi)
        if size <= target or hi > 1e6:
            break
        lo, hi = hi, hi * 4
    best = RatePoint(quality, hi, size, dist)
    for _ in range(steps):
        if abs(best.size - target) <= tolerance * target:
            break
        mid = (lo + hi) / 2
        size, dist = measure(quality, mid)
        if size > target:
            lo = mid
        else:
            hi = mid
        point = RatePoint(quality, mid, size, dist)
        if abs(point.size - target) < abs(best.size - target):
            best = point
    return best


def search(measure: Measure, stages: int, target_size: float, tolerance: float = TOLERANCE,
           steps: int = 24, family: Callable[[int], object] | None = None) -> RatePoint:
    """The setting whose size is closest to `target_size` (within `tolerance` when reachable).

    Of several settings within tolerance the one of least distortion wins. `family(quality)` says which
    qualities' distortions compare (the latents of an image coded at one size): a neighbour of another
    family is only taken when none of the target quality's own family lands within tolerance.
    """
    # Qualities are measured from the lowest up only until one reaches the target: the deeper ones cost
    # the most to code (the widest beams, latent refinement).
    first = next((q for q in range(1, stages + 1) if measure(q, 0.0)[0] >= target_size), stages)
    candidates = [_bisect(measure, q, target_size, tolerance, steps) for q in range(first, min(first + 1, stages) + 1)]
    if first > 1:  # the target may lie in a gap above the lower quality's largest file
        size, dist = measure(first - 1, 0.0)
        candidates.append(RatePoint(first - 1, 0.0, size, dist))
    within = [p for p in candidates if abs(p.size - target_size) <= tolerance * target_size]
    if family is not None:
        own = [p for p in within if family(p.quality) == family(first)]
        within = own or sorted(within, key=lambda p: abs(p.size - target_size))[:1]
    if within:
        return min(within, key=lambda p: p.distortion)
    return min(candidates, key=lambda p: abs(p.size - target_size))
