"""`vqcodec add-stages`: the CLI face of `vqcodec.stage_extension.extend_stages`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .console import PlainLines, err_console

PLAIN_LINES_PER_PHASE = 10
"""Progress lines while the residuals are computed and while the tables are counted (plus one a minute)."""


def add_stages(
    model: Annotated[str, typer.Argument(help="Trained model: a shipped name or a model file.")],
    data: Annotated[Path, typer.Option("--data", help="Folder of training photos (searched recursively).")],
    stages: Annotated[int, typer.Option("--stages", help="Residual stages of the new model in all: more than MODEL has.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write.")],
    rate_weight: Annotated[float, typer.Option(help="Rate-aware coding weight of every new stage (squared latent error + weight x bits in context); 0: nearest code.")] = 0.001,
    views: Annotated[int, typer.Option(help="Views of each photo the new codebooks are fitted on (1, 2, 8 or 32 at stride 8).")] = 2,
    count_views: Annotated[int, typer.Option(help="Views of each photo the new stages' prior tables are counted on.")] = 32,
    rounds: Annotated[int, typer.Option(help="Entropy-constrained k-means rounds per new codebook after plain k-means.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of every random choice in the run.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
) -> None:
    """Append residual stages to a trained model, for qualities above its top.

    Fits each new stage's codebook to what the model's stages leave of the latents of the
    training photos (k-means, then entropy-constrained rounds at RATE_WEIGHT), then counts the
    new stages' prior tables. The existing stages, their prior and the decoder are kept
    exactly, so OUT reads every file MODEL wrote and keeps its default quality; its qualities
    run from 1 to STAGES (plus the lighter-priced ones above). Progress goes to stderr; a
    report of the run goes to OUT.json.

    Example: vqcodec add-stages default --data bsds500/train --stages 16 --out m.safetensors
    """

    from vqcodec.data import find_images
    from vqcodec.errors import DataError, OutputError
    from vqcodec.stage_extension import extend_stages
    from vqcodec.train import prior_view_choices
    from vqcodec.zoo import load_model, save_model

    if out.exists() and not force:
        raise OutputError(f"{out} exists (add --force to replace it)")
    if rounds < 0:
        raise typer.BadParameter("--rounds must be 0 or more")
    base = load_model(model)
    choices = prior_view_choices(base.config.stride)
    for name, value in (("--views", views), ("--count-views", count_views)):
        if value not in choices:
            raise typer.BadParameter(f"{name} must be one of {', '.join(map(str, choices))} for this model")
    files = find_images(data)
    if not files:
        raise DataError(f"{data}: no readable images")
    start = time.time()
    lines = PlainLines(PLAIN_LINES_PER_PHASE)

    def say(event: dict[str, Any]) -> None:
        if "done" in event:
            if not lines.due(event["done"], event["total"]):
                return
            fields = f"done {event['done']}/{event['total']}"
        else:
            fields = " ".join(f"{k} {v}" for k, v in event.items() if k != "phase")
        err_console.print(f"[{time.time() - start:7.0f}s] {event['phase']}: {fields}", markup=False, highlight=False)
        sys.stderr.flush()

    ext = extend_stages(base, files, stages, rate_weight, views, count_views, rounds, seed, say)
    fingerprint = save_model(ext.net, ext.prior, out, ext.rate_weights, ext.decodes, ext.decodes_prior,
                             ext.own_prior_decodes)
    report = {"model": model, "data": str(data), "stages": stages, "rate_weight": rate_weight, "views": views,
              "count_views": count_views, "rounds": rounds, "seed": seed, "fingerprint": fingerprint.hex(),
              "seconds": round(time.time() - start, 1), **ext.report}
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    err_console.print(f"wrote {out} (report in {out.with_suffix('.json')})", markup=False, highlight=False)
