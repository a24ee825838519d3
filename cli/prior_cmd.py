"""`vqcodec fit-prior`: the CLI face of `vqcodec.entropy.fitting.fit_learned_prior`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .console import err_console


def fit_prior(
    model: Annotated[str, typer.Argument(help="Trained model: a shipped name or a model file.")],
    data: Annotated[Path, typer.Option("--data", help="Folder of training photos (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write: the same network with the learned prior.")],
    val: Annotated[Optional[Path], typer.Option("--val", help="Folder of validation photos: bits per cell of every stage, learned against the model's own prior, written to OUT.json.")] = None,
    steps: Annotated[int, typer.Option(help="Training steps of the context network.")] = 1500,
    views: Annotated[int, typer.Option(help="Grid-offset views encoded per training image (1 to 32): more views, fuller tables, longer run.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of every random choice in the run.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
) -> None:
    """Fit a learned context prior for a trained model and write the model with it.

    Encodes VIEWS views of every training photo, trains the integer context network on
    the index grids (which later stages' codes to expect, from the earlier stages and the
    neighbours already decoded), counts its contexts' tables, and writes OUT: the same
    network weights with the new prior. Progress goes to stderr, one line at a time.

    Example: vqcodec fit-prior default --data bsds500/train --val bsds500/val --out m.safetensors
    """

    from vqcodec.data import find_images
    from vqcodec.entropy.fitting import FitConfig, bits_per_stage, fit_learned_prior, index_grids
    from vqcodec.errors import DataError, OutputError
    from vqcodec.zoo import load_model, save_model

    if not 1 <= views <= 32:
        raise typer.BadParameter("--views must be 1..32")
    if steps < 1:
        raise typer.BadParameter("--steps must be at least 1")
    if out.exists() and not force:
        raise OutputError(f"{out} exists (add --force to replace it)")
    base = load_model(model)
    files = find_images(data)
    if not files:
        raise DataError(f"{data}: no readable images")
    start = time.time()

    def say(event: dict[str, Any]) -> None:
        step = event.get("step")
        if event.get("phase") == "network" and step is not None and step % 50 and step != steps:
            return
        if event.get("phase") == "grids" and "done" in event and event["done"] % 20 and event["done"] != len(files):
            return
        fields = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in event.items() if k != "phase")
        err_console.print(f"[{time.time() - start:7.0f}s] {event['phase']}: {fields}", markup=False, highlight=False)
        sys.stderr.flush()

    prior = fit_learned_prior(base.net, files, FitConfig(steps=steps, seed=seed), views=views, on_event=say)
    save_model(base.net, prior, out)
    report: dict[str, Any] = {"model": model, "data": str(data), "views": views, "steps": steps,
                              "seconds": round(time.time() - start, 1)}
    if val is not None:
        grids = index_grids(base.net, find_images(val), 1)
        report["val_bits_per_stage"] = {"learned": bits_per_stage(prior, grids).round(4).tolist(),
                                        "before": bits_per_stage(base.prior, grids).round(4).tolist()}
        say({"phase": "validation", **{k: sum(v) for k, v in report["val_bits_per_stage"].items()}})
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    err_console.print(f"wrote {out} (report in {out.with_suffix('.json')})", markup=False, highlight=False)
