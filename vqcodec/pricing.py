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


class PricedPrior(Protocol):
    """A prior that prices codes (`ContextPrior`, `FrequencyPrior`, `LearnedPrior`)."""

    def code_costs(self, stage: int, previous: np.ndarray | None = None) -> np.ndarray: ...


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
        return torch.from_numpy(prior.code_costs(stage, prev)).mul_(w[stage]).to(device)

    return price


def stage_weights(num_stages: int, weight: float, first: float = 0.0) -> np.ndarray:
    """Per-stage rate weights: `first` for stage 1 (coded row by row, priced by its marginal only), `weight`
    for every later stage."""
    out = np.full(num_stages, float(weight))
    out[0] = first
    return out
