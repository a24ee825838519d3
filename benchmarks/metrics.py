"""Image quality and size measures: bits per pixel, PSNR on 8-bit RGB, and MS-SSIM (pytorch-msssim), of the
whole image and over the phases of its pooling (`vqcodec.grid_shift.phase_ms_ssim`)."""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim

from vqcodec.grid_shift import PHASE_MIN_SIDE, phase_ms_ssim

MIN_MS_SSIM_SIDE = PHASE_MIN_SIDE
"""Smallest image side measured: MS-SSIM's 5 scales with the 11-pixel window need more than 160 pixels, on
windows of even sides starting 1 pixel in as well."""


def bits_per_pixel(num_bytes: int, width: int, height: int) -> float:
    """8 x file bytes / pixels: the rate of a file written for this image."""
    return 8.0 * num_bytes / (width * height)


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of two 8-bit RGB images (peak 255, MSE over all channels); inf when identical."""
    if reference.shape != decoded.shape:
        raise ValueError(f"image shapes differ: {reference.shape} vs {decoded.shape}")
    mse = float(np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def as_tensor(rgb: np.ndarray) -> torch.Tensor:
    """An (H, W, 3) uint8 array as the (1, 3, H, W) float tensor in [0, 255] that `ms_ssim` takes."""
    return torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None]


@torch.inference_mode()
def ms_ssim(reference: torch.Tensor, decoded: np.ndarray) -> float:
    """MS-SSIM on RGB (pytorch-msssim, data_range 255) of a reference tensor (see `as_tensor`) and a decoded image."""
    return float(_ms_ssim(reference, as_tensor(decoded), data_range=255, size_average=True))


@torch.inference_mode()
def ms_ssim_phases(reference: torch.Tensor, decoded: np.ndarray) -> float:
    """MS-SSIM on RGB (data_range 255) over the four phases of its 2x2 pooling (`phase_ms_ssim`): the figure an
    image's errors cannot raise by lining up with where the whole image's pooling starts."""
    return float(phase_ms_ssim(as_tensor(decoded), reference, data_range=255))


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on the decibel scale, -10 log10(1 - MS-SSIM), which spreads out the values near 1."""
    return math.inf if value >= 1 else -10.0 * math.log10(1.0 - value)
