"""More residual stages for a trained model: higher qualities without retraining, old files still read.

A model's rate/distortion curve ends where its stages end: `default`'s eight stages stopped at
0.73 bpp on Kodak, and its top qualities only priced the same stages' bits less. What the eight
stages leave is still far from the autoencoder's own error (about 30 dB against a
35 dB ceiling without quantization, on BSDS500 val), so further stages keep paying.

`extend_stages` appends stages after the last one. Each new codebook is fitted to the residual
latents the model leaves on training photos, as `compress` codes them (with the model's rate
weights): k-means, then a few rounds of entropy-constrained k-means (ECVQ: assign each row to the
code minimising squared error + weight x its bits given the previous stage's code, move every code
to the mean of its rows, recount the bits). The new stages' prior tables are then counted on the
codes rate-aware coding picks over more views of the photos, conditioned like every later stage
on the previous stage's code. Every stage before them, their tables, the decoder and so every
stream stay exactly as they were, so the extended model reads the files of the model it grew from
(`CodecModel.decodes`), and keeps that model's default quality.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqcodec import codec, pricing
from vqcodec.data import read_rgb
from vqcodec.entropy import ContextPrior
from vqcodec.errors import ArgumentError
from vqcodec.model import VQVAE, _to_rows
from vqcodec.quantizer import nearest_code
from vqcodec.train import index_statistics, prior_views
from vqcodec.zoo import CodecModel

Event = Callable[[dict[str, Any]], None]

CHUNK_ROWS = 16384
"""Rows scored at once: the (rows x codes) price and score matrices stay near 32 MB at 512 codes."""
KMEANS_ROWS = 300_000
"""Residual rows k-means starts each codebook from (a random subset: more only adds time)."""


@dataclass
class Extension:
    """What `extend_stages` makes: the longer network, its prior, rate weights and lineage, for `save_model`."""

    net: VQVAE
    prior: ContextPrior
    rate_weights: np.ndarray
    decodes: tuple[bytes, ...]
    report: dict[str, Any]
    decodes_prior: ContextPrior | None = None
    """The prior of the models under `decodes`, with the same stages appended (`CodecModel.decodes_prior`)."""
    own_prior_decodes: int = 0
    """How many of `decodes` coded with the start model's prior (`CodecModel.own_prior_decodes`)."""


