"""Training the context network on index grids, and counting the tables of its contexts.

The network is trained as a mixture: each cell's code distribution is
sum_g softmax(logits / tau)_g * softmax(tables[stage, g]), whose negative log-likelihood in bits
is the loss. The temperature tau falls during training so that the mixture becomes the hard
choice the codec makes (the largest logit). Training starts in float, calibrates activation
scales, and finishes with fake quantisation, so the exported integer network is the one trained.
The shipped probabilities are then counted: the exported network picks every training cell's
context and `count_tables` tallies codes per (stage, context).

Grids are sampled as random crops with a random stage in 1..S-1 per item; the checkerboard
schedule is simulated with two forward passes (anchors with no same-stage context, then the
other cells with the anchors known).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from vqcodec.entropy.context_net import ContextNet, IntContextNet, NetShape, input_codebooks, same_stage_input, stage_inputs
from vqcodec.entropy.counts import ContextPrior
from vqcodec.entropy.learned import LearnedPrior, partial_sums, stage_contexts
from vqcodec.entropy.schedule import anchors

if TYPE_CHECKING:
    from vqcodec.model import VQVAE


@dataclass
class FitConfig:
    """Options of one context-network training run."""

    steps: int = 1500
    batch: int = 12
    crop: int = 24
    lr: float = 3e-3
    quantize_at: float = 0.7
    tau_start: float = 0.5
    tau_end: float = 0.05
    table_lr_scale: float = 10.0
    seed: int = 0


def _tau(step: int, cfg: FitConfig) -> float:
    frac = step / max(1, cfg.steps - 1)
    return cfg.tau_start * (cfg.tau_end / cfg.tau_start) ** frac


class GridSampler:
    """Random (inputs, same-stage code input, targets, anchor mask, stage) batches from index grids."""

    def __init__(self, grids: Sequence[np.ndarray], recon: np.ndarray, code: np.ndarray, seed: int = 0) -> None:
        self.grids = [g.astype(np.int64) for g in grids]
        self.recon, self.code = recon, code
        self.stages = recon.shape[0]
        self.rng = np.random.default_rng(seed)

    def code_frequencies(self) -> np.ndarray:
        """Code frequencies (stages, K) over every grid, each count plus one."""
        k = self.recon.shape[1]
        counts = np.ones((self.stages, k))
        for g in self.grids:
            for s in range(self.stages):
                counts[s] += np.bincount(g[s].ravel(), minlength=k)
        return counts / counts.sum(1, keepdims=True)

    def item(self, grid: np.ndarray, stage: int) -> tuple[np.ndarray, ...]:
        """One grid's tensors for `stage`: inputs, same-stage input with anchors known, targets, anchor mask."""
        inputs = stage_inputs(grid, stage, self.recon, self.code)
        anchor = anchors(grid.shape[1], grid.shape[2])
        same = same_stage_input(grid[stage], anchor.astype(np.int32), stage, self.code)
        return inputs.transpose(2, 0, 1), same.transpose(2, 0, 1), grid[stage], anchor

    def batch(self, size: int, crop: int) -> tuple[torch.Tensor, ...]:
        items, stages = [], []
        for _ in range(size):
            g = self.grids[self.rng.integers(len(self.grids))]
            h, w = min(crop, g.shape[1]), min(crop, g.shape[2])
            y, x = self.rng.integers(g.shape[1] - h + 1), self.rng.integers(g.shape[2] - w + 1)
            # Crops keep the grid's checkerboard parity: start on an even offset.
            y, x = y - y % 2, x - x % 2
            s = int(self.rng.integers(1, self.stages))
            items.append(self.item(g[:, y : y + h, x : x + w], s))
            stages.append(s)
        h = min(i[0].shape[1] for i in items)
        w = min(i[0].shape[2] for i in items)
        cut = [[torch.from_numpy(np.ascontiguousarray(a[..., :h, :w])) for a in it] for it in items]
        inputs, same, target, anchor = (torch.stack(t) for t in zip(*cut))
        return inputs.float(), same.float(), target, anchor, torch.tensor(stages)


def mixture_bits(logits: torch.Tensor, tables: torch.Tensor, stage: torch.Tensor, target: torch.Tensor,
                 tau: float) -> torch.Tensor:
    """Bits (B, H, W) of each target under the mixture of context tables weighted by softmax(logits / tau)."""
    b, g, h, w = logits.shape
    log_pi = F.log_softmax(logits / tau, dim=1).reshape(b, g, h * w)
    log_p = F.log_softmax(tables[stage], dim=-1)
    picked = log_p.gather(2, target.reshape(b, 1, h * w).expand(b, g, h * w))
    return -torch.logsumexp(log_pi + picked, dim=1).reshape(b, h, w) / math.log(2)


