"""Code prices: what each code would cost in bits under a model's prior, as rate-aware coding's penalties.

Rate-aware (entropy-constrained) quantization picks, in each cell, the code that minimises
squared latent error + lambda * bits. Under a context prior a code's bits depend on the group
of the previous stage's code at the same cell, which the encoder has already chosen when it
reaches a stage, so the prices are per cell: a near-zero code that is cheap after another
near-zero code stays cheap there. Flat regions then stop spending a full code's bits on the
late stages, where each stage buys least, and the bits go where they reduce the error most.

A model file records the rate weights its prior was counted under (`CodecModel.rate_weights`):
the prior's tables describe the codes that encoder chooses, so encoding with the same weights
keeps the two matched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from vqcodec.quantizer import Penalty


TOP_SCALES = (0.5, 0.25)
"""Scales of a model's rate weights at the qualities above its stage count (`codec.quality_levels`): every
stage coded, with bits priced less. On 16 BSDS500 val images the shipped model's 8 stages give 0.693 bpp,
29.75 dB at full weights, 0.779 bpp, 30.03 dB at half, 0.849 bpp, 30.14 dB at a quarter, but 1.179 bpp,
30.23 dB unpriced: the prior expects the cheap codes that pricing picks, so nearest-neighbour coding
pays for rarer ones (the previous, greedy model: 0.910 bpp, 30.23 dB)."""


class PricedPrior(Protocol):
    """A prior that prices codes (`ContextPrior`, `FrequencyPrior`, `LearnedPrior`)."""

    def code_costs(self, stage: int, previous: np.ndarray | None = None, scale: float = 1.0) -> np.ndarray: ...

    def context_costs(self, stage: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]: ...


def penalty(prior: PricedPrior, weights: Sequence[float], device: torch.device | str = "cpu") -> Penalty | None:
    """`ResidualVQ.encode`'s penalty: weights[s] times the bits of stage s's codes in each cell's context,
    as tensors on `device`.

    None when every weight is 0 (plain nearest-neighbour coding). Stages past `len(weights)` are unpriced.
    """
    w = [float(x) for x in weights]
    if not any(w):
        return None

    def price(stage: int, previous: torch.Tensor | None) -> torch.Tensor | None:
        if stage >= len(w) or w[stage] == 0.0:
            return None
        prev = None if previous is None else previous.cpu().numpy()
        return torch.from_numpy(prior.code_costs(stage, prev, w[stage])).to(device)

    return price


def table_penalty(prior: PricedPrior, weights: Sequence[float], codebook_size: int,
                  device: torch.device | str = "cpu") -> Penalty | None:
    """`penalty`'s prices from tables made once: for each priced stage, the (K, K) cost of every code after
    every previous code, kept on `device`, so pricing a batch is one gather there (a prior without context,
    `FrequencyPrior`, gives one price per code (K,), the same in every cell).

    For training with rate-aware code choice (`TrainConfig.priced`): `penalty` builds each batch's
    (M, K) prices in NumPy on the CPU, which on a GPU costs more than the step. The prices are the
    same (`ContextPrior.code_costs` depends on the previous code only through its group).
    """
    w = [float(x) for x in weights]
    if not any(w):
        return None
    if w[0] != 0.0:
        raise ValueError("stage 1 is not priced (`stage_weights`): its context is chosen in the same pass")
    every = np.arange(codebook_size)
    tables = {s: torch.from_numpy(prior.code_costs(s, every, w[s])).to(device)
              for s in range(1, len(w)) if w[s] != 0.0}

    def price(stage: int, previous: torch.Tensor | None) -> torch.Tensor | None:
        table = tables.get(stage)
        if table is None or previous is None:
            return None
        return table if table.dim() == 1 else table[previous]

    return price


def stage_weights(num_stages: int, weights: Sequence[float] = ()) -> np.ndarray:
    """Per-stage rate weights (num_stages,): stage 1 is 0 (its context, the row above, is chosen in the same
    pass, so it is not priced); `weights` gives stages 2..S, one value for all of them or one each.
    Empty: all 0 (greedy coding)."""
    out = np.zeros(num_stages)
    values = [float(w) for w in weights]
    if len(values) not in (0, 1, num_stages - 1):
        raise ValueError(f"give one rate weight or {num_stages - 1} (stages 2..{num_stages}), not {len(values)}")
    if not all(np.isfinite(values)) or any(w < 0 for w in values):
        raise ValueError("rate weights must be numbers >= 0")
    out[1:] = values if values else 0.0
    return out


def parse_weights(text: str) -> tuple[float, ...]:
    """Rate weights from the command line: one number, or comma-separated numbers for stages 2..S."""
    try:
        return tuple(float(part) for part in text.split(",")) if text.strip() else ()
    except ValueError:
        raise ValueError(f"rate weights must be numbers separated by commas, got {text!r}") from None
