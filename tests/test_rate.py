"""Rate control's search, on synthetic rate curves: lands within tolerance, or on the nearest reachable size."""

from __future__ import annotations

from vqcodec.rate import search


def curve(quality: int, weight: float) -> tuple[int, float]:
    """Quality q spans sizes [100 q + 50, 100 q + 100]: gaps of 50 between qualities."""
    top, bottom = 100 * quality + 100, 100 * quality + 50
    size = bottom + (top - bottom) / (1.0 + weight)
    return int(size), float(quality * 10 - size / 100)


def test_reachable_targets_land_within_tolerance() -> None:
    for target in (180.0, 260.0, 290.0, 400.0):
        point = search(curve, stages=4, target_size=target, tolerance=0.02)
        assert abs(point.size - target) <= 0.02 * target, (target, point)


def test_target_in_a_gap_lands_on_the_nearest_reachable_size() -> None:
    assert search(curve, stages=4, target_size=215.0).size == 200
    assert search(curve, stages=4, target_size=245.0).size == 250


def test_targets_beyond_the_ends_take_the_extremes() -> None:
    assert search(curve, stages=4, target_size=10_000.0).size == 500
    assert search(curve, stages=4, target_size=100.0).size <= 160
