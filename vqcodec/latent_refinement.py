"""Latent refinement: a few gradient steps on one image's latents before they are quantized.

The encoder is amortised: one network maps every image to its latents, and it does not find the latents
the decoder would reproduce an image from best. From the encoder's latents, unquantized, `default`'s second
decoder reproduces the first 16 BSDS500 val images to 40.0 dB; at quality 28 `compress` gives 37.1 dB, so
at the top the decoder's own error is about half of what is left. Here Adam moves one image's latents,
for a few steps, to lower the mean squared error of the decoder's output of them (unquantized, the
decoder that will decode the file) against the image; the quantizer then codes the moved latents as it
codes any others. The decoder, the prior and the format do not change: a file written so is decoded by
every version that reads the model. The moved latents cost a few percent more bits, and pay for them where
the quantization error is small next to the decoder's: at the qualities that code many stages.

Measured on four BSDS500 val images (481x321 cut to 480x320) with `default` short id 13, the latents
refined against the decoder of each quality and then coded at effort 1 (PSNR and rate against the same
coding unrefined):

| steps, rate | quality 5 | 9 | 12 | 16 | 20 | 26 | 28 |
|---|---|---|---|---|---|---|---|
| 10 at 0.02 | -0.14 dB, +3.4% | +0.06 dB, +0.7% | +0.10 dB, +1.0% | +0.21 dB, +1.7% | +0.32 dB, +2.4% | +0.46 dB, +3.2% | +0.76 dB, +3.2% |
| 25 at 0.01 | | | +0.13 dB, +1.0% | | +0.39 dB, +2.5% | +0.54 dB, +3.2% | +0.92 dB, +3.0% |

At the few stages of the low qualities the quantization error dominates, and the moved latents lose
PSNR and cost bits; `SCHEDULES` says from how many stages `compress` refines by default.

A model whose decoder was tuned for MS-SSIM (`ModelConfig.distortion`, `perceptual`) is refined for
MS-SSIM instead, from fewer stages: its encoder learned to serve an MSE decoder, so its latents are far
from what the tuned decoder wants even where the quantization error is large, and a few gentle steps
gain up to 0.44 dB of MS-SSIM for 1-2% more bits (`SCHEDULES`).

The schedules are kept free of torch (imported when `refine` runs), so the command line can describe it
without loading torch. Trying a straight-through estimate of the quantizer inside the loop instead (the
quantized latents' error against the image, its gradient passed to the unquantized ones) moved the
latents too far at this rate of learning: -0.8 dB at +17% rate at quality 28 (a gentler try is in
docs/benchmarks.md, "Latent refinement").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from vqcodec.effort import by_distortion, by_stages, spans
from vqcodec.errors import ArgumentError

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class Schedule:
    """How `compress` refines, by default, the latents of a model whose decoder minimises one distortion."""

    lr: float
    """Adam's learning rate on the latents."""
    steps: tuple[tuple[int, int], ...]
    """The steps, by how many stages a quality codes: (fewest stages, steps), ascending (`effort.by_stages`)."""
    own_pixels: bool = False
    """Whether the loss is taken over the image's own pixels only, not over the edge pixels repeated to fill
    the grid's last row and column of cells (`refine`'s `size`)."""


