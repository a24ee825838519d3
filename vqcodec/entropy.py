"""Entropy coding of index grids with constriction's range coder under a learned prior.

Priors are tables of integer symbol counts fitted on training data and stored in
the model file. Probabilities are derived from those integers by one exact float64
division, so the encoder and the decoder build bit-identical models on any machine.
Each stage is coded as its own stream, so a prefix of stages decodes without the rest.

- `FrequencyPrior`: one distribution per stage.
- `ContextPrior`: stage 0 as above; every later stage conditioned on the context
  group of the previous stage's code at the same cell. The previous stage is fully
  decoded first, so all cells of one (stage, group) are coded in one vectorised call.
"""

from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np


def _categorical(counts: np.ndarray) -> "constriction.stream.model.Categorical":
    """constriction model of integer counts (exact float64 division, then constriction's quantization)."""
    return constriction.stream.model.Categorical(counts.astype(np.float64) / float(counts.sum()), perfect=False)


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

    def min_bits(self, stage: int) -> float:
        """Fewest bits any one symbol of this stage can cost: bounds how many symbols a stream can hold."""
        return float(-np.log2(self.probabilities(stage).max()))

    def code_bits(self, stage: int) -> np.ndarray:
        """Cost in bits of every code of a stage (what rate-aware quantization weighs)."""
        return -np.log2(self.probabilities(stage))

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
    """Stage 0 coded under `counts[0, 0]`; stage s >= 1 under `counts[s, groups[s - 1, previous code]]`.

    `counts` (stages, groups, K) are integers >= 1; `groups` (stages, K) maps each code
    of a stage to the context group it sets for the next stage.
    """

    counts: np.ndarray
    groups: np.ndarray

    def __post_init__(self) -> None:
        counts, groups = np.asarray(self.counts), np.asarray(self.groups)
        if counts.ndim != 3 or groups.shape != (counts.shape[0], counts.shape[2]):
            raise ValueError(f"context prior shapes do not fit: counts {counts.shape}, groups {groups.shape}")
        if not np.issubdtype(counts.dtype, np.integer) or counts.min() < 1:
            raise ValueError("prior counts must be integers >= 1")
        if groups.min() < 0 or groups.max() >= counts.shape[1]:
            raise ValueError("context group out of range")
        object.__setattr__(self, "counts", counts.astype(np.int64))
        object.__setattr__(self, "groups", groups.astype(np.int64))

    @classmethod
    def fit(cls, first: np.ndarray, pairs: np.ndarray, num_groups: int = 32, seed: int = 0) -> "ContextPrior":
        """Fit from stage-0 counts (K,) and pair counts (stages - 1, K, K) [previous code, code].

        Codes of each stage are grouped by weighted k-means on the square roots of their
        next-stage distributions (Hellinger geometry), so codes that predict alike share a context.
        """
        from sklearn.cluster import KMeans  # fitting only: keeps scikit-learn out of every codec start-up

        k = first.shape[0]
        stages = pairs.shape[0] + 1
        g = min(num_groups, k)
        counts = np.ones((stages, g, k), dtype=np.int64)
        groups = np.zeros((stages, k), dtype=np.int64)
        counts[0, :] += first
        for s in range(1, stages):
            rows = pairs[s - 1].astype(np.float64)
            weight = rows.sum(1)
            dist = np.where(weight[:, None] > 0, rows / np.maximum(weight, 1)[:, None], 1.0 / k)
            if (weight > 0).sum() > g:
                km = KMeans(n_clusters=g, n_init=3, random_state=seed + s).fit(np.sqrt(dist), sample_weight=weight + 1e-3)
                groups[s - 1] = km.labels_
            for grp in range(g):
                counts[s, grp] += pairs[s - 1][groups[s - 1] == grp].sum(0)
        return cls(counts, groups)

    @property
    def num_stages(self) -> int:
        return int(self.counts.shape[0])

    def _contexts(self, grids: np.ndarray, stage: int) -> np.ndarray:
        if stage == 0:
            return np.zeros(grids[0].size, dtype=np.int64)
        return self.groups[stage - 1][grids[stage - 1].ravel()]

    def code_bits(self, stage: int) -> np.ndarray:
        """Bits of every code of a stage under its marginal over contexts (for rate-aware quantization)."""
        total = self.counts[stage].sum(0) - (self.counts.shape[1] - 1)
        return -np.log2(total / total.sum())

    def min_bits(self, stage: int) -> float:
        """Fewest bits any one symbol of this stage can cost, in any context."""
        rows = self.counts[stage].astype(np.float64)
        return float(-np.log2((rows.max(1) / rows.sum(1)).max()))

    def ideal_bits(self, grids: np.ndarray) -> float:
        """Sum of -log2 p over all stages of index grids (stages, rows, columns)."""
        bits = 0.0
        for s in range(grids.shape[0]):
            rows = self.counts[s][self._contexts(grids, s)]
            p = rows[np.arange(rows.shape[0]), grids[s].ravel()] / rows.sum(1)
            bits += float(-np.log2(p).sum())
        return bits

    def encode_grids(self, grids: np.ndarray) -> tuple[bytes, ...]:
        """One stream per stage; within a stage, cells are coded group by group in raster order."""
        k = self.counts.shape[2]
        streams = []
        for s in range(grids.shape[0]):
            symbols = grids[s].ravel().astype(np.int32)
            if symbols.size and (symbols.min() < 0 or symbols.max() >= k):
                raise ValueError("symbol out of the codebook's range")
            ctx = self._contexts(grids, s)
            encoder = constriction.stream.queue.RangeEncoder()
            for g in np.unique(ctx):
                encoder.encode(np.ascontiguousarray(symbols[ctx == g]), _categorical(self.counts[s, g]))
            streams.append(encoder.get_compressed().astype("<u4").tobytes())
        return tuple(streams)

    def decode_grids(self, streams: tuple[bytes, ...], rows: int, cols: int) -> np.ndarray:
        """Index grids (len(streams), rows, columns) from `encode_grids` streams."""
        grids = np.zeros((len(streams), rows, cols), dtype=np.int64)
        for s, data in enumerate(streams):
            decoder = constriction.stream.queue.RangeDecoder(_words(data))
            ctx = self._contexts(grids, s)
            flat = np.empty(rows * cols, dtype=np.int64)
            for g in np.unique(ctx):
                where = ctx == g
                flat[where] = decoder.decode(_categorical(self.counts[s, g]), int(where.sum()))
            grids[s] = flat.reshape(rows, cols)
        return grids
