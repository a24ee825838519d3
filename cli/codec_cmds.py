"""`vqcodec compress`, `decompress` and `info`: thin wrappers over `vqcodec.codec` and `vqcodec.batch`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .console import console, err_console, print_warning
from vqcodec import batch, container, registry, shards
from vqcodec.effort import EFFORT_BEAMS, describe_default
from vqcodec.errors import OutputError, VqcodecError, error_line
from vqcodec.images import MAX_INPUT_PIXELS
from vqcodec.latent_refinement import MAX_STEPS
from vqcodec.latent_refinement import describe_default as describe_refinement
from vqcodec.text import printable, stages

if TYPE_CHECKING:
    from vqcodec.batch import Settings, Task

# The codec and the model zoo import torch: each command imports them when it runs, so --help,
# usage errors and `info` start without it (planning a batch needs no torch).

SUFFIX_FORMATS = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp", ".webp": "webp"}

Inputs = Annotated[list[Path], typer.Argument(help="Input files or folders (walked recursively).", show_default=False)]
Output = Annotated[Optional[str], typer.Option("--output", "-o", help="Output file; a folder when it ends with /, exists as a folder, or receives several inputs or a folder.")]
Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Shipped model name (default: best PSNR; perceptual: best MS-SSIM) or model file path.")]
Jobs = Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes (each gets its share of the cores).")]
Threads = Annotated[Optional[int], typer.Option(
    "--threads", "-t", min=1, show_default=False,
    help="Threads of each process for the networks. Default: every core for one process, the cores shared "
         "out among --jobs.")]
Shard = Annotated[Optional[str], typer.Option(
    "--shard", metavar="K/N",
    help="Process only shard K of N (K = 0..N-1): every N-th file of the sorted list, from the K-th; "
         "N jobs of an array together do exactly what one run does.")]
MaxPixels = Annotated[int, typer.Option(min=1, help="Refuse images larger than this many pixels.")]


def parse_shard(shard: str | None) -> tuple[int, int] | None:
    """--shard K/N checked, as a usage error when malformed."""
    try:
        return None if shard is None else shards.parse(shard)
    except shards.ShardError as exc:
        raise typer.BadParameter(str(exc), param_hint="--shard") from None


def _shard(tasks: list[Task], shard: str | None) -> list[Task]:
    """The tasks of one shard, sorted by source path (all tasks, unchanged, without --shard).

    An empty shard (more shards than files) is a success with nothing to do.
    """
    if shard is None or not tasks:
        return tasks
    mine = shards.select(tasks, parse_shard(shard), key=lambda t: str(t.src))
    if not mine:
        console.print(f"shard {shard}: no files (the other shards hold all {len(tasks)})", markup=False, highlight=False)
        raise typer.Exit(0)
    return mine


def _execute(action: str, tasks: list[Task], settings: Settings, jobs: int, threads: int | None) -> None:
    """Run a batch with one progress bar, a line per file, a summary for batches; exit 1 if any failed."""
    from vqcodec.batch import Summary

    if not tasks:
        raise OutputError("no input files found")
    outcomes = []
    columns = [TextColumn(f"[bold]{action}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    # Off a terminal the per-file lines are the progress; a bar would only leave a blank line on stderr.
    quiet = len(tasks) < 2 or not err_console.is_terminal
    with Progress(*columns, console=err_console, transient=True, disable=quiet) as progress:
        bar = progress.add_task(action, total=len(tasks))
        for o in batch.run(action, tasks, settings, jobs, threads):
            outcomes.append(o)
            for warning in o.warnings:
                print_warning(printable(warning))
            if o.error is not None:
                err_console.print(f"error: {printable(o.error)}", markup=False, highlight=False)
            else:
                console.print(printable(f"{o.task.src} -> {o.task.dst}: {o.bytes_out} bytes, {o.bpp:.4f} bpp, "
                                        f"{o.detail}, {o.seconds:.2f} s"), markup=False, highlight=False)
            progress.advance(bar)
    s = Summary.of(outcomes)
    if len(outcomes) > 1:
        console.print(f"{s.files} files, {s.failures} failed, {s.bytes_in} bytes in, {s.bytes_out} bytes out, "
                      f"mean {s.mean_bpp:.4f} bpp", markup=False, highlight=False)
    if s.failures:
        raise typer.Exit(1)


def compress(
    inputs: Inputs,
    output: Output = None,
    model: ModelOpt = None,
    quality: Annotated[Optional[int], typer.Option("--quality", "-q", help="1 (smallest) to the model's top quality. Default model: 1 and 2 code the image shrunk by 2 and 1.5 (4 stages each, for the lowest rates); 3..26 keep that many stages; 27 and 28 keep all 26 with bits priced less. Default: the model's default quality (5 for the default model).")] = None,
    target_bpp: Annotated[Optional[float], typer.Option("--target-bpp", min=0.001, help="Search quality and rate-aware quantization for this many bits per pixel (instead of --quality).")] = None,
    effort: Annotated[Optional[int], typer.Option("--effort", "-e", min=0, max=len(EFFORT_BEAMS) - 1, show_default=False, help=f"Encoder search: 0 (greedy, fastest) to 4 (a beam of 16: slowest, best image for its size); decoding is the same. Default: by the stages a quality codes, for MSE models (default) {describe_default()}; for MS-SSIM models (perceptual) {describe_default('ms-ssim')}.")] = None,
    refine_steps: Annotated[Optional[int], typer.Option("--refine-steps", min=0, max=MAX_STEPS, show_default=False, help=f"Gradient steps that move the encoder's latents towards what the decoder reproduces the image from best (in the measure the model's decoder was trained for), before they are quantized: slower, a better image for its size; decoding is the same. 0 turns it off. Default: for MSE models (default) {describe_refinement('mse')}; for MS-SSIM models (perceptual) {describe_refinement('ms-ssim')}.")] = None,
    jobs: Jobs = 1,
    threads: Threads = None,
    shard: Shard = None,
    max_pixels: MaxPixels = MAX_INPUT_PIXELS,
    force: Force = False,
) -> None:
    """Compress images to .vqz (IMG.png -> IMG.vqz beside it, or in the -o folder).

    Folders are walked recursively for every format Pillow reads (.png, .jpg, .gif,
    .pgm, .tif, .webp, ...) and their structure is kept under -o. Of an animated
    image the first frame is coded, with a warning.

    Example: vqcodec compress photo.png -q 6 -o photo.vqz   (or --target-bpp 0.25, --effort 4)
    """
    from vqcodec import codec
    from vqcodec.batch import Settings
    from vqcodec.zoo import load_model

    parse_shard(shard)
    m = load_model(model)
    if quality is not None and target_bpp is not None:
        raise typer.BadParameter("give --quality or --target-bpp, not both", param_hint="--target-bpp")
    try:
        codec.check_quality(m, quality)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--quality") from None
    tasks = _shard(batch.plan(inputs, output, ".vqz", batch.is_image), shard)
    _execute("compress", tasks, Settings(model=model, quality=quality, force=force, max_pixels=max_pixels,
                                                        target_bpp=target_bpp, effort=effort,
                                                        refine_steps=refine_steps), jobs, threads)


def decompress(
    inputs: Inputs,
    output: Output = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="png, tiff, bmp or webp (lossless); default from -o's suffix, else png.")] = None,
    quality: Annotated[Optional[int], typer.Option("--quality", "-q", help="Decode only the first Q stages of the file (coarser image).")] = None,
    model: ModelOpt = None,
    jobs: Jobs = 1,
    threads: Threads = None,
    shard: Shard = None,
    max_pixels: MaxPixels = MAX_INPUT_PIXELS,
    force: Force = False,
) -> None:
    """Decompress .vqz files to images (FILE.vqz -> FILE.decoded.png beside it, or in the -o folder).

    The .decoded part keeps the lossy image off the original FILE.png. Folders are walked
    recursively for .vqz files. An existing output is replaced only with --force, which
    is suggested only for files vqcodec wrote. A file cut short (a prefix of a .vqz)
    decodes to the quality its complete stages hold, with a warning on stderr.

    Example: vqcodec decompress photo.vqz -o photo-decoded.png
    """
    from vqcodec.batch import OUTPUT_FORMATS, Settings
    from vqcodec.zoo import load_model

    if fmt is not None and fmt.lower() not in OUTPUT_FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(OUTPUT_FORMATS)}", param_hint="--format")
    parse_shard(shard)
    if model is not None:
        load_model(model)
    name = fmt.lower() if fmt else None
    single_file = (output is not None and len(inputs) == 1 and inputs[0].is_file() and not Path(output).is_dir()
                   and not batch.is_folder_name(output))
    if name is None and single_file:
        name = SUFFIX_FORMATS.get(Path(output).suffix.lower())
        if name is None:
            raise OutputError(f"{output}: unknown image suffix (use --format)")
    name = name or "png"
    tasks = _shard(batch.plan(inputs, output, ".decoded." + name, batch.is_vqz), shard)
    _execute("decompress", tasks, Settings(model=model, quality=quality, fmt=name, force=force, max_pixels=max_pixels),
             jobs, threads)


def info(inputs: Inputs) -> None:
    """Check .vqz files (structure and every checksum) and print their header, bpp, and where each quality ends.

    The first N bytes of a file, N being the end of quality Q, decode as quality Q:
    what a server may send to answer a range request for that quality.

    Folders are walked recursively for .vqz files.

    Example: vqcodec info photo.vqz photos/
    """
    failures = 0
    files = batch.files_in(inputs, batch.is_vqz)
    if not files:
        raise OutputError("no .vqz files found")
    for src in files:
        try:
            i = container.info(container.read_file(src))
        except VqcodecError as exc:
            failures += 1
            err_console.print(printable(f"error: {error_line(src, exc)}"), markup=False, highlight=False)
            continue
        h = i.header
        line = (f"{src}: {h.width}x{h.height} {h.mode}, model {registry.describe(h.model_id)}, {stages(h.stages)}, "
                f"{i.size} bytes, {i.bpp:.4f} bpp, format {h.version}, header {i.header_bytes} bytes"
                + (", stages coded adaptively" if h.adaptive else "")
                + (f", coded at {h.coded_width}x{h.coded_height}" if h.reduced else "")
                + (f", alpha {h.alpha_length} bytes" if h.alpha_length else "")
                + f", quality ends at bytes {list(i.quality_ends)}")
        if i.truncated:
            line += f", truncated: complete up to quality {i.complete_stages}"
        console.print(printable(line), markup=False, highlight=False)
    if failures:
        raise typer.Exit(1)
