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
PSNR and cost bits; `DEFAULT_REFINEMENT` says from how many stages `compress` refines by default.
The schedule is kept free of torch (imported when `refine` runs), so the command line can describe it
without loading torch. Trying a straight-through estimate of the quantizer inside the loop instead (the
quantized latents' error against the image, its gradient passed to the unquantized ones) moved the
latents too far at this rate of learning: -0.8 dB at +17% rate at quality 28 (a gentler try is in
docs/benchmarks.md, "Latent refinement").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vqcodec.effort import by_stages
from vqcodec.errors import ArgumentError

if TYPE_CHECKING:
    import torch
    from torch import nn

REFINE_LR = 0.02
"""Adam's learning rate on the latents. At 10 steps, 0.03 gained 0.16 dB less than 0.02 at quality 28 (four
val images); 0.02 for 15 steps gained 0.85 dB there, 0.01 for 25 steps 0.92 dB."""

DEFAULT_REFINEMENT: tuple[tuple[int, int], ...] = ((1, 0), (16, 10), (21, 20))
"""The steps `compress` refines for when none are given, by how many stages a quality codes: (fewest
stages, steps), ascending. Each step costs about a decoder's pass forward and back (0.45-0.65 s for a
768x512 image on one thread), so the steps go where they buy most: none below 16 stages (at 9 and 12 they
bought 0.02-0.04 dB net of their rate for 3-5 times the compress time), 10 from 16 and 20 from 21."""

MAX_STEPS = 1000
"""The most steps a caller may ask for (each is one pass through the decoder and back)."""


def default_steps(stages: int) -> int:
    """The steps `compress` refines for, when none are given, at a quality that codes `stages` stages."""
    return by_stages(DEFAULT_REFINEMENT, stages)


def check_steps(steps: int | None) -> int | None:
    """`steps` validated; None stays None (each quality's default, `default_steps`)."""
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= MAX_STEPS:
        raise ArgumentError(f"refine steps must be an integer 0..{MAX_STEPS}, got {steps!r}")
    return steps


def steps_for(steps: int | None, stages: int) -> int:
    """The steps a quality of `stages` stages is refined for: `steps` when given (validated), else its default."""
    checked = check_steps(steps)
    return default_steps(stages) if checked is None else checked


def describe_default() -> str:
    """The default refinement in words, for help texts and reports, e.g. 'none below 16 stages, 10 steps from 16
    stages, 20 steps from 21 stages'."""
    parts = []
    for i, (fewest, steps) in enumerate(DEFAULT_REFINEMENT):
        if i + 1 < len(DEFAULT_REFINEMENT) and steps == 0:
            parts.append(f"none below {DEFAULT_REFINEMENT[i + 1][0]} stages")
        elif steps:
            parts.append(f"{steps} steps from {fewest} stages")
    return ", ".join(parts) or "none"


def refine(decoder: nn.Module, pixels: torch.Tensor, latents: torch.Tensor, steps: int) -> torch.Tensor:
    """`latents` (1, D, h, w) after `steps` Adam steps (`REFINE_LR`) on the mean squared error of
    `decoder(latents) + 0.5` against `pixels` (1, 3, h * stride, w * stride) in [0, 1]. The decoder's weights
    are only read (its mode, eval for a model's decoder, is kept)."""
    import torch
    import torch.nn.functional as F

    with torch.inference_mode(False), torch.enable_grad():
        z = latents.detach().clone().requires_grad_(True)
        target = pixels.detach().clone()
        opt = torch.optim.Adam([z], lr=REFINE_LR)
        for _ in range(steps):
            loss = F.mse_loss(decoder(z) + 0.5, target)
            (grad,) = torch.autograd.grad(loss, [z])
            z.grad = grad
            opt.step()
        return z.detach()
