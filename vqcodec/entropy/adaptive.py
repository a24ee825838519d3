"""Backward-adaptive coding under a context prior: each context's table learns the image as it is coded.

The count prior (`counts.ContextPrior`) gives every context one table of code counts, counted on
the training images. One image uses far fewer codes than the training set, and in a context it tends
to reuse the codes it has used there already (the same sky, the same foliage). Here each context's
probabilities are the prior's table, worth `STRENGTH` codes, plus the codes the image has shown in
that context so far:

    p(code | context) = (T * counts[context, code] / S[context] + seen[context, code]) / (T + seen[context])

where S is the table's sum, T = `STRENGTH` and `seen` counts the cells already coded. In integers,
weight = counts * T + seen * S, each probability that weight divided by the row's sum.

Coding order. Stage 1 is coded row by row as the prior codes it (its context is the code above), its
tables brought up to date every `STAGE0_ROWS` rows. Later stages take their context from the previous
stage, so any order works: the cells are coded in `len(PASS_LEVELS) + 1` passes of an 8x8 ordered-dither
(Bayer) pattern, 2/64 of the cells spread evenly over the image first, then 6/64, 24/64 and 32/64; each
pass is coded under the tables of everything before it, one vectorised range-coder call per context.
Spread passes learn the whole image's statistics early: seven of them kept what updating the tables
after every row (in raster order) kept, and cost a fraction of its time (docs/entropy.md).

Exactness. Every weight and row sum is an integer below 2^53, held exactly in float64, and each
probability is one correctly rounded division: encoder and decoder compute bit-identical tables on
any machine (`check_exact` refuses tables and grids for which this bound could fail).
"""

from __future__ import annotations

from typing import Protocol

import constriction
import numpy as np

from vqcodec.effort import by_distortion
from vqcodec.entropy.counts import _PER_CELL, ContextPrior, _words

STRENGTH = 256
"""T: how many codes the prior's table is worth in each context, against the codes the image shows. On 8 of
BSDS500 val images 1-16 and 8 of 17-40 at qualities 5, 12 and 26, T = 128 and 512 came within 0.3% of 256;
64 gained little or lost bits (docs/entropy.md)."""
STAGE0_ROWS = 4
"""Stage 1's tables are brought up to date every this many rows. Every row: 8,952 bytes against 8,976 for
quality 5 of a BSDS500 train image enlarged to 768x512, in 22 ms against 17 to encode."""
BAYER = np.array([[0, 32, 8, 40, 2, 34, 10, 42], [48, 16, 56, 24, 50, 18, 58, 26],
                  [12, 44, 4, 36, 14, 46, 6, 38], [60, 28, 52, 20, 62, 30, 54, 22],
                  [3, 35, 11, 43, 1, 33, 9, 41], [51, 19, 59, 27, 49, 17, 57, 25],
                  [15, 47, 7, 39, 13, 45, 5, 37], [63, 31, 55, 23, 61, 29, 53, 21]])
"""The 8x8 ordered-dither matrix: each prefix 0..k-1 of its values is spread evenly over the square."""
PASS_LEVELS = (2, 8, 32)
"""Where the passes of stages 2 and up split the dither values 0..63: [0, 2), [2, 8), [8, 32), [32, 64), that is
2/64, 6/64, 24/64 and 32/64 of the cells. On 8 of BSDS500 val images 1-16 and 8 of 17-40, qualities 5, 12
and 26 together: -0.73% and -1.93% bytes against fixed tables, where seven passes ([0, 1), [1, 2), [2, 4),
... [32, 64)) gave -0.78% and -2.05% in a third more time, and three ([0, 4), [4, 16), [16, 64)) -0.68% and
-1.77%."""
ADAPTIVE_FROM: dict[str, int] = {"mse": 6, "ms-ssim": 1}
"""`compress` codes files of this many stages or more adaptively, for a model of each `ModelConfig.distortion`.
Adaptive coding costs about 2 ms a stage in each direction for a 768x512 image, fixed tables 0.1-0.3 ms. "mse":
from 6 stages, so below (the default quality of `default` has 5) compress and decompress keep their time.
"ms-ssim" (`perceptual`, vqcodec 0.13.0): every file. At qualities 2-5 that wrote 1.4-2.0% fewer bytes on the
first 8 BSDS500 val images (quality 5: 4.4% on val images 17-24, 4.1% on Kodak), at about 1.04-1.17 times
0.12.0's compress time and 1.06-1.48 times its decompress time for a 768x512 image at the default quality (5
stages), in three same-run comparisons (`python -m vqcodec.bench.versus --model perceptual`)."""
EXACT_LIMIT = 2**53
"""float64 holds every integer below this exactly."""


