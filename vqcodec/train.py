"""The training recipe: transform initialisation, pretrain, k-means codebook initialisation, joint training,
prior fitting.

0. Initialise the model's linear lapped transforms to the principal components of image
   blocks (`pca_init`), so training starts from a good linear transform coder.
1. Pretrain encoder and decoder as a plain autoencoder (no quantization).
2. Initialise every residual stage's codebook by MiniBatchKMeans on encoder outputs
   (stage s on the residuals left by stages < s) gathered from many batches.
3. Train jointly: MSE (or MS-SSIM, `joint_distortion`) + commitment loss, EMA codebooks,
   restart of dead codes, and quantizer dropout (a random number of stages per step) so that
   every prefix of stages decodes well: that prefix length is the codec's quality.
4. Fit the entropy prior (stage contexts, see `vqcodec.entropy.ContextPrior`) on the
   index statistics of the training images, each seen in `prior_views` shifted and mirrored
   views (by default as many as the run's length pays for, see `auto_prior_views`), export.

Runs alike on one process or under `torchrun` (DistributedDataParallel; gloo on CPU,
nccl on GPU). Checkpoints are plain tensors saved atomically and read back with
`torch.load(weights_only=True)`; `resume` continues exactly where one left off.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from pytorch_msssim import ms_ssim
from sklearn.cluster import MiniBatchKMeans
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from vqcodec import grid_shift, pricing
from vqcodec.data import CropDataset, StepBatchSampler, find_images, read_rgb, to_tensor
from vqcodec.effort import check_effort
from vqcodec.entropy import ContextPrior, FrequencyPrior
from vqcodec.errors import DataError
from vqcodec.model import DISTORTIONS, VQVAE, ModelConfig, _to_rows
from vqcodec.quantizer import Penalty
from vqcodec.stopping import StopSignals, ignore_stop_signal
from vqcodec.zoo import CodecModel, load_model, save_model


LOSSES = DISTORTIONS
"""Training losses: mean squared error, or 1 - MS-SSIM (pytorch-msssim, 5 scales). A decoder-only run takes
either in the logarithm (`decoder_tuning.loss_of`), the joint phase as `joint_distortion`; the trained model
declares it as its `distortion`."""
PRECISIONS = ("float32", "bfloat16")
"""The arithmetic of a training step's encoder and decoder passes (`TrainConfig.precision`)."""


