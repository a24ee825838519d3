"""Batch jobs: many files (or whole folders, recursively) compressed or decompressed, in parallel.

A job is a list of `Task`s (source, destination); `run` executes them in this process
or in `jobs` worker processes, each with its own torch thread count, and reports one
`Outcome` per task as it finishes. A failing file is reported, never stops the rest.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import torch

from vqcodec import codec
from vqcodec.data import IMAGE_SUFFIXES
from vqcodec.errors import OutputError, VqcodecError
from vqcodec.images import MAX_INPUT_PIXELS
from vqcodec.safe_io import check_output, write_atomic, write_bytes_atomic
from vqcodec.zoo import CodecModel, load_model

OUTPUT_FORMATS = {"png": "PNG", "tiff": "TIFF", "bmp": "BMP", "webp": "WEBP"}


@dataclass(frozen=True)
class Task:
    """One file to convert."""

    src: Path
    dst: Path


@dataclass(frozen=True)
class Outcome:
    """What happened to one task: sizes and time on success, the error message on failure."""

    task: Task
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    seconds: float = 0.0
    detail: str = ""
    error: str | None = None
    warning: str | None = None

    @property
    def bpp(self) -> float:
        """Bits per pixel of the compressed side of the conversion."""
        compressed = self.bytes_out if self.task.dst.suffix == ".vqz" else self.bytes_in
        return 8.0 * compressed / self.pixels if self.pixels else 0.0


@dataclass(frozen=True)
class Settings:
    """Options shared by every task of a job (picklable, sent to worker processes)."""

    model: str | None = None
    quality: int | None = None
    fmt: str = "png"
    force: bool = False
    max_pixels: int = MAX_INPUT_PIXELS
    target_bpp: float | None = None


def plan(inputs: Iterable[Path], output: Path | None, suffix: str, accept: Callable[[Path], bool]) -> list[Task]:
    """Tasks for files and folders: folders are walked recursively and their structure kept under `output`.

    Without `output`, results go beside their sources. With several inputs or a folder,
    `output` is a folder.
    """
    inputs = list(inputs)
    many = len(inputs) > 1 or any(p.is_dir() for p in inputs)
    if output is not None and many and output.exists() and not output.is_dir():
        raise OutputError(f"{output}: several inputs need -o to be a folder")
    tasks: list[Task] = []
    for src in inputs:
        if src.is_dir():
            base = None if output is None else output / src.name if len(inputs) > 1 else output
            for f in sorted(p for p in src.rglob("*") if p.is_file() and accept(p)):
                rel = f.relative_to(src).with_suffix(suffix)
                tasks.append(Task(f, f.with_suffix(suffix) if base is None else base / rel))
        elif output is None:
            tasks.append(Task(src, src.with_suffix(suffix)))
        elif many or output.is_dir():
            tasks.append(Task(src, output / (src.stem + suffix)))
        else:
            tasks.append(Task(src, output))
    return tasks


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def is_vqz(path: Path) -> bool:
    return path.suffix.lower() == ".vqz"


def compress_task(task: Task, model: CodecModel, settings: Settings) -> Outcome:
    """Compress one file to its destination, atomically."""
    check_output(task.dst, settings.force, [task.src])
    t0 = time.perf_counter()
    data = codec.compress(task.src, model, settings.quality, max_pixels=settings.max_pixels,
                          target_bpp=settings.target_bpp)
    seconds = time.perf_counter() - t0
    write_bytes_atomic(task.dst, data, overwrite=settings.force, inputs=[task.src])
    header = codec.info(data).header
    return Outcome(task, task.src.stat().st_size, len(data), header.width * header.height, seconds,
                   f"quality {header.stages}")


def decompress_task(task: Task, model: CodecModel | None, settings: Settings) -> Outcome:
    """Decompress one file to its destination image, atomically."""
    check_output(task.dst, settings.force, [task.src])
    data = codec.read_file(task.src)
    t0 = time.perf_counter()
    image = codec.decompress(data, model, settings.quality, max_pixels=settings.max_pixels)
    seconds = time.perf_counter() - t0
    options = {"lossless": True} if settings.fmt == "webp" else {}
    write_atomic(task.dst, lambda f: image.save(f, format=OUTPUT_FORMATS[settings.fmt], **options),
                 overwrite=settings.force, inputs=[task.src])
    quality = image.info["quality"]
    warning = (f"{task.src}: truncated file, decoded quality {quality} from its complete stages"
               if image.info["truncated"] else None)
    return Outcome(task, len(data), task.dst.stat().st_size, image.width * image.height, seconds,
                   f"{image.width}x{image.height} {image.mode}, quality {quality}", warning=warning)


ACTIONS = {"compress": compress_task, "decompress": decompress_task}


def error_line(src: Path, exc: Exception) -> str:
    """A one-line message for a failed file, naming the file once."""
    msg = str(exc) if isinstance(exc, VqcodecError) else (getattr(exc, "strerror", None) or str(exc))
    return msg if msg.startswith(str(src)) else f"{src}: {msg}"


def _attempt(action: str, task: Task, settings: Settings) -> Outcome:
    model = load_model(settings.model) if (settings.model is not None or action == "compress") else None
    try:
        return ACTIONS[action](task, model, settings)
    except (VqcodecError, OSError) as exc:
        return Outcome(task, error=error_line(task.src, exc))


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run(action: str, tasks: list[Task], settings: Settings, jobs: int = 1) -> Iterator[Outcome]:
    """Execute tasks, yielding outcomes as they finish; `jobs` > 1 uses that many processes."""
    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _attempt(action, task, settings)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
        pending: set[Future[Outcome]] = {pool.submit(_attempt, action, t, settings) for t in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()


@dataclass(frozen=True)
class Summary:
    """Totals of a batch for the closing line."""

    files: int
    failures: int
    bytes_in: int
    bytes_out: int
    mean_bpp: float

    @classmethod
    def of(cls, outcomes: list[Outcome]) -> "Summary":
        ok = [o for o in outcomes if o.error is None]
        return cls(len(outcomes), len(outcomes) - len(ok), sum(o.bytes_in for o in ok), sum(o.bytes_out for o in ok),
                   sum(o.bpp for o in ok) / len(ok) if ok else 0.0)
