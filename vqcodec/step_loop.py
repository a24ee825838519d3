"""The step loop of the single-process fine-tune modes (`--decoder-only`, `--encoder-only`).

Both modes train part of a start model on training crops for `cfg.steps` steps and share everything
around the step itself: the batches (`StepBatchSampler`, so a resumed run sees the crops an uninterrupted
one would), validation every `cfg.val_every` steps and at the end, one JSONL record per step, checkpoints
every `cfg.checkpoint_every` steps and at the end, and a checkpoint on Ctrl-C or SIGTERM before the
interrupt goes on. The full recipe (`train.train`, with DDP and its phases) keeps its own loop.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from vqcodec.data import StepBatchSampler
from vqcodec.errors import DataError
from vqcodec.model import VQVAE
from vqcodec.stopping import StopSignals, ignore_stop_signal
from vqcodec.train import TrainConfig, load_checkpoint, save_checkpoint, truncate_log, write_log

Step = Callable[[Any, int], dict[str, Any]]
"""One optimisation step: (batch on the device, steps done before it) -> its log record. A batch is what the
dataset's items collate to: a tensor of crops, or a tuple of tensors (`vqcodec.coded_windows`)."""


def _to(batch: torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor],
        device: torch.device) -> torch.Tensor | tuple[torch.Tensor, ...]:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    return tuple(t.to(device, non_blocking=True) for t in batch)


def run_steps(cfg: TrainConfig, phase: str, net: VQVAE, opt: torch.optim.Optimizer, dataset: Dataset,
              device: torch.device, first: int, step: Step, validate: Callable[[], dict[str, Any]],
              on_step: Callable[[dict[str, Any]], None] | None = None,
              extra: dict[str, Any] | None = None) -> int:
    """Run steps `first`..`cfg.steps` of a fine-tune's `phase`, validating, logging and checkpointing (`extra`
    goes into every checkpoint); returns the steps done. `validate` gives the validation entries of a record
    and is called only when `cfg.val` is set; `on_step` gets the phase's start, then every step's record."""
    if on_step is not None:
        on_step({"event": "phase", "phase": phase, "step": first})
    sampler = StepBatchSampler(first, cfg.steps, cfg.batch_size)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.workers, worker_init_fn=ignore_stop_signal,
                        pin_memory=device.type == "cuda")
    done = first
    with StopSignals() as stops:
        try:
            for batch in stops.batches(loader):
                metrics = step(_to(batch, device), done)
                done += 1
                if cfg.val and (done % cfg.val_every == 0 or done == cfg.steps):
                    metrics.update(validate())
                write_log(cfg.log, metrics)
                if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                    save_checkpoint(cfg.checkpoint, net, opt, done, True, extra)
                if on_step is not None:
                    on_step(metrics)
        except KeyboardInterrupt:
            save_checkpoint(cfg.checkpoint, net, opt, done, True, extra)
            write_log(cfg.log, {"step": done, "event": "interrupted", "checkpoint": str(cfg.checkpoint)})
            raise
    return done


def resume_encoder(cfg: TrainConfig, net: VQVAE, opt: torch.optim.Optimizer, key: str, expected: str,
                   refusal: str) -> int:
    """Load the encoder and optimizer of `cfg.resume`, a checkpoint of a run that trains `net`'s encoder alone
    (`--encoder-only`), and cut the log back to its step, which is returned; the checkpoint's `key` (its `extra`)
    must be `expected`, else `refusal` is raised as a `DataError` (the run was learning for another model)."""
    state = load_checkpoint(Path(cfg.resume))
    if state.get(key) != expected:
        raise DataError(f"{cfg.resume}: {refusal}")
    net.encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in state["model"].items()
                                 if k.startswith("encoder.")})
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    step = int(state["step"])
    truncate_log(cfg.log, step)
    return step


def begin_log(cfg: TrainConfig, record: dict[str, Any]) -> None:
    """Start a fresh run's JSONL log (its folder made, the output's too) with its first `record`."""
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.log.write_text("")
    write_log(cfg.log, record)
