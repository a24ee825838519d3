"""The context network: what the decoder knows about a cell, to one of G learned contexts, in exact integers.

For stage s >= 1 of a residual-VQ index grid, a cell's context comes from
- the partial reconstruction of stages < s (sum of their codebook vectors) and the code vector
  of stage s - 1, both in a 3x3 neighbourhood, and
- the stage-s codes of neighbours already decoded in an earlier pass of the coding schedule.

Every input is an integer in [-127, 127]: the codebooks are stored pre-scaled and rounded
(`input_codebooks`). Every layer has int8-range weights (|w| <= 127), an integer bias and, for
hidden layers, a requantisation to [0, 127] by an integer multiplier and a right shift (ReLU
included). The products of one layer's sum are at most 127 * 127 and a layer sums at most
`MAX_TERMS` of them, so every partial sum is an integer below 2^24 and float32 arithmetic
computes it exactly in any order, on any CPU, with any BLAS and any thread count. Biases,
multipliers and shifts are applied in int64. The output is the index of the largest logit
(ties to the lowest index). Encoder and decoder therefore choose identical contexts everywhere,
and the probabilities come from integer count tables (see `vqcodec.entropy.learned`).

`ContextNet` is the float network used for training: it mirrors this arithmetic with
fake quantisation (straight-through rounding) and exports an `IntContextNet`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

QMAX = 127
"""Largest magnitude of every integer input, weight and hidden activation."""
MAX_TERMS = (1 << 24) // (QMAX * QMAX)
"""Most products one output may sum while staying exact in float32 (1040)."""
SHIFT = 20
"""Right shift of the requantisation multipliers (multiplier / 2^SHIFT approximates a real scale)."""
MASK_VALUE = QMAX
"""Value of the 'decoded' channel beside a neighbour's code vector in the same-stage input."""
RECON_SCALE = 24.0
"""Integer units per latent unit of the partial reconstruction input (stage-0 codes reach about 5)."""


@dataclass(frozen=True)
class NetShape:
    """Widths of the context network."""

    dim: int = 64
    proj: int = 32
    spatial: int = 16
    hidden: int = 64
    contexts: int = 256
    stages: int = 8


def input_codebooks(codebooks: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Integer codebooks the network reads: (recon, code), each (stages, K, D) int32.

    `recon` is every codebook in the partial reconstruction's common scale (summed over stages,
    then clamped); `code` is every codebook scaled to use [-127, 127] itself, so late stages' small
    vectors keep their resolution. Rounding happens once, here, in float64 numpy: the tables are
    stored in the model file and read back as integers, so no machine rounds them again.
    """
    recon, code = [], []
    for cb in codebooks:
        c = cb.detach().double().cpu().numpy()
        recon.append(np.rint(c * RECON_SCALE))
        code.append(np.rint(c * (QMAX / max(np.abs(c).max(), 1e-12))))
    return np.stack(recon).astype(np.int32), np.stack(code).astype(np.int32)


def stage_inputs(grids: np.ndarray, stage: int, recon: np.ndarray, code: np.ndarray,
                 total: np.ndarray | None = None) -> np.ndarray:
    """The (H, W, 2 * D) integer input of `stage` >= 1 for index grids (>= stage, H, W), as float32.

    `total`, when given, is the partial reconstruction sum of stages < `stage` (`partial_sum`), so
    a caller going through the stages in order does not sum them again.
    """
    if total is None:
        total = partial_sum(grids, stage, recon)
    r = np.clip(total, -QMAX, QMAX)
    return np.concatenate([r, code[stage - 1][grids[stage - 1]]], axis=-1, dtype=np.float32)


def partial_sum(grids: np.ndarray, stage: int, recon: np.ndarray) -> np.ndarray:
    """Sum (H, W, D) of the integer reconstruction codebooks of stages < `stage` (float32, exact: small integers)."""
    total = recon[0][grids[0]].astype(np.float32)
    for t in range(1, stage):
        total += recon[t][grids[t]]
    return total


def same_stage_input(grid: np.ndarray, known: np.ndarray, stage: int, code: np.ndarray) -> np.ndarray:
    """The (H, W, D + 1) integer input of a stage's decoded codes: vectors where `known`, and a 'known' channel."""
    v = code[stage][grid] * known[..., None]
    return np.concatenate([v, (known * MASK_VALUE)[..., None]], axis=-1, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# Exact integer inference


@dataclass(frozen=True)
class IntLayer:
    """One integer layer: weights (out, in, k, k) in [-127, 127], bias (out,) and multipliers (out,).

    Its inputs are integers held in float32 arrays, channels last; `_matrix` is the weight as an
    (k * k * in, out) float32 matrix in the order `patches` lays out neighbourhoods.
    """

    weight: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    _matrix: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        w = np.asarray(self.weight)
        if np.abs(w).max(initial=0) > QMAX or w.shape[1] * w.shape[2] * w.shape[3] > MAX_TERMS:
            raise ValueError("integer layer out of its exact range")
        if np.abs(self.bias).max(initial=0) >= 1 << 24 or not 0 <= np.min(self.multiplier, initial=0) <= np.max(self.multiplier, initial=0) < 1 << 27:
            raise ValueError("integer layer bias or multiplier out of its exact range")
        object.__setattr__(self, "_matrix", np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]),
                                                                 dtype=np.float32))

    def accumulate(self, x: np.ndarray) -> np.ndarray:
        """Exact sums plus bias (N, out), float64, for integer rows x (N, k * k * in) in float32."""
        return (x @ self._matrix).astype(np.float64) + self.bias

    def requantize(self, acc: np.ndarray) -> np.ndarray:
        """ReLU and rescale to [0, 127], (acc * multiplier + 2^(SHIFT-1)) >> SHIFT, as float32.

        Every step is exact in float64: |acc| < 2^25 and multiplier < 2^27, so products stay below 2^52,
        and dividing by a power of two then flooring is exact.
        """
        y = np.floor((acc * self.multiplier + float(1 << (SHIFT - 1))) * (1.0 / (1 << SHIFT)))
        return np.clip(y, 0, QMAX).astype(np.float32)


