"""MS-SSIM away from the code grid: shifted windows for training, the phase mean the benchmark reports."""

from __future__ import annotations

import pytest
import torch
from pytorch_msssim import ms_ssim

from vqcodec import grid_shift


def _block_aligned_error(x: torch.Tensor, amplitude: float) -> torch.Tensor:
    """+s, -s across every pair of columns starting at column 0, s = +-a at random per pair and row: zero in
    the mean of each 2x2 block starting at (0, 0), not in those starting a column later (neighbouring pairs'
    signs differ)."""
    rows, cols = x.shape[-2:]
    pattern = (1 - 2 * (torch.arange(cols) % 2)).to(x.dtype)
    signs = torch.randint(0, 2, (rows, cols // 2), generator=torch.Generator().manual_seed(3)) * 2 - 1
    return amplitude * pattern * signs.repeat_interleave(2, 1).to(x.dtype)


def test_an_error_the_pooling_cancels_is_seen_over_the_phases_not_on_the_whole_image() -> None:
    """An error whose 2x2 block means vanish where the whole image's pooling starts leaves MS-SSIM nearly
    untouched; windows starting 1 pixel in see it too."""
    torch.manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 50, 50), size=(200, 200), mode="bilinear").clamp(0.1, 0.9)
    y = x + _block_aligned_error(x, 0.05)
    whole = float(ms_ssim(y, x, data_range=1.0))
    phases = float(grid_shift.phase_ms_ssim(y, x))
    assert 1 - phases > 1.4 * (1 - whole)  # half the phases see it: about twice the error there
    white = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    assert float(grid_shift.phase_ms_ssim(white, x)) == pytest.approx(float(ms_ssim(white, x, data_range=1.0)),
                                                                      abs=2e-3)
    assert float(grid_shift.phase_ms_ssim(x, x)) == pytest.approx(1.0, abs=1e-6)


def test_phases_take_the_data_range_and_refuse_small_images() -> None:
    x = torch.rand(1, 3, grid_shift.PHASE_MIN_SIDE, 170)
    y = (x + 0.1).clamp(0, 1)
    assert float(grid_shift.phase_ms_ssim(255 * y, 255 * x, data_range=255)) == pytest.approx(
        float(grid_shift.phase_ms_ssim(y, x)), abs=1e-5)
    with pytest.raises(ValueError, match=f"{grid_shift.PHASE_MIN_SIDE} pixels"):
        grid_shift.phase_ms_ssim(x[..., 1:, :], x[..., 1:, :])


@pytest.mark.parametrize(("side", "window"), [(177, 162), (178, 162), (192, 176), (200, 184)])
def test_a_shifted_window_fits_at_every_offset(side: int, window: int) -> None:
    assert grid_shift.window_side(side) == window
    assert window % 2 == 0 and window + grid_shift.PERIOD - 1 <= side
    with pytest.raises(ValueError, match=f"{grid_shift.MIN_SIDE} pixels"):
        grid_shift.window_side(grid_shift.MIN_SIDE - 1)


def test_a_shifted_window_scores_the_pixels_at_its_offset_only() -> None:
    torch.manual_seed(1)
    x = torch.rand(2, 3, 192, 192)
    y = x.clone()
    y[..., :3, :] = 0.0  # wrong only in the first three rows
    y[..., :, :5] = 0.0
    assert float(grid_shift.shifted_ms_ssim(y, x, (3, 5))) == pytest.approx(1.0, abs=1e-6)
    assert float(grid_shift.shifted_ms_ssim(y, x, (0, 0))) < 0.999
    drawn = {tuple(int(v) for v in torch.randint(0, grid_shift.PERIOD, (2,), generator=torch.Generator().manual_seed(s)))
             for s in range(8)}
    assert len(drawn) > 1
    with pytest.raises(ValueError, match="offsets"):
        grid_shift.shifted_ms_ssim(y, x, (16, 0))
