"""`vqcodec bench`: the CLI face of `vqcodec.bench.runner.run_benchmark`, with a progress bar."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .console import PlainLines, console, err_console

PLAIN_LINES_PER_RUN = 50
"""Off a terminal (a log file, CI), the bench prints about this many progress lines a run, plus one a minute."""


def bench(
    data: Annotated[Path, typer.Option("--data", help="Folder of test images, e.g. Kodak (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the JSON results, report.md and plots.")],
    codecs: Annotated[Optional[list[str]], typer.Option(
        "--codecs", help="Codecs to run, comma-separated or repeated: vqcodec (every shipped model and model file), "
                         "vqcodec-NAME, vqcodec-efforts (the shipped models at every fixed encoder effort, 0-4), "
                         "vqcodec-NAME-effortN, jpeg, webp, jpeg2000, avif. Default: all but the effort variants.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smoke test: 4 images, 3 settings per codec, 768x512 speed only.")] = False,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Threads for vqcodec (torch) and the AVIF encoder; recorded in the results.")] = 1,
    force: Annotated[bool, typer.Option("--force", help="Recompute everything, ignoring cached results in --out.")] = False,
    model_file: Annotated[Optional[list[str]], typer.Option(
        "--model-file", help="Also run a model file as codec vqcodec-LABEL, given as LABEL=PATH (repeatable), "
                             "e.g. an earlier release to compare with.")] = None,
) -> None:
    """Benchmark vqcodec against JPEG, WebP, JPEG 2000 and AVIF: rate-distortion, BD-rate, speed and memory.

    Writes NAME.json per codec, speed-vqcodec-NAME.json, report.md, rd-psnr.png and rd-msssim.png into
    --out. Results whose inputs did not change are reused, so a rerun only redoes what is missing.

    Example: vqcodec bench --data ../shared/data/kodak --out benchmarks/results/kodak
    """
    from vqcodec.bench.codecs import select
    from vqcodec.bench.runner import BenchConfig, run_benchmark

    names = [n.strip() for item in codecs for n in item.split(",") if n.strip()] if codecs else None
    files: dict[str, str] = {}
    for item in model_file or []:
        label, sep, path = item.partition("=")
        if not sep or not label or not path or not Path(path).is_file():
            raise typer.BadParameter(f"expected LABEL=PATH to a model file, got '{item}'", param_hint="--model-file")
        files[label] = path
    try:
        select(names, files)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--codecs") from None
    config = BenchConfig(data=data, out=out, codecs=names, quick=quick, threads=threads, force=force,
                         model_files=files)
    columns = [TextColumn("[bold]bench"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    plain = PlainLines(PLAIN_LINES_PER_RUN) if not err_console.is_terminal else None
    with Progress(*columns, console=err_console, transient=False, disable=plain is not None) as progress:
        tasks: list[TaskID] = []

        def on_start(total: int) -> None:
            tasks.append(progress.add_task("bench", total=total, info="" if total else "all results cached"))
            if plain is not None:
                print(f"bench: {total} steps" if total else "bench: all results cached", file=sys.stderr, flush=True)

        def on_step(label: str) -> None:
            progress.update(tasks[0], advance=1, info=label)
            done, total = int(progress.tasks[0].completed), int(progress.tasks[0].total or 0)
            if plain is not None and plain.due(done, total):
                print(f"bench {done}/{total} {label} elapsed {plain.elapsed()}", file=sys.stderr, flush=True)

        outcome = run_benchmark(config, on_start=on_start, on_step=on_step)
    for path in outcome.files:
        console.print(f"wrote {path}", markup=False, highlight=False)
    reused = f"; reused {', '.join(outcome.cached)}" if outcome.cached else ""
    console.print(f"done in {outcome.elapsed_s:.0f} s{reused}", markup=False, highlight=False)
