"""Entropy coding of index grids with constriction's range coder under a learned prior.

Priors are tables of integer symbol counts fitted on training data and stored in
the model file. Probabilities are derived from those integers by one exact float64
division, so the encoder and the decoder build bit-identical models on any machine.
Each stage is coded as its own stream, so a prefix of stages decodes without the rest.

- `FrequencyPrior`: one distribution per stage.
- `ContextPrior`: stage 0 conditioned on the code in the cell above, every later stage
  on the previous stage's code at the same cell, each through a small number of
  context groups; decoding stays vectorised (a row, or a whole group, per call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import constriction
import numpy as np


def _categorical(counts: np.ndarray) -> "constriction.stream.model.Categorical":
    """constriction model of integer counts (exact float64 division, then constriction's quantization)."""
    return constriction.stream.model.Categorical(counts.astype(np.float64) / float(counts.sum()), perfect=False)


_PER_CELL = constriction.stream.model.Categorical(perfect=False)
"""A categorical model whose probabilities are given per symbol, at coding time."""


def _words(data: bytes) -> np.ndarray:
    if len(data) % 4:
        raise ValueError("stream length is not a multiple of 4 bytes")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


@dataclass(frozen=True)
class FrequencyPrior:
    """Per-stage symbol counts, shape (stages, codebook_size), every count >= 1."""

    counts: np.ndarray

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts)
        if counts.ndim != 2 or counts.shape[1] < 2:
            raise ValueError(f"prior counts must have shape (stages, K >= 2), got {counts.shape}")
        if not np.issubdtype(counts.dtype, np.integer) or counts.min() < 1:
            raise ValueError("prior counts must be integers >= 1")
        object.__setattr__(self, "counts", counts.astype(np.int64))

    @classmethod
    def fit(cls, histogram: np.ndarray) -> "FrequencyPrior":
        """Prior from observed index histograms (stages, K), add-one smoothed so no symbol is impossible."""
        return cls(np.asarray(histogram, dtype=np.int64) + 1)

    @property
    def num_stages(self) -> int:
        return int(self.counts.shape[0])

    def probabilities(self, stage: int) -> np.ndarray:
        """float64 probabilities of one stage's symbols (exact division, identical everywhere)."""
        row = self.counts[stage]
        return row.astype(np.float64) / float(row.sum())

    def ideal_bits(self, symbols: np.ndarray, stage: int) -> float:
        """Sum of -log2 p(symbol): the length an ideal coder would reach under this prior."""
        p = self.probabilities(stage)
        return float(-np.log2(p[np.asarray(symbols).ravel()]).sum())

    def stage_bits(self, grids: np.ndarray, stage: int) -> float:
        """Sum of -log2 p over one stage of index grids (stages, rows, columns)."""
        return self.ideal_bits(grids[stage], stage)

    def min_bits(self, stage: int) -> float:
        """Fewest bits any one symbol of this stage can cost: bounds how many symbols a stream can hold."""
        return float(-np.log2(self.probabilities(stage).max()))

    def code_bits(self, stage: int) -> np.ndarray:
        """Cost in bits of every code of a stage (what rate-aware quantization weighs)."""
        return -np.log2(self.probabilities(stage))

    def code_costs(self, stage: int, previous: np.ndarray | None = None, scale: float = 1.0) -> np.ndarray:
        """float32 bits of every code of `stage` (K,), times `scale`: this prior has no context, so
        `previous` is unused."""
        return (self.code_bits(stage) * scale).astype(np.float32)

    def context_costs(self, stage: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
        """`code_costs` as one table (1, K) and no map from previous codes: this prior has no context."""
        return self.code_costs(stage, None, scale)[None], None

    def _model(self, stage: int) -> "constriction.stream.model.Categorical":
        return _categorical(self.counts[stage])

    def encode_grids(self, grids: np.ndarray) -> tuple[bytes, ...]:
        """One stream per stage for index grids (stages, rows, columns)."""
        return tuple(self.encode(grids[s], s) for s in range(grids.shape[0]))

    def decode_grids(self, streams: tuple[bytes, ...], rows: int, cols: int) -> np.ndarray:
        """Index grids (len(streams), rows, columns) from `encode_grids` streams."""
        return np.stack([self.decode(d, s, rows * cols).reshape(rows, cols) for s, d in enumerate(streams)])

    def encode(self, symbols: np.ndarray, stage: int) -> bytes:
        """Range-code a stage's symbols (any shape, read in C order) into bytes."""
        flat = np.ascontiguousarray(np.asarray(symbols).ravel(), dtype=np.int32)
        if flat.size and (flat.min() < 0 or flat.max() >= self.counts.shape[1]):
            raise ValueError("symbol out of the codebook's range")
        encoder = constriction.stream.queue.RangeEncoder()
        if flat.size:
            encoder.encode(flat, self._model(stage))
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, stage: int, count: int) -> np.ndarray:
        """Decode `count` symbols of a stage from bytes written by `encode`.

        Raises ValueError when the data is not a whole number of 32-bit words.
        """
        decoder = constriction.stream.queue.RangeDecoder(_words(data))
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        return decoder.decode(self._model(stage), count).astype(np.int64)


