"""Rate-aware beam search over the residual stages, scored by one bfloat16 matrix product per stage.

`ResidualVQ.beam_encode` scores every code of a stage in float32: a matrix product for -2 r.c, then passes
that add each code's squared norm, its price in the cell's context and each beam's squared residual and
penalties so far. On one CPU core those passes and the float32 product took most of `compress` at the
default quality (108 of 161 ms for a 768x512 image on an AMX Xeon, once the networks ran in bfloat16).

Here one bfloat16 product (AMX tiles, through oneDNN) gives the whole score ||r - c||^2 + price + the beam's
penalties so far, since ||r - c||^2 = ||c||^2 - 2 r.c + ||r||^2. Each row is [r, 1, 1, e_hi, e_lo, the one-hot
vector of its context] against the columns [-2c, n_hi, n_lo, 1, 1, the prices of each context]; n = ||c||^2
and e = ||r||^2 + penalties are each split into a bfloat16 value and the bfloat16 rounding of the rest, so
that the terms as large as the score itself enter it to about 16 bits, and on the first stage r and c are
split too (`SPLIT_STAGES`). The picks are made on the scores' bits: a non-negative bfloat16 orders as its
int16 bit pattern, and NumPy's argmin over int16 is fast. The beams' residuals and penalties are carried in
float32, as in `beam_encode`.

Where two codes score within bfloat16's rounding of each other the pick can differ from the float32
search's (2-4% of the codes at quality 5); the squared error + weighted bits of the codes chosen stayed within
0.01% (quality 5) and 0.07% (quality 8) of the float32 search's on Kodak crops (tests/test_code_search.py);
rate and PSNR through the whole codec: `python -m vqcodec.bench.precision` (docs/benchmarks.md, "bfloat16
inference"). Decoding does not depend on how codes were chosen. `codec.quantize`
uses this search where the model's arithmetic is bfloat16 (`CodecModel.precision`): on CPUs without native
bfloat16 the product is emulated and slow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vqcodec.pricing import PricedPrior
from vqcodec.quantizer import ResidualVQ

BF16 = torch.bfloat16
MASKED = np.iinfo(np.int16).max
"""A score no code can beat: the bfloat16 bit pattern of NaN, above every finite non-negative score."""


def _split(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 `value` as bfloat16 (hi, lo) with hi + lo = value to about 16 bits."""
    hi = value.to(BF16)
    return hi, (value - hi.float()).to(BF16)


@dataclass(frozen=True)
class StageTable:
    """One stage's search operands: the codebook (K, D) in float32; its score columns in bfloat16, (D + 4, K),
    then for a priced stage the prices of its codes (w x bits) in each context, (C, K); those prices in
    float32; and the context of each previous code (K,), None for a prior without that context (C = 1)."""

    codebook: torch.Tensor
    columns: torch.Tensor
    prices: torch.Tensor | None
    contexts: torch.Tensor | None
    split: bool
    """Whether the columns are `score_columns` with `split`, so that the rows' residuals enter in two parts."""


SPLIT_STAGES = 1
"""The first stages whose r.c is computed from split operands as well. A stage-1 code picked on rounded
products costs most, since every later stage builds on it: with greedy coding (effort 0) on a 384x256
Kodak crop, the codes' squared error + weighted bits rose by 0.41% unsplit, 0.02% split; with the default
beams, splitting every stage changed it by under 0.01% and took a third longer."""

ALIGN = 32
"""The products' inner dimension is padded with zeros to a multiple of this: AMX multiplies bfloat16 in
blocks of 32, and oneDNN took twice as long for an inner dimension of 197 as for 224."""


