"""Entropy coding of index grids with constriction's range coder under a learned prior.

The prior is a table of integer symbol counts per quantizer stage, fitted on
training data and stored in the model file. Probabilities are derived from those
integers by one exact float64 division, so the encoder and the decoder build
bit-identical models on any machine. Each stage is coded as its own stream, so a
prefix of stages can be decoded without the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np


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

    def _model(self, stage: int) -> "constriction.stream.model.Categorical":
        return constriction.stream.model.Categorical(self.probabilities(stage), perfect=False)

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
        if len(data) % 4:
            raise ValueError("stream length is not a multiple of 4 bytes")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        decoder = constriction.stream.queue.RangeDecoder(words)
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        return decoder.decode(self._model(stage), count).astype(np.int64)