def passes(rows: int, cols: int) -> list[np.ndarray]:
    """The flat (row-major) cell indices of each pass of a stage >= 2, in coding order; raster order within."""
    r, c = np.indices((rows, cols))
    level = np.searchsorted(np.array(PASS_LEVELS), BAYER[r % 8, c % 8].ravel(), side="right")
    order = np.argsort(level, kind="stable")
    ends = np.searchsorted(level[order], np.arange(1, len(PASS_LEVELS) + 2))
    return [order[a:b] for a, b in zip([0, *ends[:-1].tolist()], ends.tolist())]


def first_cells(stage: int, rows: int, cols: int) -> int:
    """How many cells of a stage are coded before its tables learn anything (under the prior's own tables):
    stage 1's first `STAGE0_ROWS` rows, a later stage's first pass. Each costs at least the prior's fewest bits,
    which bounds how many cells a stream can hold (the decoder's guard against forged sizes)."""
    if stage == 0:
        return min(rows, STAGE0_ROWS) * cols
    per_row = [len(range(i, rows, 8)) for i in range(8)]
    per_col = [len(range(j, cols, 8)) for j in range(8)]
    return sum(per_row[i] * per_col[j] for i in range(8) for j in range(8) if BAYER[i, j] < PASS_LEVELS[0])


def check_exact(prior: ContextPrior, cells: int) -> None:
    """ValueError unless every weight sum of a grid of `cells` cells stays below 2^53 under this prior."""
    if prior.largest_row_sum * (STRENGTH + cells) >= EXACT_LIMIT:
        raise ValueError("the prior's tables are too large to code this grid adaptively")


def used_for(prior: object, stages: int, cells: int, distortion: str = "mse") -> bool:
    """Whether `compress` codes a grid of `stages` stages and `cells` cells a stage adaptively under `prior`, for a
    model of `distortion`: a context prior, from `ADAPTIVE_FROM` stages, where the tables stay exact."""
    if not isinstance(prior, ContextPrior) or stages < by_distortion(ADAPTIVE_FROM, distortion, "adaptive coding"):
        return False
    try:
        check_exact(prior, cells)
    except ValueError:
        return False
    return True


def describe(distortion: str = "mse") -> str:
    """Which files a model of `distortion` codes adaptively, in words: "files of 6 stages or more", "every file"."""
    fewest = by_distortion(ADAPTIVE_FROM, distortion, "adaptive coding")
    return "every file" if fewest <= 1 else f"files of {fewest} stages or more"


