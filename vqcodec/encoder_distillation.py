"""A narrower encoder distilled from a model's own (`vqcodec train --init M --encoder-only --encoder-channels W`).

`compress` spends about half its time in the encoder network (`docs/benchmarks.md`), most of it in the
convolutions at the two largest scales and the residual blocks. A narrower encoder runs faster; here it
starts from the wide encoder's most important channels (`vqcodec.narrowing`) and learns to reproduce the
wide encoder's latents (mean squared error) on training crops. Codebooks, entropy prior, rate weights and
decoders stay the start model's, so the new model reads every file the start model wrote, and writes the
same streams wherever its latents pick the same codes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from vqcodec.data import CropDataset, find_images, read_rgb
from vqcodec.decoder_tuning import CompressCodes, validate
from vqcodec.errors import DataError
from vqcodec.model import VQVAE, Encoder
from vqcodec.narrowing import narrow_encoder
from vqcodec.step_loop import begin_log, resume_encoder, run_steps
from vqcodec.train import TrainConfig, autocast, lr_at, pick_device, write_log
from vqcodec.zoo import fingerprint, load_model, save_model


def encoder_id(encoder: Encoder) -> str:
    """The fingerprint (`zoo.fingerprint`, hex) of an encoder's weights: which teacher a distillation checkpoint
    was learning."""
    return fingerprint(dict(encoder.state_dict()), "").hex()


def distill_encoder(cfg: TrainConfig, on_step: Callable[[dict[str, Any]], None] | None = None) -> VQVAE:
    """Train an encoder of widths `cfg.model.channels` to reproduce `cfg.init`'s encoder, checkpointing like
    `train.train`, and write `cfg.out`: the start model with that encoder (named `cfg.model.name`), which reads
    the start model's files. A resumed run takes everything but the encoder from `cfg.init`, which must have
    the encoder the run was learning. Single process (CPU or one GPU)."""
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    start = load_model(cfg.init)
    widths = cfg.model.channels
    if len(widths) != len(start.config.channels):
        raise DataError(f"--encoder-channels needs one width per scale of {cfg.init} ({len(start.config.channels)})")
    if widths == start.config.channels:
        raise DataError(f"--encoder-channels {','.join(map(str, widths))} are {cfg.init}'s own widths: "
                        "give narrower ones")
    config = replace(start.config, name=cfg.model.name, channels=widths,
                     decoder_channels=start.config.decoder_widths)
    net = VQVAE(config).to(device)
    net.load_state_dict({k: v for k, v in start.net.state_dict().items() if not k.startswith("encoder.")},
                        strict=False)
    teacher = start.net.encoder.to(device).eval()
    teacher_id = encoder_id(teacher)
    dataset = CropDataset(cfg.data, crop=cfg.crop, seed=cfg.seed)
    codes = CompressCodes(start, device)
    val_images = [read_rgb(p) for p in find_images(cfg.val)[: cfg.val_images]] if cfg.val else []
    net.eval()  # BatchNorm statistics stay those the student started from, as the inference form folds them
    net.requires_grad_(False)
    net.encoder.requires_grad_(True)
    opt = torch.optim.Adam(net.encoder.parameters(), lr=cfg.lr)
    step = 0
    if cfg.resume is not None:
        step = resume_encoder(cfg, net, opt, "teacher", teacher_id,
                              f"that run was learning another encoder than {cfg.init}'s")
    else:
        x = torch.stack([dataset[i] for i in range(min(cfg.batch_size, len(dataset)))]).to(device)
        net.encoder.load_state_dict(narrow_encoder(teacher, config, x).state_dict())
        record: dict[str, Any] = {"step": 0, "event": "start", "mode": "encoder-only", "images": len(dataset),
                                  "device": str(device), "init": str(cfg.init),
                                  "init_fingerprint": start.fingerprint.hex(), "encoder_channels": list(widths),
                                  "precision": cfg.precision}
        if val_images:
            record["teacher"] = validate(start.net.to(device), codes, val_images, device)
        begin_log(cfg, record)
    step = run_steps(cfg, "encoder", net, opt, dataset, device, step,
                     lambda x, done: _step(net, teacher, opt, x, done, cfg),
                     lambda: validate(net, codes, val_images, device), on_step, {"teacher": teacher_id})
    net.eval()
    save_model(net.cpu(), start.prior, cfg.out, start.rate_weights, *start.lineage)
    write_log(cfg.log, {"step": step, "event": "done", "out": str(cfg.out)})
    return net


def _step(net: VQVAE, teacher: Encoder, opt: torch.optim.Optimizer, x: torch.Tensor, step: int,
          cfg: TrainConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    for group in opt.param_groups:
        group["lr"] = lr_at(step, cfg)
    with torch.no_grad():
        target = teacher(x - 0.5)
    with autocast(cfg, x.device):
        student = net.embed(x)
    loss = F.mse_loss(student.float(), target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    snr = 10.0 * torch.log10(target.pow(2).mean() / loss.detach().clamp_min(1e-20)).item()
    return {"step": step + 1, "loss": round(loss.item(), 8), "snr": round(snr, 3), "lr": lr_at(step, cfg),
            "seconds": round(time.perf_counter() - t0, 3)}