def hard_bits(logits: torch.Tensor, tables: torch.Tensor, stage: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bits (B, H, W) when each cell takes its largest-logit context's table."""
    b, g, h, w = logits.shape
    ctx = logits.argmax(1).reshape(b, h * w)
    log_p = F.log_softmax(tables[stage], dim=-1)
    rows = log_p.gather(1, ctx[..., None].expand(b, h * w, log_p.shape[-1]))
    return -rows.gather(2, target.reshape(b, h * w, 1)).reshape(b, h, w) / math.log(2)


def _two_passes(net: ContextNet, inputs: torch.Tensor, same: torch.Tensor, anchor: torch.Tensor,
                stage: torch.Tensor) -> torch.Tensor:
    """Context logits of every cell under the checkerboard schedule (anchors first, with no same-stage context)."""
    first = net(inputs, torch.zeros_like(same), stage)
    second = net(inputs, same, stage)
    return torch.where(anchor[:, None], first, second)


def train_context_net(sampler: GridSampler, shape: NetShape, codebook_size: int, cfg: FitConfig,
                      on_step: Callable[[dict], None] | None = None) -> ContextNet:
    """Train a `ContextNet` on sampled grid crops; returns it fake-quantised and calibrated."""
    torch.manual_seed(cfg.seed)
    net = ContextNet(shape, codebook_size)
    with torch.no_grad():
        # Every context starts at its stage's code frequencies (and a little noise to break ties), so
        # training begins at the context-free rate and the tables only learn how contexts differ.
        freq = torch.from_numpy(sampler.code_frequencies()).float()
        net.tables.copy_(freq.log()[:, None, :] + 0.01 * torch.randn_like(net.tables))
    tables = [net.tables]
    rest = [p for p in net.parameters() if p is not net.tables]
    opt = torch.optim.Adam([{"params": rest, "scale": 1.0}, {"params": tables, "scale": cfg.table_lr_scale}], lr=cfg.lr)
    start = time.time()
    quantize_step = int(cfg.quantize_at * cfg.steps)
    for step in range(cfg.steps):
        if step == quantize_step:
            inputs, same, _, anchor, stage = sampler.batch(64, cfg.crop)
            net.calibrate(inputs, same * anchor[:, None], stage)
            net.quantize()
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr * group["scale"]
        inputs, same, target, anchor, stage = sampler.batch(cfg.batch, cfg.crop)
        logits = _two_passes(net, inputs, same, anchor, stage)
        tau = _tau(step, cfg)
        loss = mixture_bits(logits, net.tables, stage, target, tau).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            with torch.no_grad():
                hard = hard_bits(logits, net.tables, stage, target).mean()
            on_step({"step": step + 1, "bits": float(loss.detach()), "hard_bits": float(hard), "tau": tau, "lr": lr,
                     "quantized": net.quantized, "elapsed": time.time() - start})
    return net


def count_tables(net: IntContextNet, grids: Sequence[np.ndarray], recon: np.ndarray, code: np.ndarray,
                 codebook_size: int) -> np.ndarray:
    """Code counts (stages, G, K) of every (stage >= 1, context) over `grids`; stage 0's row stays empty."""
    stages = recon.shape[0]
    g, k = net.shape.contexts, codebook_size
    counts = np.zeros((stages, g, k), dtype=np.int64)
    for grid in grids:
        grid = grid.astype(np.int64)
        for s, total in partial_sums(grid, stages, recon):
            ctx = stage_contexts(net, grid, s, recon, code, total)
            counts[s] += np.bincount((ctx * k + grid[s]).ravel(), minlength=g * k).reshape(g, k)
    return counts


@torch.inference_mode()
def index_grids(net: "VQVAE", files: Sequence[Path], views: int,
                on_image: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """Index grids (stages, h, w) int16 of `views` grid-offset views of every image (see `prior_views`)."""
    from vqcodec.data import read_rgb
    from vqcodec.train import prior_views

    grids = []
    for i, path in enumerate(files):
        all_views = list(prior_views(read_rgb(path), net.config.stride))
        step = max(1, len(all_views) // max(1, views))
        for x in all_views[::step][:views]:
            grids.append(net.encode(x)[0].numpy().astype(np.int16))
        if on_image is not None:
            on_image(i + 1)
    return grids


def stage0_prior(grids: Sequence[np.ndarray], codebook_size: int, seed: int = 0) -> ContextPrior:
    """Stage 0's row-context count prior (see `ContextPrior`), fitted on the stage-0 grids."""
    k = codebook_size
    top = np.zeros(k, dtype=np.int64)
    pairs = np.zeros((1, k, k), dtype=np.int64)
    for g in grids:
        g0 = g[0].astype(np.int64)
        top += np.bincount(g0[0], minlength=k)
        pairs[0] += np.bincount((g0[:-1] * k + g0[1:]).ravel(), minlength=k * k).reshape(k, k)
    return ContextPrior.fit(top, pairs, seed=seed)


def bits_per_stage(prior: "LearnedPrior | ContextPrior", grids: Sequence[np.ndarray]) -> np.ndarray:
    """Mean ideal bits per cell of every stage of `grids` under `prior`."""
    stages = grids[0].shape[0]
    bits = np.zeros(stages)
    cells = 0
    for g in grids:
        g = g.astype(np.int64)
        for s in range(stages):
            bits[s] += prior.stage_bits(g, s)
        cells += g[0].size
    return bits / max(cells, 1)


def fit_learned_prior(net: "VQVAE", files: Sequence[Path], cfg: FitConfig, views: int = 16,
                      on_event: Callable[[dict], None] | None = None) -> LearnedPrior:
    """The learned prior of a trained network: grids of `views` views of every training image, the
    context network trained on them (`cfg`), then its tables counted over the same grids."""
    say = on_event or (lambda event: None)
    say({"phase": "grids", "images": len(files), "views": views})
    grids = index_grids(net, files, views, lambda i: say({"phase": "grids", "done": i}))
    stages, k = net.config.num_stages, net.config.codebook_size
    recon, code = input_codebooks([st.codebook for st in net.quantizer.stages])
    shape = NetShape(dim=net.config.latent_dim, stages=stages)
    say({"phase": "network", "grids": len(grids), "steps": cfg.steps})
    ctx = train_context_net(GridSampler(grids, recon, code, cfg.seed), shape, k, cfg,
                            lambda m: say({"phase": "network", **m}))
    say({"phase": "counting"})
    inet = ctx.export()
    counts = count_tables(inet, grids, recon, code, k) + 1
    return LearnedPrior(stage0_prior(grids, k, cfg.seed), inet, counts, recon.astype(np.int64), code.astype(np.int64))