class _Tables:
    """One stage's adaptive tables: weights counts * T + seen * S per context, their sums, and probabilities."""

    def __init__(self, counts: np.ndarray) -> None:
        self.k = counts.shape[1]
        self.sums = counts.sum(1).astype(np.float64)
        self.weights = counts.astype(np.float64) * STRENGTH
        self.totals = self.sums * STRENGTH
        self.probs = self.weights / self.totals[:, None]
        self._models: dict[int, object] = {}

    def add(self, contexts: np.ndarray, codes: np.ndarray) -> None:
        """Count these cells' codes in their contexts and bring those contexts' probabilities up to date."""
        cells, hits = np.unique(contexts * self.k + codes, return_counts=True)
        self.weights.reshape(-1)[cells] += hits * self.sums[cells // self.k]
        per_context = np.bincount(contexts, minlength=len(self.sums))
        touched = np.flatnonzero(per_context)
        self.totals[touched] += per_context[touched] * self.sums[touched]
        self.probs[touched] = self.weights[touched] / self.totals[touched, None]
        for c in touched.tolist():
            self._models.pop(c, None)

    def model(self, context: int) -> object:
        """The constriction model of a context's current probabilities (made once until it changes)."""
        if context not in self._models:
            self._models[context] = constriction.stream.model.Categorical(self.probs[context], perfect=False)
        return self._models[context]


def _grouped(contexts: np.ndarray, count: int) -> tuple[np.ndarray, list[int], list[int]]:
    """Cells sorted by context (raster order within one): the order, the contexts present and their sizes."""
    order = np.argsort(contexts.astype(np.int16) if count <= 2**15 else contexts, kind="stable")
    sizes = np.bincount(contexts, minlength=count)
    present = np.flatnonzero(sizes)
    return order, present.tolist(), sizes[present].tolist()


class _Coder(Protocol):
    """One stage's range coder as `_walk` drives it: it codes the cells it is shown and returns their codes."""

    def row(self, codes: np.ndarray | None, probs: np.ndarray) -> np.ndarray:
        """Stage 1's next row under per-cell probabilities (one row of `probs` per cell)."""

    def groups(self, codes: np.ndarray | None, models: list[object], sizes: list[int]) -> np.ndarray:
        """A pass's cells grouped by context (consecutive runs of `sizes`), each run under its context's model."""


class _Encoder:
    """Codes the codes it is given (the encoder's side of `_walk`)."""

    def __init__(self) -> None:
        self.coder = constriction.stream.queue.RangeEncoder()

    def row(self, codes: np.ndarray | None, probs: np.ndarray) -> np.ndarray:
        assert codes is not None
        self.coder.encode(codes.astype(np.int32), _PER_CELL, probs)
        return codes

    def groups(self, codes: np.ndarray | None, models: list[object], sizes: list[int]) -> np.ndarray:
        assert codes is not None
        symbols = codes.astype(np.int32)
        ends = np.cumsum(sizes).tolist()
        for model, a, b in zip(models, [0, *ends[:-1]], ends):
            self.coder.encode(symbols[a:b], model)
        return codes

    def stream(self) -> bytes:
        return self.coder.get_compressed().astype("<u4").tobytes()


class _Decoder:
    """Reads the codes from a stream (the decoder's side of `_walk`)."""

    def __init__(self, data: bytes) -> None:
        self.coder = constriction.stream.queue.RangeDecoder(_words(data))

    def row(self, codes: np.ndarray | None, probs: np.ndarray) -> np.ndarray:
        return self.coder.decode(_PER_CELL, probs)

    def groups(self, codes: np.ndarray | None, models: list[object], sizes: list[int]) -> np.ndarray:
        return np.concatenate([self.coder.decode(m, n) for m, n in zip(models, sizes)] or [np.zeros(0, np.int64)])


def _walk(prior: ContextPrior, grids: np.ndarray, coders: list[_Coder], known: bool) -> None:
    """Visit every cell of `grids` (stages, rows, columns) in coding order, stage s through `coders[s]`, keeping
    the adaptive tables up to date; the codes each coder returns are written into `grids`. `known`: the grids
    hold the codes already (encoding) and the coders are shown them; otherwise the coders read them."""
    stages, rows, cols = grids.shape
    check_exact(prior, rows * cols)
    order = passes(rows, cols)
    for s, coder in enumerate(coders):
        tables = _Tables(prior.counts[s])
        if s == 0:
            pending: list[tuple[np.ndarray, np.ndarray]] = []
            for r in range(rows * (cols > 0)):
                if r % STAGE0_ROWS == 0 and pending:
                    tables.add(*map(np.concatenate, zip(*pending)))
                    pending = []
                ctx = prior._above(grids[0, r - 1] if r else None, cols)
                grids[0, r] = coder.row(grids[0, r] if known else None, tables.probs[ctx])
                pending.append((ctx, grids[0, r]))
            continue
        contexts = prior.groups[s][grids[s - 1]].ravel()
        flat = grids[s].reshape(-1)
        for cells in order:
            ctx = contexts[cells]
            sort, present, sizes = _grouped(ctx, len(tables.sums))
            sym = np.empty(len(cells), dtype=np.int64)
            sym[sort] = coder.groups(flat[cells][sort] if known else None, [tables.model(c) for c in present], sizes)
            flat[cells] = sym
            tables.add(ctx, sym)


def encode_grids(prior: ContextPrior, grids: np.ndarray) -> tuple[bytes, ...]:
    """One stream per stage of index grids (stages, rows, columns), each coded adaptively."""
    if grids.size and (grids.min() < 0 or grids.max() >= prior.counts.shape[2]):
        raise ValueError("symbol out of the codebook's range")
    coders = [_Encoder() for _ in range(grids.shape[0])]
    _walk(prior, np.array(grids, dtype=np.int64), coders, known=True)
    return tuple(c.stream() for c in coders)


def decode_grids(prior: ContextPrior, streams: tuple[bytes, ...], rows: int, cols: int) -> np.ndarray:
    """Index grids (len(streams), rows, columns) from `encode_grids` streams."""
    grids = np.zeros((len(streams), rows, cols), dtype=np.int64)
    _walk(prior, grids, [_Decoder(data) for data in streams], known=False)
    return grids
