"""`vqcodec fit-prior`: the CLI face of `vqcodec.train.fit_prior` (count prior, rate-aware coding) and
`vqcodec.entropy.fitting.fit_learned_prior` (learned prior)."""

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
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write: the same network with the new prior.")],
    val: Annotated[Optional[Path], typer.Option("--val", help="Learned prior: folder of validation photos; bits per cell of every stage (greedy codes), learned against the model's own prior, written to OUT.json.")] = None,
    rate_weights: Annotated[str, typer.Option(help="Count prior: rate-aware coding weights of stages 2..S (squared latent error + weight x bits in context), one for all or comma-separated, one per stage; the prior is counted on the codes they pick and compress uses them. Empty: nearest code.")] = "",
    rounds: Annotated[Optional[int], typer.Option(help="Count prior: fits, the first on greedy codes, each further one on the codes picked under the previous fit. Default: 1 without --rate-weights, else 4.", show_default=False)] = None,
    learned: Annotated[bool, typer.Option("--learned", help="Fit a learned prior (integer context network) instead of a count prior.")] = False,
    steps: Annotated[int, typer.Option(help="Learned prior: training steps of the context network.")] = 1500,
    views: Annotated[Optional[int], typer.Option(help="Grid-offset views encoded per training image: 1, 2, 8 or 32 for a count prior at stride 8 (default: the finest, 32), 1 to 32 for a learned one (default 16). More views, fuller tables, longer run.", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice in the run.")] = 0,
    keep_reading: Annotated[bool, typer.Option("--keep-reading", help="OUT also decodes the files MODEL wrote (and those MODEL reads): MODEL's prior is stored beside the new one, which adds its size to OUT.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
) -> None:
    """Fit a new entropy prior for a trained model and write the model with it.

    Count prior (the default): encodes VIEWS shifted and mirrored views of every training
    photo and counts which code follows which. With --rate-weights, later rounds encode
    rate-aware under the previous round's prices, so the tables match the codes compress
    will choose; the weights are stored in OUT. Learned prior (--learned): trains the integer
    context network on the index grids, then counts its contexts' tables. OUT writes other
    streams than MODEL; with --keep-reading it still decodes MODEL's files.
    Progress goes to stderr, one line at a time.

    Example: vqcodec fit-prior default --data bsds500/train --rate-weights 0.004 --out m.safetensors
    """

    from vqcodec.data import find_images
    from vqcodec.entropy.fitting import FitConfig, bits_per_stage, fit_learned_prior, index_grids
    from vqcodec.errors import DataError, OutputError
    from vqcodec.train import RATE_PRIOR_ROUNDS, finest_prior_views, fit_prior as fit_counts, prior_view_choices
    from vqcodec.zoo import load_model, save_model
    from vqcodec import pricing

    if learned and views is None:
        views = 16
    if learned and not 1 <= views <= 32:
        raise typer.BadParameter("--views must be 1..32 for a learned prior")
    if steps < 1:
        raise typer.BadParameter("--steps must be at least 1")
    if learned and (rate_weights or rounds is not None):
        raise typer.BadParameter("--rate-weights and --rounds apply to a count prior, not --learned")
    if val is not None and not learned:
        raise typer.BadParameter("--val applies to --learned (compare count priors with vqcodec bench)")
    if rounds is not None and rounds < 1:
        raise typer.BadParameter("--rounds must be at least 1")
    if out.exists() and not force:
        raise OutputError(f"{out} exists (add --force to replace it)")
    base = load_model(model)
    if keep_reading and base.decodes_prior is not None:
        raise typer.BadParameter(f"{model} already carries the prior of the models it decodes; --keep-reading "
                                 "would need a second one")
    choices = prior_view_choices(base.config.stride)
    if not learned and views is None:
        views = finest_prior_views(base.config.stride)
    if not learned and views not in choices:
        raise typer.BadParameter(f"--views must be one of {', '.join(map(str, choices))} for this model's count prior")
    try:
        weights = pricing.stage_weights(base.config.num_stages, pricing.parse_weights(rate_weights))
    except ValueError as exc:
        raise typer.BadParameter(f"--rate-weights: {exc}") from None
    rounds = (RATE_PRIOR_ROUNDS if weights.any() else 1) if rounds is None else rounds
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

    report: dict[str, Any] = {"model": model, "data": str(data), "views": views}
    if learned:
        prior = fit_learned_prior(base.net, files, FitConfig(steps=steps, seed=seed), views=views, on_event=say)
        weights = None
        report["steps"] = steps
    else:
        total = rounds * len(files)
        say({"phase": "counts", "images": len(files), "views": views, "rate_weights": rate_weights or "0",
             "rounds": rounds})

        def on_image(i: int) -> None:
            if i % 20 == 0 or i == total:
                say({"phase": "counts", "done": f"{i}/{total}"})

        prior = fit_counts(base.net, files, "cpu", seed, views, on_image, weights, rounds)
        report.update(rate_weights=weights.tolist(), rounds=rounds)
    lineage = ((base.fingerprint, *base.decodes), base.prior) if keep_reading else ((), None)
    save_model(base.net, prior, out, weights, *lineage)
    report["seconds"] = round(time.time() - start, 1)
    if val is not None:
        grids = index_grids(base.net, find_images(val), 1)
        report["val_bits_per_stage"] = {"learned": bits_per_stage(prior, grids).round(4).tolist(),
                                        "before": bits_per_stage(base.prior, grids).round(4).tolist()}
        say({"phase": "validation", **{k: sum(v) for k, v in report["val_bits_per_stage"].items()}})
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    err_console.print(f"wrote {out} (report in {out.with_suffix('.json')})", markup=False, highlight=False)