def _padded(width: int) -> int:
    return -(-width // ALIGN) * ALIGN


def score_columns(codebook: torch.Tensor, split: bool = False) -> torch.Tensor:
    """The bfloat16 columns [c, n_hi, n_lo, 1, 1] (D + 4, K) of a codebook (K, D), with c = -2 x the codes
    and n = ||c||^2; `split`: [c_hi, c_hi, c_lo, n_hi, n_lo, 1, 1] (3D + 4, K), against rows [r_hi, r_lo,
    r_hi, ...], so that r.c enters to about 16 bits too (`SPLIT_STAGES`)."""
    hi, lo = _split(codebook.pow(2).sum(1))
    ones = torch.ones_like(hi)
    c_hi, c_lo = _split((-2.0 * codebook).t())
    products = [c_hi, c_hi, c_lo] if split else [c_hi]
    return torch.cat([*products, hi[None], lo[None], ones[None], ones[None]]).contiguous()


def search_columns(quantizer: ResidualVQ) -> list[torch.Tensor]:
    """Every stage's `score_columns`, the first `SPLIT_STAGES` split: made once per model."""
    return [score_columns(stage.codebook, s < SPLIT_STAGES) for s, stage in enumerate(quantizer.stages)]


def _aligned(columns: torch.Tensor) -> torch.Tensor:
    """`columns` with zero rows appended up to a multiple of `ALIGN`."""
    pad = _padded(columns.shape[0]) - columns.shape[0]
    return torch.cat([columns, columns.new_zeros(pad, columns.shape[1])]).contiguous() if pad else columns


def stage_tables(quantizer: ResidualVQ, prior: PricedPrior, weights: Sequence[float],
                 columns: Sequence[torch.Tensor]) -> list[StageTable]:
    """The tables of the first `len(weights)` stages, priced at `weights` (lambda per stage) under `prior`;
    `columns` are the model's `search_columns`. Stage 1 is never priced (its context is
    the row above, chosen in the same pass), as in `pricing.stage_weights`."""
    tables = []
    for s, w in enumerate(weights):
        codebook = quantizer.stages[s].codebook
        split = s < SPLIT_STAGES
        if not (w and s):
            tables.append(StageTable(codebook, _aligned(columns[s]), None, None, split))
            continue
        costs, contexts = prior.context_costs(s, float(w))
        prices = torch.from_numpy(np.ascontiguousarray(costs, dtype=np.float32))
        tables.append(StageTable(codebook, _aligned(torch.cat([columns[s], prices.to(BF16)])), prices,
                                 None if contexts is None else torch.from_numpy(np.asarray(contexts, dtype=np.int64)),
                                 split))
    return tables


def _smallest(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices (N, k) of the k smallest non-negative bfloat16 scores (N, M) given as int16 bit patterns,
    smallest first; ties go to the lowest index. Overwrites `scores` when k > 1."""
    rows = np.arange(scores.shape[0])
    picks = []
    for i in range(k):
        pick = scores.argmin(axis=1)
        picks.append(pick)
        if i + 1 < k:
            scores[rows, pick] = MASKED
    return np.stack(picks, axis=1).astype(np.int64, copy=False)


@torch.no_grad()
def search(tables: Sequence[StageTable], x: torch.Tensor, beam: int) -> torch.Tensor:
    """Indices (S, N) for (N, D) float32 rows by beam search over the `len(tables)` stages (greedy at
    `beam` 1), as `ResidualVQ.beam_encode` with the same prices, scored in bfloat16.

    Each row of a stage's product is [r, 1, 1, e_hi, e_lo] and, for a priced stage, the one-hot vector of
    the row's context, which picks that context's prices out of the columns: the product is the whole score."""
    n, d = x.shape
    residual = x[:, None, :]  # (N, B, D)
    cost = x.new_zeros(n, 1)  # penalties so far, per beam
    history: list[tuple[torch.Tensor, torch.Tensor]] = []  # (parent beam, code) per stage
    previous = torch.zeros(0, dtype=torch.long)  # the previous stage's code of each row of `flat`
    for s, table in enumerate(tables):
        k = table.codebook.shape[0]
        b = residual.shape[1]
        flat = residual.reshape(n * b, d)
        e_hi, e_lo = _split(flat.pow(2).sum(1) + cost.reshape(-1))
        rows = torch.zeros(n * b, table.columns.shape[0], dtype=BF16)
        if table.split:
            r_hi, r_lo = _split(flat)
            rows[:, :d] = r_hi
            rows[:, d : 2 * d] = r_lo
            rows[:, 2 * d : 3 * d] = r_hi
            at = 3 * d
        else:
            rows[:, :d] = flat
            at = d
        rows[:, at : at + 2] = 1.0
        rows[:, at + 2] = e_hi
        rows[:, at + 3] = e_lo
        context = None
        if table.prices is not None:
            context = torch.zeros_like(previous) if table.contexts is None else table.contexts.index_select(0, previous)
            rows[torch.arange(n * b), at + 4 + context] = 1.0
        scores = rows @ table.columns  # (N * B, K): the whole score of every beam and code
        keep = 1 if s == len(tables) - 1 else min(beam, b * k)
        best = torch.from_numpy(_smallest(scores.view(torch.int16).numpy().reshape(n, b * k), keep))
        parent, code = best // k, best % k
        source = (parent + torch.arange(0, n * b, b)[:, None]).reshape(-1)  # rows of `flat` the beams extend
        codes = code.reshape(-1)
        residual = (flat.index_select(0, source) - table.codebook.index_select(0, codes)).view(n, keep, d)
        cost = cost.reshape(-1).index_select(0, source)
        if context is not None:
            cost = cost + table.prices[context.index_select(0, source), codes]
        cost = cost.view(n, keep)
        previous = codes
        history.append((parent, code))
    indices = []
    pick = torch.zeros(n, 1, dtype=torch.long)
    for parent, code in reversed(history):
        indices.append(code.gather(1, pick)[:, 0])
        pick = parent.gather(1, pick)
    return torch.stack(indices[::-1])
