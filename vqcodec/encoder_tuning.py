"""A model's encoder alone trained for its distortion, through its fixed codebooks, prior and decoder
(`vqcodec train --init M --encoder-only --loss L`, without `--encoder-channels`).

The encoder is amortised: one network maps every image to its latents, and `compress` spends a decoder pass
and back per step to move them towards what the decoder reproduces best (`vqcodec.latent_refinement`) at
the qualities that can afford it, not at the default one. A decoder tuned alone on the encoder's codes
(`vqcodec.decoder_tuning`) is one the encoder has never seen. Here the encoder learns, on training crops, at
a stage count drawn per step as the recipe draws it (`train.stages_at`), with codes picked rate-aware under
M's prior and rate weights as `compress` picks them (`pricing.table_penalty`), to minimise the sum of

- the distortion of the decoder's output of the quantized latents (through the quantizer's straight-through
  estimate), as the recipe's joint phase scores it (`train.joint_distortion`: MSE, or MS-SSIM on a window at a
  random offset to the code grid);
- the same of the decoder's output of the latents unquantized, as latent refinement scores them;
- the commitment loss, which holds the latents near their codes.

Everything else stays M's, the network in eval mode (BatchNorm statistics and EMA codebooks fixed), so the new
model writes M's format under M's prior and reads every file M reads.

Chosen on `perceptual` short id 19 (1,200 steps of 8 crops of 192x192, Adam at 1e-4, through `compress` on
BSDS500 val images 17-24, against id 19 at qualities 7 (its default, not refined) and 9): the quantized path
alone bought +0.02 and +0.00 dB of MS-SSIM for 1.3% and 0.1% more bits (its straight-through gradient says
little about codes the latents do not reach); the unquantized path alone, after 600 steps, -0.17 and +0.01 dB
for 1.8% and 0.3% fewer bits; the sum +0.14 and +0.08 dB for 0.25% and 0.10% more bits, and over all 12
qualities -0.79% BD-rate in MS-SSIM (-0.60% over the phases of its pooling; PSNR 0.04-0.15 dB lower).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from vqcodec import pricing
from vqcodec.data import CropDataset, find_images, read_rgb
from vqcodec.decoder_tuning import CompressCodes, validate
from vqcodec.errors import DataError
from vqcodec.model import VQVAE
from vqcodec.pricing import Penalty
from vqcodec.step_loop import begin_log, resume_encoder, run_steps
from vqcodec.train import (TrainConfig, autocast, joint_distortion, lr_at, pick_device, psnr,
                           stages_at, write_log)
from vqcodec.zoo import load_model, save_model


def tune_encoder(cfg: TrainConfig, on_step: Callable[[dict[str, Any]], None] | None = None) -> VQVAE:
    """Train `cfg.init`'s encoder for `cfg.loss` (the model's own distortion) through its fixed quantizer,
    prior and decoder, checkpointing like `train.train`, and write `cfg.out`: the start model with that
    encoder (named `cfg.model.name`). A resumed run must start from the same model. Single process (CPU or
    one GPU)."""
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    start = load_model(cfg.init)
    if cfg.loss != start.config.distortion:
        raise DataError(f"{cfg.init}'s decoder was trained for {start.config.distortion}: its encoder is tuned "
                        f"for the same, give --loss {start.config.distortion}")
    cfg.model = replace(start.config, name=cfg.model.name)
    net = VQVAE(cfg.model).to(device)
    net.load_state_dict(start.net.state_dict())
    net.eval()  # BatchNorm statistics and EMA codebooks stay the start model's, as its files need
    net.requires_grad_(False)
    net.encoder.requires_grad_(True)
    penalty = pricing.table_penalty(start.prior, start.rate_weights, cfg.model.codebook_size, device)
    dataset = CropDataset(cfg.data, crop=cfg.crop, seed=cfg.seed)
    codes = CompressCodes(start, device)
    val_images = [read_rgb(p) for p in find_images(cfg.val)[: cfg.val_images]] if cfg.val else []
    opt = torch.optim.Adam(net.encoder.parameters(), lr=cfg.lr)
    start_id = start.fingerprint.hex()
    step = 0
    if cfg.resume is not None:
        step = resume_encoder(cfg, net, opt, "start", start_id,
                              f"that run was tuning the encoder of another model than {cfg.init}")
    else:
        record: dict[str, Any] = {"step": 0, "event": "start", "mode": "encoder-tuning", "images": len(dataset),
                                  "device": str(device), "init": str(cfg.init), "init_fingerprint": start_id,
                                  "objective": cfg.loss, "precision": cfg.precision}
        if val_images:
            record["start"] = validate(net, codes, val_images, device)
        begin_log(cfg, record)
    step = run_steps(cfg, "encoder", net, opt, dataset, device, step,
                     lambda x, done: _step(net, opt, x, done, cfg, penalty),
                     lambda: validate(net, codes, val_images, device), on_step, {"start": start_id})
    net.eval()
    save_model(net.cpu(), start.prior, cfg.out, start.rate_weights, *start.lineage)
    write_log(cfg.log, {"step": step, "event": "done", "out": str(cfg.out)})
    return net


def _step(net: VQVAE, opt: torch.optim.Optimizer, x: torch.Tensor, step: int, cfg: TrainConfig,
          penalty: Penalty | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    stages = stages_at(step, cfg)
    for group in opt.param_groups:
        group["lr"] = lr_at(step, cfg)
    with autocast(cfg, x.device):
        z = net.embed(x)
        plain = net.reconstruct(z, stages)
        q = net.quantize(z, stages, penalty)
        recon = net.reconstruct(q.quantized, stages)
    mse, plain_mse = F.mse_loss(recon, x), F.mse_loss(plain, x)
    loss = (joint_distortion(cfg.loss, recon, x, mse) + joint_distortion(cfg.loss, plain, x, plain_mse)
            + q.commitment_loss)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"step": step + 1, "loss": round(loss.item(), 6), "mse": round(mse.item(), 6),
            "psnr": round(psnr(mse.item()), 3), "psnr_unquantized": round(psnr(plain_mse.item()), 3),
            "stages": stages, "lr": lr_at(step, cfg),
            "commitment": round(q.commitment_loss.item(), 6), "seconds": round(time.perf_counter() - t0, 3)}

