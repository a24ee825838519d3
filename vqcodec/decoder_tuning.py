"""Decoder fine-tuning on the codes `compress` writes (`vqcodec train --init M --decoder-only`).

The recipe in `vqcodec.train` trains the decoder on nearest-neighbour codes of a random number of
stages. `compress` codes differently: from stage 2 on it picks cheap codes under the prior's
prices (`vqcodec.pricing`), so flat regions keep coarse latents while detailed ones get every
stage, and qualities above the stage count code every stage at lighter prices. The decoder never
saw those latents. Here the encoder, the codebooks and the entropy prior stay exactly as in the
model the run starts from, so a file written by that model decodes with the tuned one (see
`zoo.CodecModel.decodes`), and with the same rate weights every code stream is the same; only the decoder
learns, on the latents of a random `compress` quality each step. The loss is log MSE (PSNR) or
log(1 - MS-SSIM) (MS-SSIM in dB, the perceptual model).

One decoder trained on every quality trades the low qualities for the top: on BSDS500 val a
fine-tune on all 22 qualities of `default` gained up to 1 dB at the top and lost up to 0.1 dB at
qualities 1-8. With `top_decoder_from` Q the run trains a second decoder on qualities Q and up
only (`ModelConfig.top_decoder_from`) and keeps the start model's decoder for those below; that
second decoder may be wider than the start model's (`ModelConfig.top_decoder_channels`, started as
the same function by `vqcodec.widening`), since the top qualities carry detail a narrow decoder
cannot reproduce while the default quality keeps the fast first decoder.

With `cached_codes` the training images are coded once, whole, and the steps train on windows of
those codes (`vqcodec.coded_windows`) instead of coding each step's crops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vqcodec import codec, grid_shift, pricing
from vqcodec.coded_windows import CodedWindows
from vqcodec.data import CropDataset, find_images, read_rgb
from vqcodec.effort import EFFORT_BEAMS, check_effort, effort_for
from vqcodec.errors import DataError
from vqcodec.model import VQVAE, _from_rows, _to_rows
from vqcodec.narrowing import narrow_decoder
from vqcodec.step_loop import begin_log, run_steps
from vqcodec.train import (QualityScores, TrainConfig, autocast, center_crop_to_stride, load_checkpoint, lr_at,
                           pick_device, psnr, truncate_log, write_log)
from vqcodec.widening import widen_decoder
from vqcodec.zoo import CodecModel, load_model, save_model


def loss_of(name: str, recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The training loss `name` of a reconstruction (unclamped) against its target, both in [0, 1] units.

    MS-SSIM is taken on a window at a random offset to the code grid (`grid_shift.shifted_ms_ssim`), as the
    joint recipe's is (`train.joint_distortion`): a decoder tuned on windows whose pooling starts on the grid
    learns errors that only such windows hide. In the logarithm: log MSE is -PSNR / (10 log10 e),
    log(1 - MS-SSIM) likewise MS-SSIM in dB, so a step at quality 1 weighs as much as a step at quality 10.
    (On plain MSE the low qualities' errors, several times larger, steered the decoder: after 500 steps on
    BSDS500 val, quality 1 had gained 0.08 dB and quality 10 lost 0.11 dB.)
    """
    if name == "mse":
        return torch.log(F.mse_loss(recon, x))
    return torch.log(1.0 - grid_shift.shifted_ms_ssim(recon, x))


class CompressCodes:
    """Quantized latents as `compress` makes them at each coding level (`codec.coding_levels`: 1..S stages,
    then the lighter-priced top; a level's number is its stage count up to S): the start model's prior, its
    rate weights (or others given) and an encoder effort (default: `compress`'s for a model of `distortion`, the
    trained model's, by default the start model's), applied to a network whose encoder and codebooks are
    frozen. Reduced qualities code a shrunk image at one of these levels. The latents are the encoder's own:
    where `compress` refines them first (`vqcodec.latent_refinement`, by default from 16 stages for an MSE
    model) these are the codes of `compress(refine_steps=0)`; refining every training crop against the decoder
    being trained would cost a decoder pass and back per refinement step."""

    def __init__(self, start: CodecModel, device: torch.device, rate_weights: np.ndarray | None = None,
                 effort: int | None = None, distortion: str | None = None) -> None:
        self.prior = start.prior
        self.distortion = distortion or start.config.distortion
        self.rate_weights = start.rate_weights if rate_weights is None else rate_weights
        self.levels = codec.coding_levels(replace(start, rate_weights=self.rate_weights))
        self.effort = check_effort(effort)
        self.device = device

    @torch.no_grad()
    def indices(self, net: VQVAE, x: torch.Tensor, quality: int) -> tuple[torch.Tensor, torch.Size]:
        """The codes (S, B * h * w) of images `x` coded at level `quality` (from 1), and the latents' shape."""
        stages, scale, _ = self.levels[quality - 1]
        z = net.embed(x)
        price = pricing.penalty(self.prior, self.rate_weights[:stages] * scale, self.device)
        beam = EFFORT_BEAMS[effort_for(self.effort, stages, self.distortion)]
        return net.quantizer.encode(_to_rows(z), stages, price, beam), z.shape

    @torch.no_grad()
    def latents(self, net: VQVAE, x: torch.Tensor, quality: int) -> torch.Tensor:
        """The decoder's input (B, D, h, w) for images `x` coded at level `quality` (from 1)."""
        idx, shape = self.indices(net, x, quality)
        return _from_rows(net.quantizer.decode(idx), shape)

    def grids(self, net: VQVAE, x: torch.Tensor, quality: int) -> torch.Tensor:
        """The index grids (S, h, w) of one image `x` (1, 3, H, W) coded at level `quality`."""
        idx, (_, _, h, w) = self.indices(net, x, quality)
        return idx.reshape(idx.shape[0], h, w)


