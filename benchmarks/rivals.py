"""Speed beside the codecs users compare against: WebP (method 6) and AVIF (speed 6) at vqcodec's file sizes.

A time ratio means something only for the same image, the same file size and the same moment on the
machine. For each vqcodec point it times, the speed run (`benchmarks.speed`) finds each rival's setting
whose file is nearest in bytes (`nearest_setting`: bisection over its quality scale, along which file size
grows) and times that setting's encode and decode right after vqcodec's, in the same process, with the
same repeat policy.
"""

from __future__ import annotations

from collections.abc import Callable

from .codecs import Codec, avif, webp

QUALITY_RANGE = (0, 100)
"""The quality scale both rivals' Pillow encoders take."""


def rivals(threads: int) -> list[Codec]:
    """The codecs vqcodec's speed is reported against: WebP method 6 and AVIF speed 6 (`threads` threads)."""
    return [webp(), avif(threads)]


def nearest_setting(encode: Callable[[int], int], target: int, low: int = QUALITY_RANGE[0],
                    high: int = QUALITY_RANGE[1]) -> tuple[int, int]:
    """The setting in [low, high] whose size `encode(setting)` is nearest `target`, and that size.

    Assumes size grows with the setting (true of both rivals' quality scales up to encoder noise);
    about log2(high - low) encodes.
    """
    sizes: dict[int, int] = {}

    def size(s: int) -> int:
        if s not in sizes:
            sizes[s] = encode(s)
        return sizes[s]

    lo, hi = low, high
    while lo < hi:
        mid = (lo + hi) // 2
        if size(mid) < target:
            lo = mid + 1
        else:
            hi = mid
    candidates = [s for s in (lo - 1, lo) if low <= s <= high]
    best = min(candidates, key=lambda s: (abs(size(s) - target), s))
    return best, size(best)
