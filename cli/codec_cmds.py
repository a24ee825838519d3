"""`vqcodec compress`, `decompress` and `info`: thin wrappers over `vqcodec.codec`."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.console import console, err_console
from vqcodec import codec
from vqcodec.errors import OutputError, VqcodecError
from vqcodec.safe_io import write_atomic, write_bytes_atomic
from vqcodec.zoo import load_model

OUTPUT_FORMATS = {"png": "PNG", "tiff": "TIFF", "bmp": "BMP", "webp": "WEBP"}
SUFFIX_FORMATS = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp", ".webp": "webp"}

Inputs = Annotated[list[Path], typer.Argument(help="Input files.", show_default=False)]
Output = Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file, or folder when several inputs are given.")]
Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Shipped model name or model file path.")]


def output_path(src: Path, output: Optional[Path], many: bool, suffix: str) -> Path:
    """Where the output of `src` goes: beside it by default, into `output` if it is (or must be) a folder."""
    if output is None:
        return src.with_suffix(suffix)
    if many or output.is_dir():
        if output.exists() and not output.is_dir():
            raise OutputError(f"{output}: several inputs need -o to be a folder")
        return output / (src.stem + suffix)
    return output


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[], None]]:
    columns = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err_console, transient=True, disable=total < 2) as progress:
        task = progress.add_task(label, total=total)
        yield lambda: progress.advance(task)


def _run_each(inputs: list[Path], label: str, work: Callable[[Path], str]) -> None:
    """Apply `work` to every input, one summary or error line each; exit 1 if any failed."""
    failures = 0
    with _progress(len(inputs), label) as advance:
        for src in inputs:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    line = work(src)
                for w in caught:
                    err_console.print(f"warning: {src}: {w.message}", markup=False, highlight=False)
                console.print(line, markup=False, highlight=False)
            except (VqcodecError, OSError) as exc:
                failures += 1
                msg = str(exc) if isinstance(exc, VqcodecError) else f"{exc.strerror or exc}"
                prefix = "" if msg.startswith(str(src)) else f"{src}: "
                err_console.print(f"error: {prefix}{msg}", markup=False, highlight=False)
            advance()
    if failures:
        raise typer.Exit(1)


def compress(
    inputs: Inputs,
    output: Output = None,
    model: ModelOpt = None,
    quality: Annotated[Optional[int], typer.Option("--quality", "-q", help="1 (smallest) to the model's stage count (best); default: middle.")] = None,
    force: Force = False,
) -> None:
    """Compress images to .vqz (IMG.png -> IMG.vqz beside it unless -o says otherwise).

    Example: vqcodec compress photo.png -q 6 -o photo.vqz
    """
    m = load_model(model)
    try:
        q = codec.check_quality(m, quality)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--quality") from None

    def one(src: Path) -> str:
        dst = output_path(src, output, len(inputs) > 1, ".vqz")
        t0 = time.perf_counter()
        data = codec.compress(src, m, q)
        elapsed = time.perf_counter() - t0
        write_bytes_atomic(dst, data, overwrite=force, inputs=[src])
        i = codec.info(data)
        return f"{src} -> {dst}: {i.size} bytes, {i.bpp:.4f} bpp, quality {q}, {elapsed:.2f} s"

    _run_each(inputs, "compress", one)


def decompress(
    inputs: Inputs,
    output: Output = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="png, tiff, bmp or webp (lossless); default from -o's suffix, else png.")] = None,
    quality: Annotated[Optional[int], typer.Option("--quality", "-q", help="Decode only the first Q stages of the file (coarser image).")] = None,
    model: ModelOpt = None,
    force: Force = False,
) -> None:
    """Decompress .vqz files to images (FILE.vqz -> FILE.png beside it unless -o says otherwise).

    Example: vqcodec decompress photo.vqz -o photo.png
    """
    if fmt is not None and fmt.lower() not in OUTPUT_FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(OUTPUT_FORMATS)}", param_hint="--format")
    m = load_model(model) if model is not None else None

    def one(src: Path) -> str:
        name = fmt.lower() if fmt else None
        if name is None and output is not None and len(inputs) == 1 and not output.is_dir():
            name = SUFFIX_FORMATS.get(output.suffix.lower())
            if name is None:
                raise OutputError(f"{output}: unknown image suffix (use --format)")
        name = name or "png"
        dst = output_path(src, output, len(inputs) > 1, "." + name)
        t0 = time.perf_counter()
        image = codec.decompress(codec.read_file(src), m, quality)
        elapsed = time.perf_counter() - t0
        options = {"lossless": True} if name == "webp" else {}
        write_atomic(dst, lambda f: image.save(f, format=OUTPUT_FORMATS[name], **options), overwrite=force, inputs=[src])
        return f"{src} -> {dst}: {image.width}x{image.height} {image.mode}, {elapsed:.2f} s"

    _run_each(inputs, "decompress", one)


def info(inputs: Inputs) -> None:
    """Check .vqz files (structure and checksum) and print their header fields and bpp.

    Example: vqcodec info photo.vqz
    """
    def one(src: Path) -> str:
        i = codec.info(codec.read_file(src))
        h = i.header
        return (
            f"{src}: {h.width}x{h.height} {h.mode}, model {h.model_name} ({h.fingerprint.hex()}), "
            f"quality {h.stages}, grid {h.grid_h}x{h.grid_w}, {i.size} bytes, {i.bpp:.4f} bpp, "
            f"stage bytes {list(h.stage_lengths)}" + (f", alpha {h.alpha_length} bytes" if h.alpha_length else "")
        )

    _run_each(inputs, "info", one)