def quality_at(step: int, seed: int, qualities: int, lowest: int = 1) -> int:
    """The `compress` quality trained at `step`, uniform over `lowest`..`qualities`, seeded by (seed, step)."""
    return int(np.random.default_rng([seed, step, 3]).integers(lowest, qualities + 1))


@torch.no_grad()
def validate(net: VQVAE, codes: CompressCodes, images: list[np.ndarray], device: torch.device) -> dict[str, Any]:
    """PSNR at every `compress` quality on validation images (8-bit rounded reconstructions), and MS-SSIM
    over those images large enough for it (`train.QualityScores`; absent when none is)."""
    n = len(codes.levels)
    crops = [center_crop_to_stride(img, net.config.stride).to(device) for img in images]
    scores = QualityScores(n, crops)
    for x in crops:
        for q in range(1, n + 1):
            latents = codes.latents(net, x, q)
            scores.add(q, torch.round(net.reconstruct(latents, codes.levels[q - 1][0]).clamp(0, 1) * 255) / 255, x)
    return scores.record()


def _freeze_all_but(net: VQVAE, decoder: torch.nn.Module) -> None:
    """Only `decoder`'s weights learn. The whole network stays in eval mode: EMA codebooks and every
    BatchNorm's statistics stay fixed, as the tuned decoder's inference form uses them."""
    net.eval()
    net.requires_grad_(False)
    decoder.requires_grad_(True)


def _top_split(cfg: TrainConfig, start: CodecModel) -> int:
    """The run's `top_decoder_from`: the asked one, which a start model with a top decoder must share."""
    split, own = cfg.top_decoder_from, start.config.top_decoder_from
    if own and split != own:
        raise DataError(f"{cfg.init} decodes qualities {own} and up with a second decoder: train that one with "
                        f"--top-decoder-from {own}")
    if split > start.config.num_stages:
        raise DataError(f"--top-decoder-from {split}: {cfg.init} has {start.config.num_stages} stages")
    if split and cfg.model.decoder_channels and cfg.model.decoder_channels != start.config.decoder_widths:
        raise DataError("a run that trains a top decoder keeps --init's first decoder: leave --decoder-channels "
                        "out (--top-decoder-channels sets the top decoder's widths)")
    return split


def _full_res_width(cfg: TrainConfig, start: CodecModel) -> int:
    """The run's `full_res_channels`: the asked width, or `start`'s; a stage `start` has keeps its width, and a
    new one needs the start model's decoder widths (narrowing and widening know no such stage)."""
    asked, own = cfg.model.full_res_channels, start.config.full_res_channels
    if own and asked and asked != own:
        raise DataError(f"{cfg.init} has a full-resolution stage of {own} channels: leave --full-res-channels out "
                        f"or give {own}")
    width = asked or own
    reshaped = (cfg.model.decoder_channels and cfg.model.decoder_channels != start.config.decoder_widths) \
        or cfg.top_decoder_channels
    if width and reshaped:
        raise DataError("a decoder with a full-resolution stage keeps --init's widths: leave --decoder-channels "
                        "and --top-decoder-channels out")
    return width