def patches(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(N, 9 * C) 3x3 neighbourhoods of x (H, W, C) around the cells (rows, cols), zero outside the grid."""
    h, w, c = x.shape
    padded = np.zeros((h + 2, w + 2, c), dtype=x.dtype)
    padded[1:-1, 1:-1] = x
    return np.concatenate([padded[rows + dy, cols + dx] for dy in range(3) for dx in range(3)], axis=1)


@dataclass(frozen=True)
class IntContextNet:
    """The exported network; `contexts` picks one context per cell, identically on every machine."""

    shape: NetShape
    proj: IntLayer
    stage_bias: np.ndarray
    spatial: IntLayer
    conv: IntLayer
    mid: IntLayer
    out: IntLayer

    def features(self, inputs: np.ndarray, stage: int) -> np.ndarray:
        """(H, W, proj) hidden features of a stage's (H, W, 2D) inputs, for every cell."""
        h, w, c = inputs.shape
        acc = self.proj.accumulate(inputs.reshape(-1, c)) + self.stage_bias[stage]
        return self.proj.requantize(acc).reshape(h, w, -1)

    def contexts(self, features: np.ndarray, same: np.ndarray | None, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Context (int64, 0..G-1) of the cells (rows, cols), given stage features and same-stage input.

        `same` is the (H, W, D + 1) same-stage input, or None when no neighbour is decoded yet.
        """
        h, w, _ = features.shape
        if same is None:
            s = np.broadcast_to(self.spatial.requantize(self.spatial.bias.astype(np.float64)), (h, w, self.shape.spatial))
        else:
            s = self.spatial.requantize(self.spatial.accumulate(same.reshape(h * w, -1))).reshape(h, w, -1)
        x = np.concatenate([features, s], axis=2)
        hid = self.conv.requantize(self.conv.accumulate(patches(x, rows, cols)))
        hid = self.mid.requantize(self.mid.accumulate(hid))
        return (self.out.accumulate(hid) * self.out.multiplier).argmax(axis=1)

    def tensors(self) -> dict[str, np.ndarray]:
        """Every integer array, by name (for the model file)."""
        out = {"stage_bias": self.stage_bias}
        for name in ("proj", "spatial", "conv", "mid", "out"):
            layer = getattr(self, name)
            out[f"{name}.weight"] = layer.weight
            out[f"{name}.bias"] = layer.bias
            out[f"{name}.multiplier"] = layer.multiplier
        return out

    @classmethod
    def from_tensors(cls, shape: NetShape, t: dict[str, np.ndarray]) -> "IntContextNet":
        layers = {n: IntLayer(t[f"{n}.weight"].astype(np.int64), t[f"{n}.bias"].astype(np.int64),
                              t[f"{n}.multiplier"].astype(np.int64))
                  for n in ("proj", "spatial", "conv", "mid", "out")}
        return cls(shape=shape, stage_bias=t["stage_bias"].astype(np.int64), **layers)


# ---------------------------------------------------------------------------------------------
# Float training network with fake quantisation


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class QConv(nn.Module):
    """A bias-carrying convolution whose weights are rounded to per-channel int8 steps in the forward pass."""

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        if cin * k * k > MAX_TERMS:
            raise ValueError("layer too wide to stay exact")
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)
        self.quantize = False

    def weight_scale(self) -> torch.Tensor:
        return self.conv.weight.detach().abs().amax(dim=(1, 2, 3)).clamp_min(1e-8) / QMAX

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight
        if self.quantize:
            s = self.weight_scale()[:, None, None, None]
            w = _round_ste(w / s) * s
        return F.conv2d(x, w, self.conv.bias, padding=self.conv.padding)


class ContextNet(nn.Module):
    """Training twin of `IntContextNet`: the same layers in float, fake-quantised once `quantize()` is called.

    `forward` returns context logits (B, G, H, W); `tables` (stages, G, K) are the per-context code
    logits that training fits beside it (the shipped probabilities are counted afresh later).
    """

    def __init__(self, shape: NetShape, codebook_size: int) -> None:
        super().__init__()
        self.shape = shape
        self.proj = QConv(2 * shape.dim, shape.proj, 1)
        self.stage_bias = nn.Parameter(torch.zeros(shape.stages, shape.proj))
        self.spatial = QConv(shape.dim + 1, shape.spatial, 1)
        self.conv = QConv(shape.proj + shape.spatial, shape.hidden, 3)
        self.mid = QConv(shape.hidden, shape.hidden, 1)
        self.out = QConv(shape.hidden, shape.contexts, 1)
        self.tables = nn.Parameter(torch.zeros(shape.stages, shape.contexts, codebook_size))
        self.register_buffer("act_scale", torch.ones(4))
        self.quantized = False

    def quantize(self) -> None:
        """Switch to fake quantisation with the activation scales calibrated so far."""
        self.quantized = True
        for layer in (self.proj, self.spatial, self.conv, self.mid, self.out):
            layer.quantize = True

    def _act(self, x: torch.Tensor, i: int) -> torch.Tensor:
        if not self.quantized:
            return F.relu(x)
        s = self.act_scale[i]
        return torch.clamp(_round_ste(x / s), 0, QMAX) * s

    def forward(self, inputs: torch.Tensor, same: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
        """inputs (B, 2D, H, W) and same (B, D + 1, H, W) integer-valued floats; stage (B,) long."""
        f = self._act(self.proj(inputs) + self.stage_bias[stage][:, :, None, None], 0)
        s = self._act(self.spatial(same), 1)
        h = self._act(self.conv(torch.cat([f, s], 1)), 2)
        h = self._act(self.mid(h), 3)
        return self.out(h)

    @torch.no_grad()
    def calibrate(self, inputs: torch.Tensor, same: torch.Tensor, stage: torch.Tensor, quantile: float = 0.9999) -> None:
        """Set each hidden layer's activation scale so that `quantile` of its positive outputs fit in [0, 127]."""
        was = self.quantized
        self.quantized = False
        f = F.relu(self.proj(inputs) + self.stage_bias[stage][:, :, None, None])
        s = F.relu(self.spatial(same))
        h = F.relu(self.conv(torch.cat([f, s], 1)))
        m = F.relu(self.mid(h))
        for i, a in enumerate((f, s, h, m)):
            pos = a[a > 0]
            top = torch.quantile(pos[torch.randperm(pos.numel())[:1_000_000]], quantile) if pos.numel() else a.new_ones(())
            self.act_scale[i] = top.clamp_min(1e-6) / QMAX
        # The 3x3 layer reads both as one integer tensor, so they share the larger scale.
        self.act_scale[:2] = self.act_scale[:2].max()
        self.quantized = was

    @torch.no_grad()
    def export(self) -> IntContextNet:
        """The integer network this float network simulates."""

        def layer(q: QConv, s_in: float, s_out: float | None, extra_bias: torch.Tensor | None = None) -> tuple[IntLayer, np.ndarray | None]:
            sw = q.weight_scale().double()
            w = torch.clamp(torch.round(q.conv.weight.double() / sw[:, None, None, None]), -QMAX, QMAX)
            unit = sw * s_in
            b = torch.round(q.conv.bias.double() / unit)
            mult = torch.round(unit / (s_out if s_out is not None else unit.max()) * (1 << SHIFT))
            eb = None if extra_bias is None else torch.round(extra_bias.double() / unit[None]).long().numpy()
            return IntLayer(w.long().numpy(), b.long().numpy(), mult.long().numpy()), eb

        a = [float(v) for v in self.act_scale.double()]
        proj, sb = layer(self.proj, 1.0, a[0], self.stage_bias)
        spatial, _ = layer(self.spatial, 1.0, a[1])
        conv, _ = layer(self.conv, a[0], a[2])  # its two inputs share one scale (see `calibrate`)
        mid, _ = layer(self.mid, a[2], a[3])
        out, _ = layer(self.out, a[3], None)
        return IntContextNet(self.shape, proj, sb, spatial, conv, mid, out)