SCHEDULES: dict[str, Schedule] = {
    "mse": Schedule(0.02, ((1, 0), (16, 10), (21, 20))),
    "ms-ssim": Schedule(0.005, ((1, 10), (5, 0), (6, 10)), own_pixels=True),
}
"""The default refinement for each `ModelConfig.distortion` (keys: `vqcodec.model.DISTORTIONS`).

- "mse" (`default`): none below 16 stages, 10 steps from 16 and 20 from 21, at 0.02. Each step costs about
  a decoder's pass forward and back (0.45-0.65 s for a 768x512 image on one thread), so the steps go where
  they buy most: at 9 and 12 stages they bought 0.02-0.04 dB net of their rate for 3-5 times the compress
  time. At 10 steps, 0.03 gained 0.16 dB less than 0.02 at quality 28 (four val images); 0.02 for 15 steps
  gained 0.85 dB there, 0.01 for 25 steps 0.92 dB; 40 steps gain at most 0.05 dB more (docs/benchmarks.md).
- "ms-ssim" (`perceptual`, whose encoder learned MSE and whose decoder was then tuned for MS-SSIM): none
  below 6 stages, 10 steps from 6, at 0.005. On the first 8 BSDS500 val images (`python -m
  vqcodec.bench.refinement ../shared/data/bsds500/val --limit 8 --model perceptual --steps 10`) every quality
  gains, 0.06-0.16 dB of MS-SSIM at qualities 1-5 and 0.24-0.44 dB at 6-10, each for 1.0-1.6% more bits:
  BD-rate (MS-SSIM) -2.68% refined everywhere, -1.49% from 6 stages. Qualities 1-5, the default among them,
  keep their speed: refining took their compress time from 0.1-0.3 s to 2-6 s per 481x321 image, for
  about 1.2% of BD-rate. On four of those images 0.005 did best: 0.002 gained less (qualities 5, 8, 10:
  0.22-0.45 dB for 0.7-1.0% more bits, against 0.25-0.56 dB for 1.4-1.8%), 20 steps at 0.005 less for more
  bits (0.25-0.51 dB for 2.3-3.3%), and 0.02 overshot (0.22-0.44 dB for 4.5-7.5%). 5 steps at 0.01 gained
  about as much in half the time (qualities 6, 8, 10: 0.35, 0.48 and 0.56 dB for 1.3-1.9% more bits, against
  10 at 0.005's 0.51 and 0.56 dB at 8 and 10); on the first 8 val images (the loss over their own pixels)
  it gained 0.218, 0.368 and 0.429 dB at qualities 6, 8 and 10 for 0.8-1.6% more bits against 10 at 0.005's
  0.242, 0.395 and 0.457 dB for 1.1-1.6%: about 0.02 dB less net of its bits, for a third less compress time.
  Not taken: these qualities are not the default one, whose time is the one users wait for.
  From vqcodec 0.13.0 the qualities of up to 4 stages (1-4) are refined too, with level 3 of the code search
  and adaptive coding (`effort.DEFAULT_EFFORTS`): the three together gained 0.13-0.26 dB of MS-SSIM at
  qualities 2-4 for about the same bits on the first 8 BSDS500 val images, where refinement alone gained
  0.06-0.11 dB for 0.5-0.7% more bits; 5 stages, `perceptual`'s default quality, keeps its time (0.1 s for a
  481x321 image; refined, 3.4 s). Docs/benchmarks.md, "Low qualities of an MS-SSIM model".

Where a side is not a multiple of the stride, the grid's last cells cover edge pixels repeated (`codec`'s
padding). An MS-SSIM model's loss is taken over the image's own pixels only (`Schedule.own_pixels`): on the
first 8 BSDS500 val images (481x321) that gained +0.242, +0.395 and +0.457 dB of MS-SSIM at qualities 6, 8
and 10 for 1.1%, 1.2% and 1.6% more bits, against +0.240, +0.361 and +0.430 dB for 1.3%, 1.2% and 1.5% over
the padded grid. For an MSE model it did not pay: +0.223, +0.397 and +0.949 dB at qualities 16, 21 and 28
for 2.2%, 4.4% and 5.1% more bits, against +0.219, +0.402 and +0.926 dB for 1.9%, 3.5% and 3.8% over the
padded grid (Adam's steps, of one size for every element, move the latents of the edge cells, which the
replicated pixels otherwise hold near the encoder's output). Kodak (768x512) has no padding.
"""

MAX_STEPS = 1000
"""The most steps a caller may ask for (each is one pass through the decoder and back)."""

MSSSIM_WINDOWS = (11, 9, 7, 5, 3)
"""Gaussian windows MS-SSIM is taken with, largest first: its five scales need a side above 16 x (window - 1)
pixels, so a tile under 161 pixels on a side uses the largest window that fits, and one of 32 pixels or fewer
its log mean squared error."""