@dataclass
class TrainConfig:
    """Options of one training run (the CLI's `vqcodec train` flags)."""

    data: Path
    out: Path
    val: Path | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int = 2000
    pretrain_steps: int | None = None
    batch_size: int = 16
    crop: int = 256
    lr: float = 5e-4
    kmeans_batches: int = 16
    restart_every: int = 25
    val_every: int = 250
    val_images: int = 16
    checkpoint_every: int = 100
    checkpoint: Path | None = None
    log: Path | None = None
    resume: Path | None = None
    init: Path | None = None
    device: str = "auto"
    workers: int = 2
    seed: int = 0
    prior_views: int | None = None
    """Views of each training image the prior is counted over (`prior_view_choices`); None: `auto_prior_views`."""
    rate_weights: tuple[float, ...] = ()
    """Rate-aware coding weights of stages 2..S (`vqcodec.pricing.stage_weights`: one for all, or one each)
    the prior is counted under; stored in the model file, so `compress` codes with them. Empty: greedy.
    In a `decoder_only` run, the weights the decoder learns the codes of (empty: the `init` model's)."""
    prior_rounds: int | None = None
    """Prior fits: the first counts greedy codes, each further one the codes chosen under the previous fit's
    prices. None: 1 without rate weights, else `RATE_PRIOR_ROUNDS`."""
    decoder_only: bool = False
    """Fine-tune only the decoder of `init` on the codes `compress` writes (`vqcodec.decoder_tuning`)."""
    loss: str = "mse"
    """What the decoder (a `decoder_only` run) or the whole network (the recipe's phases) is trained for
    (`LOSSES`); the model declares it as its `distortion`."""
    effort: int | None = None
    """Encoder effort (`vqcodec.effort`) of the codes a `decoder_only` run trains on; None: `compress`'s default."""
    top_decoder_from: int = 0
    """A `decoder_only` run that trains a second decoder (`ModelConfig.top_decoder_from`) for the qualities from
    this one up, and keeps `init`'s decoder for those below; 0: one decoder for every quality."""
    top_decoder_channels: tuple[int, ...] = ()
    """The widths of the second decoder a `decoder_only` run with `top_decoder_from` trains (wider than `init`'s
    top decoder: `vqcodec.widening`); empty: `init`'s."""
    cached_codes: int = 0
    """A `decoder_only` run codes each training image whole, once, at this many of its qualities and trains on
    windows of those codes (`vqcodec.coded_windows`); 0: each step's crops are coded anew."""
    decoder_from: Path | None = None
    """A model file whose decoder the `decoder_only` run starts from instead of `init`'s (it must read `init`'s
    streams, e.g. an earlier fine-tune of it)."""
    encoder_channels: tuple[int, ...] = ()
    """The encoder's widths when asked (they replace `model.channels`); empty: `model.channels`, or with `init`
    the start model's."""
    encoder_only: bool = False
    """Train only `init`'s encoder: with `encoder_channels`, a narrower one distilled from it
    (`vqcodec.encoder_distillation`); without, the encoder itself for `loss` through `init`'s fixed quantizer,
    prior and decoder (`vqcodec.encoder_tuning`). The rest of the model stays `init`'s."""
    precision: str = "float32"
    """The encoder's and decoders' arithmetic in training steps (`PRECISIONS`): "bfloat16" runs them under
    autocast (the quantizer stays float32), about twice as fast a step on a CPU with AMX or AVX-512 BF16 and
    on GPUs, but emulated and many times slower on CPUs without (`torch.backends.cpu.get_cpu_capability`)."""
    priced: bool = False
    """Joint training picks codes rate-aware, priced by `init`'s prior and rate weights (`pricing.table_penalty`),
    as compress does, instead of nearest: the EMA codebooks become the centroids of the codes coding really
    chooses, and the decoder learns those codes. The prior is then counted under the same weights (`init`'s
    unless `rate_weights` is given)."""

    def __post_init__(self) -> None:
        self.data, self.out = Path(self.data), Path(self.out)
        if self.checkpoint is None:
            self.checkpoint = self.out.with_suffix(".ckpt")
        if self.log is None:
            self.log = self.out.with_suffix(".jsonl")
        if self.encoder_channels:
            self.model = replace(self.model, channels=tuple(self.encoder_channels))
        if self.pretrain_steps is None:
            self.pretrain_steps = 0 if self.init is not None else self.steps // 10
        if self.pretrain_steps >= self.steps:
            raise ValueError("--pretrain-steps must be smaller than --steps")
        weights = pricing.stage_weights(self.model.num_stages, self.rate_weights)
        if self.prior_rounds is None:
            self.prior_rounds = RATE_PRIOR_ROUNDS if weights.any() or self.priced else 1
        if self.prior_rounds < 1:
            raise ValueError(f"--prior-rounds must be at least 1, got {self.prior_rounds}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.loss != "mse" and self.encoder_only and self.encoder_channels:
            raise ValueError(f"--loss {self.loss} is not for --encoder-only --encoder-channels runs: they distil "
                             "latents")
        if self.loss == "ms-ssim" and self.crop < grid_shift.MIN_SIDE:
            raise ValueError(f"--loss ms-ssim scores a window shifted against the code grid (five scales of an "
                             f"11-pixel window at every offset): give --crop {grid_shift.MIN_SIDE} or more")
        if self.decoder_only and self.init is None:
            raise ValueError("--decoder-only fine-tunes a model: give it with --init (also when resuming)")
        if self.effort is not None and not self.decoder_only:
            raise ValueError("--effort is for --decoder-only runs: the full recipe trains on nearest codes")
        if self.decoder_only:
            self.effort = check_effort(self.effort)
        elif self.top_decoder_from or self.decoder_from is not None or self.cached_codes:
            raise ValueError("--top-decoder-from, --decoder-from and --cached-codes are for --decoder-only runs")
        if self.top_decoder_channels and not self.top_decoder_from:
            raise ValueError("--top-decoder-channels are the widths of a second decoder: give --top-decoder-from")
        if self.cached_codes < 0:
            raise ValueError(f"--cached-codes must be 0 (code each step's crops) or more, got {self.cached_codes}")
        if self.encoder_only and (self.init is None or self.decoder_only or self.priced or self.rate_weights):
            raise ValueError("--encoder-only trains the encoder of a model: give it with --init (also when "
                             "resuming), without --decoder-only, --priced or --rate-weights (its codes are priced "
                             "by --init's prior and weights)")
        if self.decoder_only and self.encoder_channels:
            raise ValueError("--encoder-channels is not for --decoder-only runs: the encoder stays --init's")
        if self.priced and (self.init is None or self.decoder_only):
            raise ValueError("--priced fine-tunes a model whose prior prices the codes: give it with --init "
                             "(also when resuming), without --decoder-only")
        if self.top_decoder_from < 0 or self.top_decoder_from == 1:
            raise ValueError(f"--top-decoder-from must be 2 or more (0: one decoder), got {self.top_decoder_from}")
        choices = prior_view_choices(self.model.stride)
        if self.prior_views is not None and self.prior_views not in choices:
            raise ValueError(f"--prior-views must be one of {', '.join(map(str, choices))}, got {self.prior_views}")


def pick_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else CPU; `cuda` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda asked for, but torch sees no CUDA device")
    if name not in ("cpu", "cuda"):
        raise DataError(f"unknown device '{name}' (auto, cpu or cuda)")
    if name == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop shapes: pick the fastest convolution once
    return torch.device(name)


@dataclass
class Dist:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def autocast(cfg: TrainConfig, device: torch.device) -> torch.autocast:
    """The context a training step's network passes run in: bfloat16 autocast with `cfg.precision` "bfloat16",
    else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bfloat16")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Short linear warm-up, then cosine decay to 2% of the base rate."""
    warmup = min(100, cfg.steps // 10)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def stages_at(step: int, cfg: TrainConfig) -> int:
    """Quantizer dropout: the number of stages used at `step`, 0 while pretraining.

    Drawn from a generator seeded by (seed, step), so all ranks agree without talking.
    """
    if step < cfg.pretrain_steps:
        return 0
    g = np.random.default_rng([cfg.seed, step, 2])
    return int(g.integers(1, cfg.model.num_stages + 1))


def psnr(mse: float) -> float:
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def perplexity(indices: torch.Tensor, k: int) -> float:
    """exp(entropy) of the index histogram: how many codes are effectively in use."""
    p = torch.bincount(indices.flatten(), minlength=k).float()
    p = p / p.sum()
    return float(torch.exp(-(p * torch.log(p + 1e-12)).sum()))


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, net: VQVAE, opt: torch.optim.Optimizer, step: int, kmeans_done: bool,
                    extra: dict[str, Any] | None = None) -> None:
    """Weights (EMA state included), optimizer, RNG and step, and a mode's `extra` entries, written atomically."""
    state = {**(extra or {}),
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "kmeans_done": kmeans_done,
        "torch_rng": torch.get_rng_state(),
        "config": net.config.to_json(),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint without unrestricted unpickling."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise DataError(f"{path}: not a readable checkpoint ({exc})") from None


def truncate_log(path: Path, step: int) -> None:
    """Keep only the log lines of the `step` steps completed at the checkpoint, so a resumed run appends without gap or overlap."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", -1) <= step]
    path.write_text("".join(line + "\n" for line in kept))


# ---------------------------------------------------------------- recipe steps


@torch.no_grad()
def pca_init(net: VQVAE, batches: Iterator[torch.Tensor], n_batches: int, device: torch.device) -> None:
    """Set the linear transforms to the top principal components of stride x stride image blocks.

    Components are the eigenvectors (float64) of the blocks' second moments around the mean
    colour, largest first, each signed so its entries sum to a positive value: the result does
    not depend on the eigen-solver's sign choices. Under DDP, wrapping the network afterwards
    copies rank 0's transform to every rank.
    """
    s, d = net.config.stride, net.config.latent_dim
    blocks = []
    for _, x in zip(range(n_batches), batches):
        x = x.double() - 0.5
        h, w = x.shape[-2:]
        x = x[:, :, : h // s * s, : w // s * s]
        blocks.append(F.pixel_unshuffle(x, s).permute(0, 2, 3, 1).reshape(-1, 3 * s * s))
    rows = torch.cat(blocks)
    mean = rows.reshape(-1, 3, s * s).mean(dim=(0, 2))
    centred = rows - mean.repeat_interleave(s * s)[None]
    cov = centred.t() @ centred / max(1, rows.shape[0] - 1)
    _, vectors = torch.linalg.eigh(cov)
    basis = vectors.flip(1)[:, :d].t()
    basis = basis * torch.sign(basis.sum(1, keepdim=True) + 1e-12)
    net.set_linear_transform(mean.float().to(device), basis.reshape(d, 3, s, s).float().to(device))


def _inherit(asked: ModelConfig, source: ModelConfig, encoder_asked: bool = False) -> ModelConfig:
    """The config of a fine-tune of `source`: `asked`, with what the command line does not set taken from
    `source` (encoder and decoder widths unless asked, float16 storage when either has it, the default quality
    and a second decoder with its widths when the stage counts agree); a stage count that differs is refused by
    `start_from_model`."""
    inherited = replace(asked, channels=asked.channels if encoder_asked else source.channels,
                        decoder_channels=asked.decoder_channels or source.decoder_channels,
                        float16_weights=asked.float16_weights or source.float16_weights,
                        full_res_channels=asked.full_res_channels or source.full_res_channels)
    if asked.num_stages != source.num_stages:
        return inherited
    return replace(inherited, default_quality=source.default_quality, top_decoder_from=source.top_decoder_from,
                   top_decoder_channels=source.top_decoder_channels, reduced_qualities=source.reduced_qualities,
                   full_from=source.full_from)


def start_from_model(net: VQVAE, path: Path, source: CodecModel | None = None) -> None:
    """Copy a model file's weights and codebooks (EMA state included) into `net`, for fine-tuning.

    The transform and codebook initialisations are then skipped: the file's network already holds them.
    Only the name, the description and the distortion the decoder is trained for may differ from the file's
    config (`train` takes the file's decoder widths when none are asked for). `source` is the file already
    loaded, if the caller has it.
    """
    source = load_model(path) if source is None else source
    free = ("name", "description", "distortion")
    if replace(source.config, **{f: getattr(net.config, f) for f in free}) != net.config:
        differ = [f"{f} {getattr(source.config, f)} (asked: {getattr(net.config, f)})"
                  for f in ModelConfig.__dataclass_fields__ if f not in free
                  and getattr(source.config, f) != getattr(net.config, f)]
        raise DataError(f"{path}: model has another architecture: {', '.join(differ)}")
    net.load_state_dict(source.net.state_dict())


@torch.no_grad()
def kmeans_init(net: VQVAE, batches: Iterator[torch.Tensor], n_batches: int, seed: int, device: torch.device) -> None:
    """Initialise each residual stage by MiniBatchKMeans on residuals from `n_batches` batches (rank 0, broadcast)."""
    rows = []
    for _, x in zip(range(n_batches), batches):
        rows.append(_to_rows(net.embed(x.to(device))).cpu())
    residual = torch.cat(rows).numpy().astype(np.float64)
    k = net.config.codebook_size
    for s, stage in enumerate(net.quantizer.stages):
        if residual.shape[0] >= k:
            km = MiniBatchKMeans(n_clusters=k, batch_size=4096, n_init=3, random_state=seed + s)
            km.fit(residual)
            centers = km.cluster_centers_
        else:
            centers = residual[np.random.default_rng(seed + s).integers(0, residual.shape[0], k)]
        stage.set_codebook(torch.from_numpy(centers).float().to(device))
        chosen = stage.codebook[stage.encode(torch.from_numpy(residual).float().to(device))]
        residual = residual - chosen.cpu().numpy().astype(np.float64)


@torch.no_grad()
def restart_dead(net: VQVAE, x: torch.Tensor, n_stages: int) -> int:
    """Re-seed dead codes of the active stages from this batch's residuals at each stage."""
    was_training = net.training
    net.eval()
    rows = _to_rows(net.embed(x))
    net.train(was_training)
    restarted = 0
    for stage in net.quantizer.stages[:n_stages]:
        restarted += stage.restart_dead_codes(rows)
        rows = rows - stage.lookup(stage.encode(rows))
    return restarted


def center_crop_to_stride(pixels: np.ndarray, stride: int) -> torch.Tensor:
    """(1, 3, H', W') float tensor, H' and W' cut down to multiples of `stride`."""
    h, w = (pixels.shape[0] // stride) * stride, (pixels.shape[1] // stride) * stride
    top, left = (pixels.shape[0] - h) // 2, (pixels.shape[1] - w) // 2
    patch = pixels[top : top + h, left : left + w]
    return to_tensor(patch)[None]


PRIOR_VIEW_STEP = 2
"""Finest grid offset step (pixels) of the views `auto_prior_views` picks: 32 views at stride 8."""


def prior_view_choices(stride: int) -> tuple[int, ...]:
    """Valid view counts: 1 (the image as it is), or 2 * (stride / step)^2 for an offset step dividing `stride`."""
    steps = [d for d in range(stride, 0, -1) if stride % d == 0]
    return (1, *(2 * (stride // d) ** 2 for d in steps))


def finest_prior_views(stride: int) -> int:
    """Views at offsets in steps of `PRIOR_VIEW_STEP` pixels, plain and mirrored: the most `auto_prior_views` picks."""
    return 2 * (stride // PRIOR_VIEW_STEP) ** 2 if stride % PRIOR_VIEW_STEP == 0 else 2


def auto_prior_views(stride: int, image_pixels: int, steps: int, batch_size: int, crop: int, world: int = 1) -> int:
    """The default view count: the most (up to `finest_prior_views`) whose prior pass encodes no more
    pixels than the run trained on (steps x batch size x processes x crop^2), at least 1.

    So a 20-step trial pays for one look at each image, not 32, while the shipped recipe
    (10000 steps of 16 128-pixel crops on the 200 BSDS500 training images) gets 32.
    """
    budget = steps * batch_size * world * crop * crop
    fits = [v for v in prior_view_choices(stride) if v <= finest_prior_views(stride) and v * image_pixels <= budget]
    return max(fits, default=1)


def prior_views(pixels: np.ndarray, stride: int, views: int | None = None) -> Iterator[torch.Tensor]:
    """The image as (1, 3, H', W') tensors, each cut to multiples of `stride`: with `views` = 1 the image
    itself, else at every grid offset that is a multiple of step = stride / sqrt(views / 2), plain and
    mirrored left to right (`views` = 2 * (stride / step)^2; see `prior_view_choices`). None: the
    `finest_prior_views`.

    A photo can sit at any offset to the 8x8 grid, so each view is another sample of the code
    statistics; 200 training photos alone leave the prior's context tables sparse.
    """
    views = finest_prior_views(stride) if views is None else views
    if views not in prior_view_choices(stride):
        raise ValueError(f"{views} views: choose one of {prior_view_choices(stride)}")
    mirrors = (pixels,) if views == 1 else (pixels, pixels[:, ::-1])
    offsets = range(0, stride, stride // math.isqrt(views // 2) if views > 1 else stride)
    for view, dy, dx in itertools.product(mirrors, offsets, offsets):
        h, w = (view.shape[0] - dy) // stride * stride, (view.shape[1] - dx) // stride * stride
        if h > 0 and w > 0:
            yield to_tensor(view[dy : dy + h, dx : dx + w])[None]


RATE_PRIOR_ROUNDS = 4
"""Prior fits of a rate-aware run: greedy codes, then three refits under the previous fit's prices
(on BSDS500 val at weight 0.004, each refit lowered the BD-rate further: -4.8%, -6.0%, -6.6%)."""


@torch.no_grad()
def index_statistics(net: VQVAE, files: list[Path], device: torch.device, views: int | None = None,
                     on_image: Callable[[int], None] | None = None, prior: ContextPrior | None = None,
                     rate_weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The data the entropy prior is fitted on, over `views` `prior_views` views of whole images:
    top-row stage-0 code counts (K,), and pair counts (stages, K, K): [0] of (code above, code) in
    stage 0, [s] of (stage s - 1 code, stage s code) at the same cell. Codes are chosen greedily, or
    rate-aware under `prior`'s prices with `rate_weights` when both are given. `on_image(i)` is called
    after the i-th image (from 1), for progress."""
    cfg = net.config
    k = cfg.codebook_size
    top = np.zeros(k, dtype=np.int64)
    pairs = np.zeros((cfg.num_stages, k, k), dtype=np.int64)
    price = None if prior is None or rate_weights is None else pricing.penalty(prior, rate_weights, device)

    def count(s: int, given: np.ndarray, codes: np.ndarray) -> None:
        pairs[s] += np.bincount(given.ravel() * k + codes.ravel(), minlength=k * k).reshape(k, k)

    for i, path in enumerate(files, 1):
        for x in prior_views(read_rgb(path), cfg.stride, views):
            z = net.embed(x.to(device))
            idx = net.quantizer.encode(_to_rows(z), cfg.num_stages, price).reshape(-1, *z.shape[2:]).cpu().numpy()
            top += np.bincount(idx[0, 0], minlength=k)
            count(0, idx[0, :-1], idx[0, 1:])
            for s in range(1, cfg.num_stages):
                count(s, idx[s - 1], idx[s])
        if on_image is not None:
            on_image(i)
    return top, pairs


EARLY_ROUND_VIEWS = 8
"""Views per image of the rounds before the last: they only set the next round's prices, so they
count a quarter of the finest views (a rate-aware fit then costs 1.75 times a greedy one, not 4)."""


def fit_prior(net: VQVAE, files: list[Path], device: torch.device, seed: int = 0, views: int | None = None,
              on_image: Callable[[int], None] | None = None, rate_weights: np.ndarray | None = None,
              rounds: int = 1) -> ContextPrior:
    """The context prior of a trained network, fitted on the index statistics of `files` (`views` views each).

    With `rate_weights`, the first of `rounds` fits counts greedy codes and each further one the codes
    that rate-aware coding chooses under the previous fit's prices, so the tables end up describing the
    codes `compress` will choose with those weights. Rounds before the last count at most
    `EARLY_ROUND_VIEWS` views. `on_image` counts images over all rounds.
    """
    last_views = finest_prior_views(net.config.stride) if views is None else views
    early_views = min(last_views, EARLY_ROUND_VIEWS)

    def fit(r: int, prior: ContextPrior | None) -> ContextPrior:
        progress = None if on_image is None else (lambda i: on_image(r * len(files) + i))
        round_views = last_views if r == rounds - 1 else early_views
        stats = index_statistics(net, files, device, round_views, progress, prior, rate_weights)
        return ContextPrior.fit(*stats, seed=seed)

    prior = fit(0, None)
    for r in range(1, rounds):
        prior = fit(r, prior)
    return prior


def _image_pixels(files: list[Path]) -> int:
    """Total pixels of the images, from their headers."""
    total = 0
    for path in files:
        with Image.open(path) as im:
            total += im.width * im.height
    return total


class QualityScores:
    """PSNR at each of `qualities` over validation crops, and with `msssim` MS-SSIM over the crops large enough
    for it (`grid_shift.PHASE_MIN_SIDE`), of the whole crop (its pooling starts on the code grid) and over the
    phases of its pooling (`grid_shift.phase_ms_ssim`, which no alignment with the grid raises): what the
    validations of every training mode log."""

    def __init__(self, qualities: int, crops: list[torch.Tensor], msssim: bool = True) -> None:
        self.mse, self.msssim, self.phases = np.zeros(qualities), np.zeros(qualities), np.zeros(qualities)
        self.count = len(crops)
        self.large = sum(min(x.shape[-2:]) >= grid_shift.PHASE_MIN_SIDE for x in crops) if msssim else 0

    def add(self, quality: int, y: torch.Tensor, x: torch.Tensor) -> None:
        """Score `y`, the 8-bit rounded reconstruction at `quality` (1-based), of crop `x`."""
        self.mse[quality - 1] += F.mse_loss(y, x).item() / self.count
        if self.large and min(x.shape[-2:]) >= grid_shift.PHASE_MIN_SIDE:
            self.msssim[quality - 1] += ms_ssim(y, x, data_range=1.0).item() / self.large
            self.phases[quality - 1] += grid_shift.phase_ms_ssim(y, x).item() / self.large

    def record(self) -> dict[str, Any]:
        """"val_psnr" per quality, and "val_msssim" and "val_msssim_phases" where any crop was scored for them."""
        out: dict[str, Any] = {"val_psnr": [round(psnr(m), 3) for m in self.mse]}
        if self.large:
            out["val_msssim"] = [round(float(v), 5) for v in self.msssim]
            out["val_msssim_phases"] = [round(float(v), 5) for v in self.phases]
        return out


@torch.no_grad()
def validate(net: VQVAE, images: list[np.ndarray], device: torch.device,
             penalty: Penalty | None = None, loss: str = "mse") -> dict[str, Any]:
    """PSNR and real entropy-coded bpp at every quality on validation images, and for an "ms-ssim" run
    MS-SSIM over the images large enough for it (`QualityScores`).

    The prior is the EMA usage of each code, which tracks the training statistics. Codes are nearest, or
    priced by `penalty` in a `priced` run, so that validation measures the codes that run trains on.
    """
    cfg = net.config
    counts = np.stack([np.rint(s.cluster_size.cpu().numpy() * 100).astype(np.int64) for s in net.quantizer.stages])
    prior = FrequencyPrior.fit(np.maximum(counts, 0))
    bits = np.zeros(cfg.num_stages)
    pixels = 0
    crops = [center_crop_to_stride(img, cfg.stride).to(device) for img in images]
    scores = QualityScores(cfg.num_stages, crops, msssim=loss == "ms-ssim")
    for x in crops:
        idx = net.encode(x, penalty=penalty)
        pixels += x.shape[-1] * x.shape[-2]
        for s in range(cfg.num_stages):
            bits[s] += 8 * len(prior.encode(idx[0, s].cpu().numpy(), s))
            scores.add(s + 1, torch.round(net.decode(idx[:, : s + 1]) * 255) / 255, x)
    cum_bpp = np.cumsum(bits) / pixels
    return {**scores.record(), "val_bpp": [round(float(b), 4) for b in cum_bpp]}


# ---------------------------------------------------------------- the loop


def train(cfg: TrainConfig, on_step: Callable[[dict[str, Any]], None] | None = None) -> VQVAE:
    """Run (or resume) the recipe; rank 0 writes checkpoints, the JSONL log and the model file.

    `on_step` receives each step's metrics (for progress), and events (dicts with "event"):
    `{"event": "phase", "phase": P, "step": ...}` as each phase starts (pretrain, kmeans, train,
    prior; the prior's also names "views", "views_chosen" and "images"), then
    `{"event": "prior", "image": i, "images": n, ...}` after each training image the prior counts
    (the prior fit encodes every view of every image: minutes on a long run). On
    KeyboardInterrupt or SIGTERM a checkpoint is written and the interrupt re-raised.
    Returns the trained network. With `cfg.decoder_only` the run is `decoder_tuning.tune_decoder` instead, with
    `cfg.encoder_only` `encoder_distillation.distill_encoder` (given `encoder_channels`) or
    `encoder_tuning.tune_encoder`.
    """
    if cfg.decoder_only:
        from vqcodec.decoder_tuning import tune_decoder  # it builds on this module

        return tune_decoder(cfg, on_step)
    if cfg.encoder_only and cfg.encoder_channels:
        from vqcodec.encoder_distillation import distill_encoder  # it builds on this module

        return distill_encoder(cfg, on_step)
    if cfg.encoder_only:
        from vqcodec.encoder_tuning import tune_encoder  # it builds on this module

        return tune_encoder(cfg, on_step)
    start_model = load_model(cfg.init) if cfg.init is not None else None
    if start_model is not None:
        cfg.model = _inherit(cfg.model, start_model.config, bool(cfg.encoder_channels))
    cfg.model = replace(cfg.model, distortion=cfg.loss)

    def event(record: dict[str, Any]) -> None:
        if on_step is not None:
            on_step(record)

    device = pick_device(cfg.device)
    rank = _init_distributed(device)
    torch.manual_seed(cfg.seed)
    dataset = CropDataset(cfg.data, crop=cfg.crop, seed=cfg.seed)
    val_images = [read_rgb(p) for p in find_images(cfg.val)[: cfg.val_images]] if cfg.val else []

    net = VQVAE(cfg.model).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    penalty = None
    if cfg.priced and start_model is not None:
        if not start_model.rate_weights.any():
            raise DataError(f"{cfg.init}: --priced needs a model with rate weights (its prior prices nothing)")
        if not cfg.rate_weights:
            cfg.rate_weights = tuple(float(w) for w in start_model.rate_weights[1:])
        penalty = pricing.table_penalty(start_model.prior, start_model.rate_weights, cfg.model.codebook_size, device)
    start, kmeans_done = 0, False
    if cfg.resume is not None:
        state = load_checkpoint(Path(cfg.resume))
        if ModelConfig.from_json(state["config"]) != cfg.model:
            raise DataError(f"{cfg.resume}: checkpoint was trained with another model config")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, kmeans_done = int(state["step"]), bool(state["kmeans_done"])
        torch.set_rng_state(state["torch_rng"])
    elif cfg.init is not None:
        start_from_model(net, cfg.init, start_model)
        kmeans_done = True
    del start_model  # its weights are in `net` (or the checkpoint's are), its prices in `penalty`
    if rank.main:
        cfg.out.parent.mkdir(parents=True, exist_ok=True)
        if cfg.resume is not None:
            truncate_log(cfg.log, start)
        else:
            cfg.log.write_text("")
        write_log(cfg.log, {"step": start, "event": "start", "images": len(dataset),
                             "unreadable": [str(p) for p in dataset.report.unreadable],
                             "smaller_than_crop_padded": dataset.report.smaller_than_crop,
                             "world_size": rank.world, "device": str(device), "precision": cfg.precision,
                             "init": None if cfg.init is None else str(cfg.init),
                             "config": asdict(cfg.model)})

    def loader(begin: int, stop: int, offset: int = 0) -> DataLoader:
        sampler = StepBatchSampler(begin, stop, cfg.batch_size, rank.rank, rank.world, offset)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.workers, worker_init_fn=ignore_stop_signal,
                          persistent_workers=False, pin_memory=device.type == "cuda")

    if cfg.resume is None and cfg.init is None:
        pca_init(net, iter(loader(0, cfg.kmeans_batches, offset=2 * 10**9)), cfg.kmeans_batches, device)
    split = bool(cfg.model.top_decoder_from)  # a step of fewer stages leaves the second decoder unused
    model = DistributedDataParallel(net, broadcast_buffers=False, find_unused_parameters=split) if rank.world > 1 else net

    step = start
    net.train()
    with StopSignals() as stops:
        try:
            for x in stops.batches(loader(start, cfg.steps)):
                if step == cfg.pretrain_steps and not kmeans_done:
                    event({"event": "phase", "phase": "kmeans", "step": step})
                    net.eval()
                    kmeans_init(net, stops.batches(loader(0, cfg.kmeans_batches, offset=10**9)),
                                cfg.kmeans_batches, cfg.seed, device)
                    net.train()
                    kmeans_done = True
                if step in (start, cfg.pretrain_steps):
                    event({"event": "phase", "phase": "pretrain" if step < cfg.pretrain_steps else "train",
                           "step": step})
                metrics = _train_step(model, net, opt, x.to(device, non_blocking=True), step, cfg, penalty)
                step += 1
                if rank.main:
                    if cfg.val and (step % cfg.val_every == 0 or step == cfg.steps) and kmeans_done:
                        net.eval()
                        metrics.update(validate(net, val_images, device, penalty, cfg.loss))
                        net.train()
                    write_log(cfg.log, metrics)
                    if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                        save_checkpoint(cfg.checkpoint, net, opt, step, kmeans_done)
                if on_step is not None:
                    on_step(metrics)
        except KeyboardInterrupt:
            if rank.main:
                save_checkpoint(cfg.checkpoint, net, opt, step, kmeans_done)
                write_log(cfg.log, {"step": step, "event": "interrupted", "checkpoint": str(cfg.checkpoint)})
            raise

    net.eval()
    if rank.main:
        files = dataset.files
        views, chosen = cfg.prior_views, "given"
        if views is None:
            views, chosen = auto_prior_views(cfg.model.stride, _image_pixels(files), cfg.steps, cfg.batch_size,
                                             cfg.crop, rank.world), "auto"
        record = {"step": step, "views": views, "views_chosen": chosen, "images": len(files),
                  "rate_weights": list(cfg.rate_weights), "rounds": cfg.prior_rounds}
        write_log(cfg.log, {"event": "prior", **record})
        event({"event": "phase", "phase": "prior", **record})

        def on_image(i: int) -> None:
            event({"event": "prior", "step": step, "image": i, "images": len(files) * rounds, "views": views})

        rounds = cfg.prior_rounds
        weights = pricing.stage_weights(cfg.model.num_stages, cfg.rate_weights)
        prior = fit_prior(net, files, device, cfg.seed, views, on_image, weights, rounds)
        save_model(net.cpu(), prior, cfg.out, weights)
        write_log(cfg.log, {"step": step, "event": "done", "out": str(cfg.out)})
    if rank.world > 1:
        dist.barrier()
    return net


def joint_distortion(loss: str, recon: torch.Tensor, x: torch.Tensor, mse: torch.Tensor) -> torch.Tensor:
    """The distortion term of a joint step for `loss`, beside the commitment loss: the MSE itself, or for
    "ms-ssim" D = 1 - MS-SSIM scaled by the step's MSE / D (constants in the gradient), MS-SSIM taken on a
    window at a random offset to the code grid (`grid_shift`: on crops aligned to it the model learned errors
    that only aligned pooling hides).

    Its value is the MSE and its gradient MSE times that of log D: the step follows MS-SSIM, at the size the
    recipe's learning rate and commitment weight (beta) were set for on MSE; log D weighs each step's
    quality alike, as `decoder_tuning.loss_of` does."""
    if loss == "mse":
        return mse
    d = 1.0 - grid_shift.shifted_ms_ssim(recon, x)
    return d * (mse / d).detach()


def _train_step(model: torch.nn.Module, net: VQVAE, opt: torch.optim.Optimizer, x: torch.Tensor,
                step: int, cfg: TrainConfig, penalty: Penalty | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    n_stages = stages_at(step, cfg)
    for group in opt.param_groups:
        group["lr"] = lr_at(step, cfg)
    with autocast(cfg, x.device):
        recon, q = model(x, n_stages, penalty)
    recon = recon.float()
    mse = F.mse_loss(recon, x)
    loss = joint_distortion(cfg.loss, recon, x, mse) + q.commitment_loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    metrics: dict[str, Any] = {
        "step": step + 1, "loss": round(loss.item(), 6), "mse": round(mse.item(), 6),
        "psnr": round(psnr(mse.item()), 3), "stages": n_stages, "lr": lr_at(step, cfg),
    }
    if n_stages:
        k = cfg.model.codebook_size
        metrics["perplexity"] = round(perplexity(q.indices[0], k), 2)
        in_use = [float((s.cluster_size > s.dead_threshold).float().mean()) for s in net.quantizer.stages[:n_stages]]
        metrics["codes_in_use"] = round(sum(in_use) / len(in_use), 4)
        if (step + 1) % cfg.restart_every == 0:
            metrics["restarted"] = restart_dead(net, x, n_stages)
    metrics["seconds"] = round(time.perf_counter() - t0, 3)
    return metrics


def write_log(path: Path, record: dict[str, Any]) -> None:
    """Append one record to a run's JSONL log."""
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