@dataclass(frozen=True)
class ContextPrior:
    """Each code is coded under a context chosen from codes the decoder already has.

    - Stage 0: the context is the group `groups[0, code above]` of the stage-0 code in the
      cell above, or the extra context G on the top row. Rows are decoded top to bottom,
      each row in one vectorised call with one distribution per cell.
    - Stage s >= 1: the context is the group `groups[s, code]` of stage s - 1's code at the
      same cell. The previous stage is fully decoded first, so all cells of one
      (stage, group) are coded in one vectorised call.

    `counts` (stages, G + 1, K) are integers >= 1; `groups` (stages, K) holds groups 0..G-1.
    Context G (the top row) is used by stage 0 only; other stages keep ones there.
    """

    counts: np.ndarray
    groups: np.ndarray
    _costs: dict = field(default_factory=dict, compare=False, repr=False)
    _models: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        counts, groups = np.asarray(self.counts), np.asarray(self.groups)
        if counts.ndim != 3 or counts.shape[1] < 2 or groups.shape != (counts.shape[0], counts.shape[2]):
            raise ValueError(f"context prior shapes do not fit: counts {counts.shape}, groups {groups.shape}")
        if not np.issubdtype(counts.dtype, np.integer) or counts.min() < 1:
            raise ValueError("prior counts must be integers >= 1")
        if groups.min() < 0 or groups.max() >= counts.shape[1] - 1:
            raise ValueError("context group out of range")
        object.__setattr__(self, "counts", counts.astype(np.int64))
        object.__setattr__(self, "groups", groups.astype(np.int64))

    @classmethod
    def fit(cls, top: np.ndarray, pairs: np.ndarray, num_groups: int = 128, seed: int = 0) -> "ContextPrior":
        """Fit from top-row stage-0 counts (K,) and pair counts (stages, K, K) [conditioning code, code]:
        `pairs[0]` counts (code above, code) in stage 0, `pairs[s]` (stage s - 1 code, stage s code) at one cell.

        The conditioning codes of each stage are grouped by weighted k-means on the square roots of
        the distributions they predict (Hellinger geometry), so codes that predict alike share a context.
        """
        from sklearn.cluster import KMeans  # fitting only: keeps scikit-learn out of every codec start-up

        stages, k = pairs.shape[0], pairs.shape[2]
        g = min(num_groups, k)
        counts = np.ones((stages, g + 1, k), dtype=np.int64)
        groups = np.zeros((stages, k), dtype=np.int64)
        counts[0, g] += top
        for s in range(stages):
            rows = pairs[s].astype(np.float64)
            weight = rows.sum(1)
            dist = np.where(weight[:, None] > 0, rows / np.maximum(weight, 1)[:, None], 1.0 / k)
            if (weight > 0).sum() > g:
                km = KMeans(n_clusters=g, n_init=3, random_state=seed + s).fit(np.sqrt(dist), sample_weight=weight + 1e-3)
                groups[s] = km.labels_
            for grp in range(g):
                counts[s, grp] += pairs[s][groups[s] == grp].sum(0)
        return cls(counts, groups)

    @property
    def num_stages(self) -> int:
        return int(self.counts.shape[0])

    @cached_property
    def largest_row_sum(self) -> int:
        """The largest sum of one context's counts over every stage: it bounds adaptive tables
        (`entropy.adaptive.check_exact`), which every compress checks, so it is computed once."""
        return int(self.counts.sum(2).max())

    @property
    def _top(self) -> int:
        return int(self.counts.shape[1]) - 1

    def _table(self, stage: int) -> np.ndarray:
        """float64 probabilities (contexts, K) of a stage (exact division, identical everywhere)."""
        rows = self.counts[stage].astype(np.float64)
        return rows / rows.sum(1, keepdims=True)

    def _above(self, row_above: np.ndarray | None, cols: int) -> np.ndarray:
        """Stage-0 contexts of one row from the decoded row above it (None on the top row)."""
        if row_above is None:
            return np.full(cols, self._top, dtype=np.int64)
        return self.groups[0][row_above]

    def _contexts(self, grids: np.ndarray, stage: int) -> np.ndarray:
        """Context of every cell of `stage`, in row-major order."""
        if stage == 0:
            rows, cols = grids.shape[1:]
            return np.concatenate([self._above(grids[0, r - 1] if r else None, cols) for r in range(rows)])
        return self.groups[stage][grids[stage - 1].ravel()]

    def code_bits(self, stage: int) -> np.ndarray:
        """Bits of every code of a stage under its marginal over contexts (for rate-aware quantization)."""
        total = self.counts[stage].sum(0) - (self.counts.shape[1] - 1)
        return -np.log2(total / total.sum())

    def code_costs(self, stage: int, previous: np.ndarray | None = None, scale: float = 1.0) -> np.ndarray:
        """float32 bits of every code of `stage` in each cell, (M, K), times `scale`, given the previous
        stage's codes there (M,): what rate-aware quantization weighs, in the context the decoder will use.

        Stage 0 (whose context, the row above, is chosen at the same time) and `previous` None give
        the marginal over contexts (K,). The scale multiplies the small per-group table before it is
        spread over the cells, which saves a pass over the (M, K) result.
        """
        if stage == 0 or previous is None:
            return (self.code_bits(stage) * scale).astype(np.float32)
        return np.take(self._stage_costs(stage) * np.float32(scale), self.groups[stage][previous], axis=0)

    def _stage_costs(self, stage: int) -> np.ndarray:
        """float32 bits of every code in each context of a stage (contexts, K), computed once per prior."""
        if stage not in self._costs:
            self._costs[stage] = (-np.log2(self._table(stage))).astype(np.float32)
        return self._costs[stage]

    def context_costs(self, stage: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
        """`code_costs` of a stage >= 1 in its compact form: float32 bits x `scale` of every code in each
        context, (contexts, K), and the context of each previous code (K,); `code_costs(stage, previous)` is
        the table's rows at the map's values of `previous`."""
        if stage == 0:
            raise ValueError("stage 1 is priced by the marginal (code_costs): its context is the row above")
        return self._stage_costs(stage) * np.float32(scale), self.groups[stage]

    def min_bits(self, stage: int) -> float:
        """Fewest bits any one symbol of this stage can cost, in any context."""
        rows = self.counts[stage].astype(np.float64)
        return float(-np.log2((rows.max(1) / rows.sum(1)).max()))

    def stage_bits(self, grids: np.ndarray, stage: int) -> float:
        """Sum of -log2 p over one stage of index grids (stages, rows, columns)."""
        p = self._table(stage)[self._contexts(grids, stage), grids[stage].ravel()]
        return float(-np.log2(p).sum())

    def ideal_bits(self, grids: np.ndarray) -> float:
        """Sum of -log2 p over all stages of index grids (stages, rows, columns)."""
        return sum(self.stage_bits(grids, s) for s in range(grids.shape[0]))

    def _model(self, stage: int, group: int) -> "constriction.stream.model.Categorical":
        """The constriction model of a (stage >= 1, group), made once per prior."""
        key = (stage, group)
        if key not in self._models:
            self._models[key] = _categorical(self.counts[stage, group])
        return self._models[key]

    def _by_group(self, grids: np.ndarray, stage: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The cells of a stage >= 1 ordered by context, raster order within each: (order, the contexts
        present, where each one's cells end in that order)."""
        ctx = self._contexts(grids, stage)
        # stable, so raster order within a context; on 16-bit keys NumPy sorts by radix
        order = np.argsort(ctx.astype(np.int16) if self.counts.shape[1] <= 2**15 else ctx, kind="stable")
        present, sizes = np.unique(ctx, return_counts=True)
        return order, present, np.cumsum(sizes)

    def encode_grids(self, grids: np.ndarray) -> tuple[bytes, ...]:
        """One stream per stage: stage 0 row by row, later stages group by group in raster order."""
        k = self.counts.shape[2]
        if grids.size and (grids.min() < 0 or grids.max() >= k):
            raise ValueError("symbol out of the codebook's range")
        streams = []
        for s in range(grids.shape[0]):
            encoder = constriction.stream.queue.RangeEncoder()
            if s == 0:
                table = self._table(0)
                for r in range(grids.shape[1]):
                    ctx = self._above(grids[0, r - 1] if r else None, grids.shape[2])
                    encoder.encode(grids[0, r].astype(np.int32), _PER_CELL, table[ctx])
            else:
                order, present, ends = self._by_group(grids, s)
                symbols = grids[s].ravel()[order].astype(np.int32)
                for g, start, end in zip(present.tolist(), [0, *ends[:-1].tolist()], ends.tolist()):
                    encoder.encode(symbols[start:end], self._model(s, g))
            streams.append(encoder.get_compressed().astype("<u4").tobytes())
        return tuple(streams)

    def decode_grids(self, streams: tuple[bytes, ...], rows: int, cols: int) -> np.ndarray:
        """Index grids (len(streams), rows, columns) from `encode_grids` streams."""
        grids = np.zeros((len(streams), rows, cols), dtype=np.int64)
        for s, data in enumerate(streams):
            decoder = constriction.stream.queue.RangeDecoder(_words(data))
            if s == 0:
                table = self._table(0)
                for r in range(rows * (cols > 0)):
                    ctx = self._above(grids[0, r - 1] if r else None, cols)
                    grids[0, r] = decoder.decode(_PER_CELL, table[ctx])
                continue
            order, present, ends = self._by_group(grids, s)
            flat = np.empty(rows * cols, dtype=np.int64)
            sizes = np.diff(ends, prepend=0).tolist()
            flat[order] = np.concatenate([decoder.decode(self._model(s, g), n) for g, n in zip(present.tolist(), sizes)]
                                         or [np.zeros(0, dtype=np.int64)])
            grids[s] = flat.reshape(rows, cols)
        return grids