def schedule(distortion: str) -> Schedule:
    """The default refinement of a model whose decoder minimises `distortion`."""
    return by_distortion(SCHEDULES, distortion, "latent refinement")


def default_steps(stages: int, distortion: str = "mse") -> int:
    """The steps `compress` refines for, when none are given, at a quality that codes `stages` stages."""
    return by_stages(schedule(distortion).steps, stages)


def check_steps(steps: int | None) -> int | None:
    """`steps` validated; None stays None (each quality's default, `default_steps`)."""
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= MAX_STEPS:
        raise ArgumentError(f"refine steps must be an integer 0..{MAX_STEPS}, got {steps!r}")
    return steps


def steps_for(steps: int | None, stages: int, distortion: str = "mse") -> int:
    """The steps a quality of `stages` stages is refined for: `steps` when given (validated), else its default."""
    checked = check_steps(steps)
    return default_steps(stages, distortion) if checked is None else checked


def describe_default(distortion: str = "mse") -> str:
    """The default refinement in words, for help texts and reports, e.g. 'none up to 15 stages, 10 steps from 16,
    20 steps from 21'."""
    return ", ".join(f"{f'{steps} steps' if steps else 'none'} {where}"
                     for where, steps in spans(schedule(distortion).steps))


def loss(distortion: str, decoded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """What refinement minimises for a model of `distortion`: the mean squared error of `decoded` (in [0, 1]
    units) against `target`, or for "ms-ssim" log(1 - MS-SSIM) of `decoded` clamped to [0, 1] (a window
    from `MSSSIM_WINDOWS`, log mean squared error on tiles too small for any)."""
    import torch
    import torch.nn.functional as F

    if distortion == "mse":
        return F.mse_loss(decoded, target)
    schedule(distortion)
    from pytorch_msssim import ms_ssim

    side = min(decoded.shape[-2:])
    window = next((w for w in MSSSIM_WINDOWS if side > 16 * (w - 1)), None)
    if window is None:
        return torch.log(F.mse_loss(decoded, target))
    return torch.log(1.0 - ms_ssim(decoded.clamp(0.0, 1.0), target, data_range=1.0, win_size=window))


def refine(decoder: nn.Module, pixels: torch.Tensor, latents: torch.Tensor, steps: int,
           distortion: str = "mse", arithmetic: str = "float32", size: tuple[int, int] | None = None) -> torch.Tensor:
    """`latents` (1, D, h, w) after `steps` Adam steps (the learning rate of `distortion`'s `Schedule`) on
    `loss(distortion, decoder(latents) + 0.5, pixels)`, `pixels` (1, 3, h * stride, w * stride) in [0, 1],
    taken over the first `size` (rows, columns) of pixels, the image's own where the rest pads it to the grid
    (default: all; `compress` gives it where the schedule says, `Schedule.own_pixels`). The decoder's weights
    are only read (its mode, eval for a model's decoder, is kept). With `arithmetic` "bfloat16" the decoder's
    passes, forward and back, run under bfloat16 autocast (the latents, the loss and Adam stay float32): where
    the CPU has bfloat16, several times faster."""
    import torch

    lr = schedule(distortion).lr
    rows, cols = size or pixels.shape[-2:]
    with torch.inference_mode(False), torch.enable_grad():
        z = latents.detach().clone().requires_grad_(True)
        target = pixels[..., :rows, :cols].detach().clone()
        opt = torch.optim.Adam([z], lr=lr)
        for _ in range(steps):
            with torch.autocast(z.device.type, dtype=torch.bfloat16, enabled=arithmetic == "bfloat16"):
                decoded = decoder(z)
            own = decoded[..., :rows, :cols].float() + 0.5
            (grad,) = torch.autograd.grad(loss(distortion, own, target), [z])
            z.grad = grad
            opt.step()
        return z.detach()
