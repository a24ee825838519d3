"""`vqcodec train`: the CLI face of `vqcodec.train`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .console import err_console


def train(
    data: Annotated[Path, typer.Option("--data", help="Folder of training photos (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (.safetensors).")] = Path("model.safetensors"),
    val: Annotated[Optional[Path], typer.Option("--val", help="Folder of validation photos: PSNR and real bpp every --val-every steps.")] = None,
    steps: Annotated[int, typer.Option(help="Total optimisation steps, pretraining included.")] = 2000,
    pretrain_steps: Annotated[Optional[int], typer.Option(help="Steps of autoencoder pretraining before quantization; default: a tenth of --steps.", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(help="Crops per step (per process under torchrun).")] = 8,
    crop: Annotated[int, typer.Option(help="Side of the square training crops, in pixels.")] = 256,
    lr: Annotated[float, typer.Option(help="Peak Adam learning rate (warm-up, then cosine decay).")] = 5e-4,
    name: Annotated[str, typer.Option(help="Model name recorded in the file and in every .vqz it writes.")] = "custom",
    stages: Annotated[int, typer.Option(help="Residual quantizer stages = number of qualities.")] = 8,
    codebook_size: Annotated[int, typer.Option(help="Codes per stage (K).")] = 512,
    latent_dim: Annotated[int, typer.Option(help="Dimension of each code (D).")] = 64,
    val_every: Annotated[int, typer.Option(help="Validate every N steps.")] = 250,
    checkpoint_every: Annotated[int, typer.Option(help="Write a checkpoint every N steps.")] = 100,
    resume: Annotated[Optional[Path], typer.Option(help="Continue from this checkpoint (written beside --out as .ckpt).")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Fine-tune: start from this model file (a shipped name or a path) instead of the transform and codebook initialisations; pretraining then defaults to 0 steps.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of every random choice in the run.")] = 0,
) -> None:
    """Train a model on a folder of photos with the seed's recipe, and write a model file.

    Pretraining, k-means codebook initialisation, joint training with EMA codebooks,
    then the entropy prior is fitted on the training images. Writes OUT, OUT with
    .ckpt (checkpoint) and .jsonl (metrics per step). Runs under torchrun too.

    Example: vqcodec train --data photos/ --val val/ --steps 200 --out m.safetensors
    """
    from vqcodec.model import ModelConfig  # here, so other commands start without torch
    from vqcodec.train import TrainConfig, train as run_training

    model = ModelConfig(name=name, num_stages=stages, codebook_size=codebook_size, latent_dim=latent_dim,
                        description=f"trained by vqcodec train on {data}")
    try:
        cfg = TrainConfig(data=data, out=out, val=val, model=model, steps=steps, pretrain_steps=pretrain_steps,
                          batch_size=batch_size, crop=crop, lr=lr, val_every=val_every,
                          checkpoint_every=checkpoint_every, resume=resume, init=init, device=device, workers=workers, seed=seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    columns = [TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task("train", total=steps, info="", completed=0)

        def on_step(m: dict[str, Any]) -> None:
            if m.get("event") == "prior":
                progress.update(task, info="fitting the entropy prior on the training images")
                return
            info = f"loss {m['loss']:.4f} psnr {m['psnr']:.2f}"
            if "perplexity" in m:
                info += f" ppl {m['perplexity']:.0f} used {m['codes_in_use']:.0%} q{m['stages']}"
            if "val_psnr" in m:
                info += f" | val {m['val_psnr'][-1]:.2f} dB @ {m['val_bpp'][-1]:.3f} bpp"
            progress.update(task, completed=m["step"], info=info)

        try:
            run_training(cfg, on_step=on_step)
        except KeyboardInterrupt:
            err_console.print(f"interrupted: checkpoint written to {cfg.checkpoint}; "
                              f"continue with --resume {cfg.checkpoint}")
            raise typer.Exit(130) from None
    err_console.print(f"wrote {out} (metrics in {cfg.log})")
