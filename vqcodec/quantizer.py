"""Vector quantizers: one EMA codebook, and a residual stack of them.

`VectorQuantizer` is the seed's quantizer: a codebook of K vectors of dimension D,
L2 nearest neighbour, straight-through gradients, a commitment loss, and codebook
vectors that follow exponential moving averages of the encoder outputs assigned
to them (with Laplace smoothing, so empty clusters never divide by zero).

`ResidualVQ` chains several of them, each coding what the previous ones left.
Any prefix of stages is a valid, coarser code: that is what gives one model
several qualities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all ranks when running distributed, so every rank keeps the same codebook."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def _broadcast(tensor: torch.Tensor) -> torch.Tensor:
    """Copy rank 0's tensor to every rank (a no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(tensor, src=0)
    return tensor


def code_scores(x: torch.Tensor, codebook: torch.Tensor, penalty: torch.Tensor | None = None) -> torch.Tensor:
    """||c||^2 + penalty - 2 x.c for every row of `x` and code (N, K): the squared distance less ||x||^2,
    which is the same for every code of a row.

    `penalty` is one value per code (K,) or per row and code (N, K). One plain matrix product and
    in-place adds, with the codebook's transpose made contiguous: on a CPU core, `torch.addmm` with a
    broadcast bias and a transposed view ran 2.8 times slower than this for 12,288 rows of 64 by 512 codes.
    """
    bias = codebook.pow(2).sum(1)
    if penalty is not None and penalty.dim() == 1:
        bias = bias + penalty
    scores = torch.mm(x, (codebook * -2.0).t().contiguous())
    scores += bias
    if penalty is not None and penalty.dim() == 2:
        scores += penalty
    return scores


def smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Column indices of the `k` smallest scores of every row (N, k), smallest first; ties go to the
    lowest index. Overwrites `scores`.

    On a CPU, for k <= 2, by repeated argmin in NumPy (whose argmin is vectorised, several times
    faster than torch's on one core), masking each pick; otherwise `torch.topk`.
    """
    if k > 2 or scores.device.type != "cpu":
        return scores.topk(k, dim=1, largest=False, sorted=True).indices
    s = scores.numpy()
    rows = np.arange(s.shape[0])
    picks = []
    for _ in range(k):
        pick = s.argmin(axis=1)
        picks.append(pick)
        s[rows, pick] = np.inf
    return torch.from_numpy(np.stack(picks, axis=1).astype(np.int64, copy=False))


@torch.no_grad()
def nearest_code(x: torch.Tensor, codebook: torch.Tensor, penalty: torch.Tensor | None = None) -> torch.Tensor:
    """Index of the L2-nearest codebook row for every row of `x` (ties go to the lowest index).

    With `penalty` (one value per code (K,), or per row and code (N, K)), minimises distance +
    penalty instead: with penalty = lambda * bits(code) this is entropy-constrained (rate-aware)
    quantization.
    """
    return smallest(code_scores(x, codebook, penalty), 1)[:, 0]


Penalty = Callable[[int, "torch.Tensor | None"], "torch.Tensor | None"]
"""Rate-aware coding's prices: (stage, the previous stage's codes of the rows (M,), None at stage 0)
-> penalties to add to the squared distances, per code (K,) or per row and code (M, K), or None."""


@dataclass
class QuantizerOutput:
    """What a quantizer returns: the straight-through quantized latents, indices and losses."""

    quantized: torch.Tensor
    indices: torch.Tensor
    commitment_loss: torch.Tensor


class VectorQuantizer(nn.Module):
    """One codebook of `codebook_size` vectors of dimension `dim`, updated by EMA.

    Inputs are (N, D) rows; `forward` returns the quantized rows with a
    straight-through gradient, the chosen indices and `beta * ||x - sg(q)||^2`.
    """

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        beta: float = 0.25,
        decay: float = 0.99,
        eps: float = 1e-5,
        dead_threshold: float = 0.05,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.beta = beta
        self.decay = decay
        self.eps = eps
        self.dead_threshold = dead_threshold
        codebook = torch.randn(codebook_size, dim) * 0.1
        self.register_buffer("codebook", codebook)
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", codebook.clone())

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook vectors for integer indices of any shape (adds a trailing D axis)."""
        return F.embedding(indices, self.codebook)

    def encode(self, x: torch.Tensor, penalty: torch.Tensor | None = None) -> torch.Tensor:
        """Nearest-code indices for (N, D) rows (penalised per code when `penalty` is given)."""
        return nearest_code(x, self.codebook, penalty)

    def set_codebook(self, codebook: torch.Tensor) -> None:
        """Replace the codebook (k-means initialisation) and restart the EMA state from it."""
        self.codebook.copy_(codebook)
        _broadcast(self.codebook)
        self.cluster_size.fill_(1.0)
        self.embed_sum.copy_(self.codebook)

    @torch.no_grad()
    def _ema_update(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        onehot = F.one_hot(indices, self.codebook_size).type_as(x)
        counts = _all_reduce(onehot.sum(0))
        sums = _all_reduce(onehot.t() @ x)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        self.codebook.copy_(self.embed_sum / self._smoothed_sizes()[:, None])

    def _smoothed_sizes(self) -> torch.Tensor:
        """The EMA code counts with Laplace smoothing, so that an unused code does not divide by zero."""
        total = self.cluster_size.sum()
        return (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total

    @torch.no_grad()
    def restore_embed_sum(self) -> None:
        """Set the EMA sum to what the codebook and the EMA counts imply (codebook x smoothed counts).

        Model files leave the sum out, as the codebook holds the same information (`vqcodec.zoo`); a fine-tune
        of a loaded model continues its EMA from here, equal to the trained sum up to float rounding.
        """
        self.embed_sum.copy_(self.codebook * self._smoothed_sizes()[:, None])

    @torch.no_grad()
    def restart_dead_codes(self, x: torch.Tensor) -> int:
        """Re-seed codes whose EMA usage fell below `dead_threshold` from random rows of `x`.

        Rank 0 chooses the replacements and broadcasts them, so all ranks agree.
        Returns how many codes were restarted.
        """
        dead = self.cluster_size < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead == 0 or x.shape[0] == 0:
            return 0
        picks = torch.randint(0, x.shape[0], (n_dead,), device=x.device)
        fresh = x[picks] + 1e-3 * torch.randn_like(x[picks])
        codebook = self.codebook.clone()
        codebook[dead] = fresh
        _broadcast(codebook)
        self.codebook.copy_(codebook)
        self.embed_sum[dead] = codebook[dead]
        self.cluster_size[dead] = 1.0
        return n_dead

    def forward(self, x: torch.Tensor, penalty: torch.Tensor | None = None) -> QuantizerOutput:
        """Quantize (N, D) rows: codes by `encode` (priced by `penalty` when given), EMA updates in training,
        the commitment loss and straight-through latents."""
        indices = self.encode(x.detach(), penalty)
        quantized = self.lookup(indices)
        if self.training:
            self._ema_update(x.detach(), indices)
        commitment = self.beta * F.mse_loss(x, quantized.detach())
        straight_through = x + (quantized - x).detach()
        return QuantizerOutput(straight_through, indices, commitment)


class ResidualVQ(nn.Module):
    """`num_stages` VectorQuantizers, each quantizing the residual left by the ones before it."""

    def __init__(self, num_stages: int, codebook_size: int, dim: int, **kwargs: float) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            VectorQuantizer(codebook_size, dim, **kwargs) for _ in range(num_stages)
        )

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def forward(self, x: torch.Tensor, num_stages: int | None = None,
                penalty: Penalty | None = None) -> QuantizerOutput:
        """Quantize (N, D) rows with the first `num_stages` stages (all when None).

        Returns the summed quantization with one straight-through gradient,
        indices of shape (S, N) and the mean commitment loss over stages. With `penalty` each stage
        picks its codes rate-aware, as `encode` does, so the EMA codebooks become the centroids of the
        codes rate-aware coding really chooses (entropy-constrained VQ training).
        """
        n = self.num_stages if num_stages is None else num_stages
        residual = x
        total = torch.zeros_like(x)
        indices = []
        commitment = x.new_zeros(())
        for s, stage in enumerate(self.stages[:n]):
            # Each stage's commitment term pulls the encoder output towards the codes through
            # `residual`, which depends on x; the codes themselves only move by EMA.
            price = None if penalty is None else penalty(s, indices[-1] if indices else None)
            out = stage(residual, price)
            commitment = commitment + out.commitment_loss
            q = stage.lookup(out.indices)
            total = total + q
            residual = residual - q
            indices.append(out.indices)
        straight_through = x + (total - x).detach()
        return QuantizerOutput(straight_through, torch.stack(indices), commitment / n)

    def encode(self, x: torch.Tensor, num_stages: int | None = None,
               penalty: Penalty | None = None, beam: int = 1) -> torch.Tensor:
        """Indices (S, N) for (N, D) rows: greedy stage by stage, or by `beam_encode` when `beam` > 1.

        `penalty`, when given, prices each stage's codes given the codes the stage before chose
        (rate-aware quantization: lambda times each code's cost in bits in its context).
        """
        n = self.num_stages if num_stages is None else num_stages
        if beam > 1:
            return self.beam_encode(x, n, beam, penalty)
        residual = x
        indices: list[torch.Tensor] = []
        for s, stage in enumerate(self.stages[:n]):
            price = None if penalty is None else penalty(s, indices[-1] if indices else None)
            idx = stage.encode(residual, price)
            residual = residual - stage.lookup(idx)
            indices.append(idx)
        return torch.stack(indices)

    @torch.no_grad()
    def beam_encode(self, x: torch.Tensor, num_stages: int, beam: int,
                    penalty: Penalty | None = None) -> torch.Tensor:
        """Indices (S, N) for (N, D) rows by beam search over the stages.

        Greedy coding fixes each stage's code before seeing what the later stages can do with
        the residual. Beam search keeps, per row, the `beam` best partial codes (by squared
        error of the residual plus the summed penalties) and extends each by every code of the
        next stage; the best complete code wins. `beam=1` is greedy coding. `penalty` prices each
        beam's next code given that beam's own previous code.
        """
        n, _ = x.shape
        residual = x[:, None, :]  # (N, B, D)
        cost = x.new_zeros(n, 1)  # penalties so far, per beam
        history: list[tuple[torch.Tensor, torch.Tensor]] = []  # (parent beam, code) per stage
        for s, stage in enumerate(self.stages[:num_stages]):
            cb = stage.codebook
            k = cb.shape[0]
            b = residual.shape[1]
            flat = residual.reshape(n * b, -1)
            previous = history[-1][1].reshape(-1) if history else None
            price = None if penalty is None else penalty(s, previous)
            # ||r - c||^2 + penalty = (||c||^2 + penalty - 2 r.c) + ||r||^2, for every beam and code
            # (N, B, K), plus the penalties so far.
            total = code_scores(flat, cb, price).view(n, b, k)
            total += (flat.pow(2).sum(1).view(n, b) + cost)[..., None]
            keep = 1 if s == num_stages - 1 else min(beam, b * k)  # the last stage: only the best
            best = smallest(total.view(n, b * k), keep)
            parent, code = best // k, best % k
            residual = residual.gather(1, parent[..., None].expand(-1, -1, residual.shape[2])) - cb[code]
            cost = cost.gather(1, parent)
            if price is not None:
                cost = cost + (price[code] if price.dim() == 1 else price.view(n, b * k).gather(1, best))
            history.append((parent, code))
        # The best beam is first (topk sorted, distances are exact up to rounding; the last
        # stage's ranking already includes every term). Walk the parents back.
        indices = []
        pick = torch.zeros(n, 1, dtype=torch.long, device=x.device)
        for parent, code in reversed(history):
            indices.append(code.gather(1, pick)[:, 0])
            pick = parent.gather(1, pick)
        return torch.stack(indices[::-1])

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Sum of the codebook vectors of indices (S, ...) over the S given stages."""
        out = self.stages[0].lookup(indices[0])
        for stage, idx in zip(self.stages[1:], indices[1:]):
            out = out + stage.lookup(idx)
        return out
