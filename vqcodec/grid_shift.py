"""MS-SSIM taken on a window shifted against the code grid, so that no alignment of its pooling pays.

MS-SSIM scores five scales, each made from the last by averaging 2x2 blocks, and gives the full-resolution
scale 4.5% of its weight: an error that those block means cancel is nearly invisible to it. A model sees
its code grid start where MS-SSIM's pooling starts on every training crop, and on any image measured whole
with even sides (Kodak's 768x512). Trained end to end on such crops, `perceptual` learned exactly such errors
(twenty-second session, docs/benchmarks.md): +0.25..+0.58 dB of MS-SSIM on crops aligned to the grid, worse
than the shipped model on images measured 1 or 3 pixels off it. Scoring a window that starts at a random
offset, of even sides so that pytorch-msssim pads nothing (padding an odd side would put its pooling back
on the grid), leaves the loss no alignment to learn.
"""

from __future__ import annotations

import torch
from pytorch_msssim import ms_ssim

PERIOD = 16
"""Pixels after which MS-SSIM's pooling repeats (2^4 between its five scales): the offsets a window takes."""
MIN_WINDOW = 162
"""Smallest even window side MS-SSIM's five scales of an 11-pixel window accept (more than 160)."""
MIN_SIDE = MIN_WINDOW + PERIOD - 1
"""Smallest image side a window of `MIN_WINDOW` fits in at every offset."""


def _even_fit(side: int, largest_offset: int) -> int:
    """The largest even window side that fits in `side` pixels starting at any offset up to `largest_offset`."""
    return (side - largest_offset) // 2 * 2


def window_side(side: int) -> int:
    """The even window side that fits `side` pixels at every offset 0..PERIOD-1; ValueError under `MIN_SIDE`."""
    if side < MIN_SIDE:
        raise ValueError(f"a shifted MS-SSIM window needs sides of {MIN_SIDE} pixels or more, got {side}")
    return _even_fit(side, PERIOD - 1)


def shifted_ms_ssim(recon: torch.Tensor, x: torch.Tensor, offset: tuple[int, int] | None = None) -> torch.Tensor:
    """MS-SSIM (data range 1, batch mean) of `recon` against `x`, (N, C, H, W), over a window of even sides
    (`window_side`) starting `offset` (rows, columns) pixels in, each 0..PERIOD-1; drawn from torch's
    generator when not given."""
    rows, cols = window_side(x.shape[-2]), window_side(x.shape[-1])
    if offset is None:
        offset = tuple(int(v) for v in torch.randint(0, PERIOD, (2,)))
    dy, dx = offset
    if not (0 <= dy < PERIOD and 0 <= dx < PERIOD):
        raise ValueError(f"offsets are 0..{PERIOD - 1}, got {offset}")
    window = (..., slice(dy, dy + rows), slice(dx, dx + cols))
    return ms_ssim(recon[window], x[window], data_range=1.0, size_average=True)


PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))
"""Where a window starts (rows, columns) against the first 2x2 pooling of MS-SSIM: its four phases."""
PHASE_MIN_SIDE = MIN_WINDOW + 1
"""Smallest image side whose windows of even sides fit at every phase."""


def phase_ms_ssim(recon: torch.Tensor, x: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """The mean over `PHASES` of MS-SSIM (batch mean) on windows of even sides starting there, each side
    the largest even one that fits at offset 1: a score that no alignment of the image's errors with the
    pooling can raise, unlike MS-SSIM of the whole image, whose pooling starts on the code grid. ValueError
    for sides under `PHASE_MIN_SIDE`."""
    rows, cols = x.shape[-2:]
    if min(rows, cols) < PHASE_MIN_SIDE:
        raise ValueError(f"MS-SSIM over pooling phases needs sides of {PHASE_MIN_SIDE} pixels or more, "
                         f"got {cols}x{rows}")
    h, w = _even_fit(rows, 1), _even_fit(cols, 1)
    scores = [ms_ssim(recon[..., dy:dy + h, dx:dx + w], x[..., dy:dy + h, dx:dx + w], data_range=data_range,
                      size_average=True) for dy, dx in PHASES]
    return torch.stack(scores).mean()