def _load_start(net: VQVAE, start: CodecModel) -> None:
    """`start`'s weights into `net`; a top decoder `start` lacks begins as a copy of its decoder, and a top
    decoder wider than `start`'s as the same function (`vqcodec.widening`). A full-resolution stage `start`
    lacks keeps its initialisation, whose last layer is zero: `net` starts as `start`'s function."""
    state = {k: v for k, v in start.net.state_dict().items() if not k.startswith("top_decoder.")}
    if not net.config.top_decoder_from:
        keys = net.load_state_dict(state, strict=False)
        stray = [k for k in keys.missing_keys if ".full_res." not in k] + list(keys.unexpected_keys)
        if stray:
            raise DataError(f"{start.name}'s weights do not fit the decoder trained ({', '.join(stray)[:200]})")
        return
    source = start.net.top_decoder if start.config.top_decoder_from else start.net.decoder
    net.load_state_dict(state, strict=False)
    try:
        top = widen_decoder(source, replace(net.config, decoder_channels=net.config.top_decoder_widths))
    except ValueError as exc:
        raise DataError(f"--top-decoder-channels: {exc} (a top decoder can only be widened)") from None
    net.top_decoder.load_state_dict(top.state_dict())


def _decoder_from(decoder: torch.nn.Module, path: Path, start: CodecModel, stages: int) -> None:
    """Start `decoder` from the decoder that model file `path` uses for `stages` stages; that model must read
    `start`'s streams (it is a decoder fine-tune of it), and its decoder must have the same widths."""
    source = load_model(path)
    if not source.reads(start.fingerprint):
        raise DataError(f"--decoder-from {path}: that model does not read {start.name}'s streams "
                        "(it is not a decoder fine-tune of --init)")
    try:
        decoder.load_state_dict(source.net.decoder_for(stages).state_dict())
    except RuntimeError:
        raise DataError(f"--decoder-from {path}: its decoder has other widths than the one trained") from None


def tune_decoder(cfg: TrainConfig, on_step: Callable[[dict[str, Any]], None] | None = None) -> VQVAE:
    """Fine-tune the decoder of `cfg.init` on `compress`'s codes (`cfg.loss`), checkpointing like `train.train`;
    writes `cfg.out` with the start model's prior and its rate weights, or `cfg.rate_weights` when given (the
    prior is unchanged, so the streams of any weights stay readable). The model is named `cfg.model.name` and
    declares the loss it was tuned for as its `distortion` (what `compress` refines its latents for); the rest
    of its config is the start model's. Single process (CPU or one GPU)."""
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    start_model = load_model(cfg.init)
    split = _top_split(cfg, start_model)
    widths = cfg.model.decoder_channels or start_model.config.decoder_channels
    full_res = _full_res_width(cfg, start_model)
    net = VQVAE(replace(start_model.config, name=cfg.model.name, decoder_channels=widths, top_decoder_from=split,
                        top_decoder_channels=cfg.top_decoder_channels or start_model.config.top_decoder_channels,
                        float16_weights=cfg.model.float16_weights or start_model.config.float16_weights,
                        full_res_channels=full_res, distortion=cfg.loss)).to(device)
    weights = pricing.stage_weights(start_model.config.num_stages, cfg.rate_weights) if cfg.rate_weights else None
    codes = CompressCodes(start_model, device, weights, cfg.effort, cfg.loss)
    dataset = CropDataset(cfg.data, crop=cfg.crop, seed=cfg.seed)
    if net.config.decoder_widths == start_model.config.decoder_widths:
        _load_start(net, start_model)
    else:
        _start_narrow(net, start_model, codes, dataset, cfg.batch_size, device)
    lowest = max(split, 1)
    trained = net.decoder_for(lowest)
    if cfg.decoder_from is not None:
        _decoder_from(trained, Path(cfg.decoder_from), start_model, lowest)
    _freeze_all_but(net, trained)
    opt = torch.optim.Adam(trained.parameters(), lr=cfg.lr)
    val_images = [read_rgb(p) for p in find_images(cfg.val)[: cfg.val_images]] if cfg.val else []
    step = 0
    if cfg.resume is not None:
        state = load_checkpoint(Path(cfg.resume))
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        truncate_log(cfg.log, step)
    else:
        begin_log(cfg, {"step": 0, "event": "start", "mode": "decoder-only", "objective": cfg.loss,
                        "images": len(dataset), "device": str(device), "precision": cfg.precision,
                        "init": str(cfg.init),
                        "init_fingerprint": start_model.fingerprint.hex(), "qualities": len(codes.levels),
                        "rate_weights": codes.rate_weights.tolist(), "effort": cfg.effort,
                        "decoder_channels": list(net.config.decoder_widths), "top_decoder_from": split,
                        "top_decoder_channels": list(net.config.top_decoder_widths) if split else None,
                        "decoder_from": None if cfg.decoder_from is None else str(cfg.decoder_from),
                        "cached_codes": cfg.cached_codes, "float16_weights": net.config.float16_weights,
                        "full_res_channels": full_res})
    windows = _coded_windows(cfg, net, codes, dataset, lowest, device, on_step) if cfg.cached_codes else None
    if windows is None:
        step = run_steps(cfg, "decoder", net, opt, dataset, device, step,
                         lambda x, done: _step(net, opt, codes, x, done, cfg, lowest),
                         lambda: validate(net, codes, val_images, device), on_step)
    else:
        step = run_steps(cfg, "decoder", net, opt, windows, device, step,
                         lambda batch, done: _window_step(net, opt, windows, batch, done, cfg, lowest),
                         lambda: validate(net, codes, val_images, device), on_step)
    net.eval()
    save_model(net.cpu(), start_model.prior, cfg.out, codes.rate_weights, *start_model.lineage)
    write_log(cfg.log, {"step": step, "event": "done", "out": str(cfg.out)})
    return net


