"""`LearnedPrior`: stage 0 under the count prior's row context, later stages under learned contexts.

- Stage 0 is coded as `ContextPrior` codes it: row by row, each code in the context of the
  code above it.
- Every later stage is coded in the two checkerboard passes of `vqcodec.entropy.schedule`. The
  integer context network (`vqcodec.entropy.context_net`) picks each cell's context from the
  earlier stages around it and, in the second pass, from the anchors beside it; the context's
  integer code counts give the probabilities (one exact float64 division, as in the count priors).
  Each (pass, context) is one vectorised range-coder call.

Everything the decoder computes from the file is integer, so it builds the same probabilities
as the encoder on every machine (see docs/format.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import constriction
import numpy as np

from vqcodec.entropy.context_net import IntContextNet, NetShape, same_stage_input, stage_inputs
from vqcodec.entropy.counts import ContextPrior, _words
from vqcodec.entropy.schedule import passes


def _segments(ctx: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(context, positions into ctx) for every context present, contexts ascending, positions ascending."""
    order = np.argsort(ctx, kind="stable")
    present, starts = np.unique(ctx[order], return_index=True)
    bounds = list(starts[1:]) + [len(order)]
    return [(int(c), order[a:b]) for c, a, b in zip(present, starts, bounds)]


def scheduled_contexts(net: IntContextNet, grids: np.ndarray, stage: int, recon: np.ndarray, code: np.ndarray,
                       total: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (rows, cols, contexts) of each pass of `stage` >= 1, in coding order.

    `grids[stage]` must hold every earlier pass when the next is asked for (a decoder fills it in
    between); `total` is the partial reconstruction sum of the stages before (`partial_sums`).
    """
    rows_n, cols_n = grids.shape[1:]
    feats = net.features(stage_inputs(grids, stage, recon, code, total), stage)
    done = np.zeros((rows_n, cols_n), dtype=np.float32)
    for rows, cols in passes(rows_n, cols_n):
        same = None if not done.any() else same_stage_input(grids[stage], done, stage, code)
        ctx = net.contexts(feats, same, rows, cols) if len(rows) else np.zeros(0, dtype=np.int64)
        yield rows, cols, ctx
        done[rows, cols] = 1


def stage_contexts(net: IntContextNet, grids: np.ndarray, stage: int, recon: np.ndarray, code: np.ndarray,
                   total: np.ndarray | None = None) -> np.ndarray:
    """Context of every cell of `stage` >= 1 (rows, cols), given complete grids."""
    out = np.empty(grids.shape[1:], dtype=np.int64)
    for rows, cols, ctx in scheduled_contexts(net, grids, stage, recon, code, total):
        out[rows, cols] = ctx
    return out


def partial_sums(grids: np.ndarray, count: int, recon: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (stage, partial reconstruction sum of the stages before it) for stages 1..count-1, adding
    one stage at a time; `grids[stage - 1]` must be filled before the next stage is asked for."""
    total = None
    for s in range(1, count):
        step = recon[s - 1][grids[s - 1]]
        total = step.astype(np.float32) if total is None else total + step
        yield s, total


@dataclass(frozen=True)
class LearnedPrior:
    """Stage 0: a one-stage `ContextPrior`. Stages >= 1: `net` contexts and `counts` (stages, G, K).

    `recon` and `code` (stages, K, D) are the integer codebooks the network reads.
    """

    stage0: ContextPrior
    net: IntContextNet
    counts: np.ndarray
    recon: np.ndarray
    code: np.ndarray
    _models: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts)
        s, g, k = counts.shape
        if self.stage0.num_stages != 1 or self.stage0.counts.shape[2] != k:
            raise ValueError("stage-0 prior does not fit the learned prior")
        if g != self.net.shape.contexts or s != self.net.shape.stages:
            raise ValueError("count tables do not fit the context network")
        if counts.min() < 1 or self.recon.shape != (s, k, self.net.shape.dim) or self.code.shape != self.recon.shape:
            raise ValueError("learned prior tables out of range")
        if np.abs(self.code).max() > 127 or np.abs(self.recon).max() >= 1 << 16:
            raise ValueError("integer codebooks out of range")
        object.__setattr__(self, "counts", counts.astype(np.int64))
        # Small integers, held as float32 so the network reads them without conversions (exact).
        object.__setattr__(self, "recon", np.asarray(self.recon).astype(np.float32))
        object.__setattr__(self, "code", np.asarray(self.code).astype(np.float32))

    @property
    def num_stages(self) -> int:
        return int(self.counts.shape[0])

    def _model(self, stage: int, ctx: int) -> "constriction.stream.model.Categorical":
        key = (stage, ctx)
        if key not in self._models:
            row = self.counts[stage, ctx]
            self._models[key] = constriction.stream.model.Categorical(row.astype(np.float64) / float(row.sum()),
                                                                        perfect=False)
        return self._models[key]

    def contexts(self, grids: np.ndarray, stage: int) -> np.ndarray:
        """Context of every cell of `stage` >= 1 (rows, cols), given complete grids."""
        return stage_contexts(self.net, grids, stage, self.recon, self.code)

    def stage_bits(self, grids: np.ndarray, stage: int) -> float:
        """Sum of -log2 p over one stage of index grids (stages, rows, columns)."""
        if stage == 0:
            return self.stage0.stage_bits(grids[:1], 0)
        rows = self.counts[stage][self.contexts(grids, stage)].astype(np.float64)
        p = np.take_along_axis(rows, grids[stage][..., None], -1)[..., 0] / rows.sum(-1)
        return float(-np.log2(p).sum())

    def ideal_bits(self, grids: np.ndarray) -> float:
        """Sum of -log2 p over all stages of index grids (stages, rows, columns)."""
        return sum(self.stage_bits(grids, s) for s in range(grids.shape[0]))

    def min_bits(self, stage: int) -> float:
        """Fewest bits any one symbol of this stage can cost, in any context."""
        if stage == 0:
            return self.stage0.min_bits(0)
        rows = self.counts[stage].astype(np.float64)
        return float(-np.log2((rows.max(1) / rows.sum(1)).max()))

    def code_bits(self, stage: int) -> np.ndarray:
        """Bits of every code of a stage under its marginal over contexts (for rate-aware quantization)."""
        if stage == 0:
            return self.stage0.code_bits(0)
        total = self.counts[stage].sum(0).astype(np.float64)
        return -np.log2(total / total.sum())

    def code_costs(self, stage: int, previous: np.ndarray | None = None, scale: float = 1.0) -> np.ndarray:
        """float32 bits of every code of `stage` (K,) times `scale`, the marginal over contexts: the learned
        contexts read the neighbours, which the encoder has not all chosen yet, so `previous` is unused."""
        return (self.code_bits(stage) * scale).astype(np.float32)

    def context_costs(self, stage: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
        """`code_costs` as one table (1, K) and no map from previous codes (the marginal, as there)."""
        return self.code_costs(stage, None, scale)[None], None

    def encode_grids(self, grids: np.ndarray) -> tuple[bytes, ...]:
        """One stream per stage: stage 0 row by row, later stages pass by pass and context by context."""
        k = self.counts.shape[2]
        grids = np.asarray(grids, dtype=np.int64)
        if grids.size and (grids.min() < 0 or grids.max() >= k):
            raise ValueError("symbol out of the codebook's range")
        streams = list(self.stage0.encode_grids(grids[:1]))
        for s, total in partial_sums(grids, grids.shape[0], self.recon):
            encoder = constriction.stream.queue.RangeEncoder()
            for rows, cols, ctx in scheduled_contexts(self.net, grids, s, self.recon, self.code, total):
                symbols = grids[s][rows, cols].astype(np.int32)
                for c, where in _segments(ctx):
                    encoder.encode(np.ascontiguousarray(symbols[where]), self._model(s, c))
            streams.append(encoder.get_compressed().astype("<u4").tobytes())
        return tuple(streams)

    def decode_grids(self, streams: tuple[bytes, ...], rows: int, cols: int) -> np.ndarray:
        """Index grids (len(streams), rows, columns) from `encode_grids` streams."""
        grids = np.zeros((len(streams), rows, cols), dtype=np.int64)
        if not streams:
            return grids
        grids[:1] = self.stage0.decode_grids(streams[:1], rows, cols)
        for s, total in partial_sums(grids, len(streams), self.recon):
            decoder = constriction.stream.queue.RangeDecoder(_words(streams[s]))
            for r, c, ctx in scheduled_contexts(self.net, grids, s, self.recon, self.code, total):
                values = np.empty(len(r), dtype=np.int64)
                for cx, where in _segments(ctx):
                    values[where] = decoder.decode(self._model(s, cx), len(where))
                grids[s][r, c] = values
        return grids

    def tensors(self) -> dict[str, np.ndarray]:
        """Every integer array of the prior, by name (for the model file)."""
        out = {"stage0.counts": self.stage0.counts, "stage0.groups": self.stage0.groups,
               "counts": self.counts, "recon": self.recon.astype(np.int64), "code": self.code.astype(np.int64)}
        out.update({f"net.{k}": v for k, v in self.net.tensors().items()})
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray]) -> "LearnedPrior":
        """Inverse of `tensors`; the network's widths are read off its weights."""
        w = {k[4:]: v for k, v in t.items() if k.startswith("net.")}
        shape = NetShape(dim=int(w["proj.weight"].shape[1]) // 2, proj=int(w["proj.weight"].shape[0]),
                         spatial=int(w["spatial.weight"].shape[0]), hidden=int(w["conv.weight"].shape[0]),
                         contexts=int(w["out.weight"].shape[0]), stages=int(w["stage_bias"].shape[0]))
        return cls(ContextPrior(t["stage0.counts"], t["stage0.groups"]), IntContextNet.from_tensors(shape, w),
                   t["counts"], t["recon"].astype(np.int64), t["code"].astype(np.int64))