@torch.inference_mode()
def residuals(model: CodecModel, files: list[Path], views: int,
              on_image: Callable[[int], None] | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """The latent rows' residuals (N, D) after all of the model's stages, coded as `compress` codes them at
    effort 0 (the model's rate weights), and the last stage's codes (N,), over `views` views of each file."""
    net, s = model.net, model.config.num_stages
    price = pricing.penalty(model.prior, model.rate_weights)
    rows, last = [], []
    for i, path in enumerate(files, 1):
        for x in prior_views(read_rgb(path), model.config.stride, views):
            z = _to_rows(net.embed(x))
            idx = net.quantizer.encode(z, s, price)
            rows.append(z - net.quantizer.decode(idx))
            last.append(idx[-1].numpy())
        if on_image is not None:
            on_image(i)
    return torch.cat(rows).float(), np.concatenate(last).astype(np.int64)


def stage_bits(given: np.ndarray, codes: np.ndarray, k: int, num_groups: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A later stage's context tables from its (previous code, code) pairs, as the model's prior fits them:
    each previous code's group (k,) and every group's bits per code (G, k)."""
    pairs = np.bincount(given * k + codes, minlength=k * k).reshape(1, k, k)
    table = ContextPrior.fit(np.zeros(k, dtype=np.int64), pairs, num_groups, seed)
    counts = table.counts[0, :-1].astype(np.float64)
    return table.groups[0], -np.log2(counts / counts.sum(1, keepdims=True))


def assign(rows: torch.Tensor, codebook: torch.Tensor, weight: float = 0.0,
           given: np.ndarray | None = None, groups: np.ndarray | None = None, bits: np.ndarray | None = None) -> torch.Tensor:
    """Each row's code: the nearest, or with `weight` > 0 the one minimising squared error + weight x its bits
    in the context of the previous stage's code (`given`, grouped by `groups`, bits per group `bits`)."""
    out = []
    for start in range(0, rows.shape[0], CHUNK_ROWS):
        chunk = rows[start : start + CHUNK_ROWS]
        penalty = None
        if weight > 0 and bits is not None:
            context = groups[given[start : start + CHUNK_ROWS]]
            penalty = torch.from_numpy((bits[context] * weight).astype(np.float32))
        out.append(nearest_code(chunk, codebook, penalty))
    return torch.cat(out)


def fit_stage(rows: torch.Tensor, given: np.ndarray, k: int, weight: float, rounds: int, num_groups: int,
              seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One new stage's codebook (k, D) for residual `rows` and the codes it gives them: k-means on a subset,
    then `rounds` of entropy-constrained k-means priced at `weight` given the previous stage's codes."""
    from sklearn.cluster import MiniBatchKMeans  # fitting only: keeps scikit-learn out of codec start-up

    rng = np.random.default_rng(seed)
    subset = rows[rng.choice(rows.shape[0], min(KMEANS_ROWS, rows.shape[0]), replace=False)].numpy()
    km = MiniBatchKMeans(n_clusters=k, batch_size=4096, n_init=3, random_state=seed, max_no_improvement=20)
    codebook = torch.from_numpy(km.fit(subset).cluster_centers_.astype(np.float32))
    codes = assign(rows, codebook)
    for _ in range(rounds if weight > 0 else 0):
        groups, bits = stage_bits(given, codes.numpy(), k, num_groups, seed)
        codes = assign(rows, codebook, weight, given, groups, bits)
        sums = torch.zeros_like(codebook).index_add_(0, codes, rows)
        used = torch.bincount(codes, minlength=k).float()
        codebook = torch.where(used[:, None] > 0, sums / used.clamp(min=1.0)[:, None], codebook)
    if weight > 0:
        groups, bits = stage_bits(given, codes.numpy(), k, num_groups, seed)
        codes = assign(rows, codebook, weight, given, groups, bits)
    return codebook, codes


def longer_net(model: CodecModel, codebooks: list[torch.Tensor]) -> VQVAE:
    """The model's network with `codebooks` appended as stages after its last, in eval mode; the same
    default quality as the model (an explicit one is kept, the middle one is written down)."""
    config = model.config
    net = VQVAE(replace(config, num_stages=config.num_stages + len(codebooks),
                        default_quality=codec.default_quality(model)))
    net.load_state_dict(model.net.state_dict(), strict=False)  # all but the new stages, set next
    for stage, codebook in zip(net.quantizer.stages[config.num_stages :], codebooks):
        stage.set_codebook(codebook)
    return net.eval()


def extend_stages(model: CodecModel, files: list[Path], stages: int, weight: float = 0.001, views: int = 2,
                  count_views: int = 32, rounds: int = 3, seed: int = 0, on_event: Event | None = None) -> Extension:
    """`model` with `stages` residual stages in all (more than it has), the new ones fitted on `files`.

    The new codebooks are fitted on `views` views of each file, their rate weight is `weight` (0:
    nearest code), and their prior tables are counted over `count_views` views under the fitted prices.
    `on_event` receives progress dicts with a "phase" key: residuals and counts with "done" and "total" images,
    stage with each new stage's figures.
    """
    old = model.config.num_stages
    if not isinstance(stages, int) or isinstance(stages, bool) or not old < stages <= 255:
        raise ArgumentError(f"stages must be more than the model's {old} (at most 255), got {stages!r}")
    for prior in [p for p in (model.prior, model.decodes_prior) if p is not None]:
        if not isinstance(prior, ContextPrior):
            raise ArgumentError(f"stages can be added to a model with a count context prior, not a {type(prior).__name__}")
    if model.decodes_prior is not None and model.decodes_prior.counts.shape != model.prior.counts.shape:
        raise ArgumentError("the prior this model carries for older files has other context groups than its own: "
                            "the new stages' tables cannot serve both")
    if not np.isfinite(weight) or weight < 0:
        raise ArgumentError(f"the new stages' rate weight must be a number >= 0, got {weight!r}")
    event = on_event or (lambda _: None)
    k, groups = model.config.codebook_size, model.prior.counts.shape[1] - 1

    def on_image(i: int) -> None:
        event({"phase": "residuals", "done": i, "total": len(files)})

    rows, given = residuals(model, files, views, on_image)
    report: dict[str, Any] = {"rows": int(rows.shape[0]), "new_stages": []}
    codebooks, pairs = [], []
    for s in range(old, stages):
        codebook, codes = fit_stage(rows, given, k, weight, rounds, groups, seed + s)
        pairs.append(np.bincount(given * k + codes.numpy(), minlength=k * k).reshape(k, k))
        rows, given = rows - codebook[codes], codes.numpy()
        codebooks.append(codebook)
        info = {"stage": s + 1, "residual_energy": round(float(rows.pow(2).sum(1).mean()), 5),
                "codes_used": int(np.unique(given).size)}
        report["new_stages"].append(info)
        event({"phase": "stage", **info})
    net = longer_net(model, codebooks)
    weights = np.concatenate([model.rate_weights, np.full(stages - old, float(weight))])
    fitted = with_tables(model.prior, np.stack(pairs), seed)

    def counted(i: int) -> None:
        event({"phase": "counts", "done": i, "total": len(files)})

    _, all_pairs = index_statistics(net, files, torch.device("cpu"), count_views, counted, fitted, weights)
    prior = with_tables(model.prior, all_pairs[old:], seed)
    decodes, theirs, own = model.lineage
    if theirs is not None:  # the ancestors' files never reach the new stages: their tables are the same
        theirs = ContextPrior(np.concatenate([theirs.counts, prior.counts[old:]]),
                              np.concatenate([theirs.groups, prior.groups[old:]]))
    return Extension(net, prior, weights, decodes, report, theirs, own)


def with_tables(prior: ContextPrior, pairs: np.ndarray, seed: int = 0) -> ContextPrior:
    """`prior` with stages appended whose tables are fitted on (previous code, code) `pairs` (new stages, K, K);
    the existing stages' groups and counts are kept exactly."""
    k = prior.counts.shape[-1]
    new = ContextPrior.fit(np.zeros(k, dtype=np.int64), pairs, prior.counts.shape[1] - 1, seed)
    return ContextPrior(np.concatenate([prior.counts, new.counts]), np.concatenate([prior.groups, new.groups]))