def _start_narrow(net: VQVAE, start: CodecModel, codes: CompressCodes, dataset: CropDataset, crops: int,
                  device: torch.device) -> None:
    """`net` = `start` with a narrower decoder (`vqcodec.narrowing`) whose channels are ranked on the latents
    of the first `crops` training crops at every `compress` quality."""
    own = {k: v for k, v in start.net.state_dict().items() if not k.startswith("decoder.")}
    net.load_state_dict(own, strict=False)
    net.eval()  # the encoder's BatchNorm statistics must stay the start model's
    x = torch.stack([dataset[i] for i in range(min(crops, len(dataset)))]).to(device)
    latents = torch.cat([codes.latents(net, x, q) for q in range(1, len(codes.levels) + 1)])
    narrow = narrow_decoder(start.net.decoder.to(device), net.config, latents)
    net.decoder.load_state_dict(narrow.state_dict())


def _coded_windows(cfg: TrainConfig, net: VQVAE, codes: CompressCodes, dataset: CropDataset, lowest: int,
                   device: torch.device, on_step: Callable[[dict[str, Any]], None] | None) -> CodedWindows:
    """The training images coded once each at `cfg.cached_codes` of the qualities from `lowest` up."""
    if on_step is not None:
        on_step({"event": "phase", "phase": "coding", "step": 0, "images": len(dataset)})
    t0 = time.perf_counter()

    def coded(i: int, n: int) -> None:
        if on_step is not None:
            on_step({"event": "coding", "image": i, "images": n})

    windows = CodedWindows([dataset.pixels(i) for i in range(len(dataset))], net,
                           lambda x, q: codes.grids(net, x.to(device), q), list(range(lowest, len(codes.levels) + 1)),
                           cfg.cached_codes, cfg.crop, cfg.batch_size, cfg.seed, coded)
    write_log(cfg.log, {"step": 0, "event": "coded", "images": len(dataset), "windows_from": len(windows),
                        "qualities_per_image": cfg.cached_codes, "seconds": round(time.perf_counter() - t0, 1)})
    return windows


def _window_step(net: VQVAE, opt: torch.optim.Optimizer, windows: CodedWindows,
                 batch: tuple[torch.Tensor, torch.Tensor], step: int, cfg: TrainConfig, lowest: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    latents, x = batch
    with autocast(cfg, x.device):
        recon = windows.scored(net.reconstruct(latents, lowest))
    return _learn(opt, recon, x, step, cfg, t0)


def _step(net: VQVAE, opt: torch.optim.Optimizer, codes: CompressCodes, x: torch.Tensor, step: int,
          cfg: TrainConfig, lowest: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    quality = quality_at(step, cfg.seed, len(codes.levels), lowest)
    stages = codes.levels[quality - 1][0]
    latents = codes.latents(net, x, quality)
    with autocast(cfg, x.device):
        recon = net.reconstruct(latents, stages)
    record = _learn(opt, recon, x, step, cfg, t0)
    return {**record, "quality": quality, "stages": stages}


def _learn(opt: torch.optim.Optimizer, recon: torch.Tensor, x: torch.Tensor, step: int, cfg: TrainConfig,
           t0: float) -> dict[str, Any]:
    """One optimiser step (at the schedule's rate) on the loss of `recon` against `x`; its log record."""
    for group in opt.param_groups:
        group["lr"] = lr_at(step, cfg)
    loss = loss_of(cfg.loss, recon, x)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    mse = F.mse_loss(recon.detach(), x).item()
    return {"step": step + 1, "loss": round(loss.item(), 6), "mse": round(mse, 6), "psnr": round(psnr(mse), 3),
            "lr": lr_at(step, cfg), "seconds": round(time.perf_counter() - t0, 3)}
