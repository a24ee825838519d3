"""Batch jobs: many files (or whole folders, recursively) compressed or decompressed, in parallel.

A job is a list of `Task`s (source, destination); `run` executes them in this process
or in `jobs` worker processes, each with its own torch thread count, and reports one
`Outcome` per task as it finishes. A failing file is reported, never stops the rest.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vqcodec.container import MAGIC
from vqcodec.errors import OutputError, VqcodecError, VqcodecWarning, VqzError, error_line
from vqcodec.images import MAX_INPUT_PIXELS, open_image, readable_suffixes
from vqcodec.safe_io import check_output, software_exif, write_atomic, write_bytes_atomic
from vqcodec.text import stages

if TYPE_CHECKING:
    from vqcodec.zoo import CodecModel

# Planning needs no torch (so `vqcodec info DIR` starts fast); running a task imports the codec.

OUTPUT_FORMATS = {"png": "PNG", "tiff": "TIFF", "bmp": "BMP", "webp": "WEBP"}


@dataclass(frozen=True)
class Task:
    """One file to convert."""

    src: Path
    dst: Path


@dataclass(frozen=True)
class Outcome:
    """What happened to one task: sizes and time on success, the error message on failure, warnings."""

    task: Task
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    seconds: float = 0.0
    detail: str = ""
    error: str | None = None
    compressed: int = 0
    warnings: tuple[str, ...] = ()

    @property
    def bpp(self) -> float:
        """Bits per pixel of the .vqz side of the conversion, from its real size."""
        return 8.0 * self.compressed / self.pixels if self.pixels else 0.0


@dataclass(frozen=True)
class Settings:
    """Options shared by every task of a job (picklable, sent to worker processes)."""

    model: str | None = None
    quality: int | None = None
    fmt: str = "png"
    force: bool = False
    max_pixels: int = MAX_INPUT_PIXELS
    target_bpp: float | None = None
    effort: int | None = None
    refine_steps: int | None = None


def is_folder_name(output: str | os.PathLike[str]) -> bool:
    """Whether an output name says it is a folder by ending with a path separator (`-o out/`)."""
    return os.fspath(output).endswith(tuple(sep for sep in (os.sep, os.altsep) if sep))


def files_in(inputs: Iterable[Path], accept: Callable[[Path], bool]) -> list[Path]:
    """Files given by name, and the files `accept` takes below each folder (recursive, sorted)."""
    files: list[Path] = []
    for src in inputs:
        files.extend(sorted(p for p in src.rglob("*") if p.is_file() and accept(p)) if src.is_dir() else [src])
    return files


def _renamed(path: Path, ending: str) -> Path:
    return path.with_name(path.stem + ending)


def _refuse_collisions(tasks: list[Task]) -> list[Task]:
    """The tasks without repeats of the same file, refusing two sources that would write one output."""
    seen: dict[str, Task] = {}
    for task in tasks:
        key = os.path.normcase(os.path.abspath(task.dst))
        first = seen.setdefault(key, task)
        if first is not task and not _same_source(first.src, task.src):
            raise OutputError(f"{first.src} and {task.src} would both be written to {task.dst} "
                              "(rename one of them, or convert them in separate runs)")
    return list(seen.values())


def _same_source(a: Path, b: Path) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def plan(inputs: Iterable[Path], output: str | os.PathLike[str] | None, ending: str,
         accept: Callable[[Path], bool]) -> list[Task]:
    """Tasks for files and folders: folders are walked recursively and their structure kept under `output`.

    Each output is named after its source with `ending` (".vqz", ".decoded.png") in place
    of the suffix, beside the source without `output`. `output` is a folder when it is one,
    ends with a separator, or receives several inputs or a folder; a file name (`-o all.vqz`,
    `-o all.png`) cannot receive several. Two sources that would write the same
    output are refused here, before any work.
    """
    inputs = list(inputs)
    many = len(inputs) > 1 or any(p.is_dir() for p in inputs)
    out = None if output is None else Path(output)
    if out is not None and many and not out.is_dir():
        file_name = out.suffix.lower() in readable_suffixes() | {".vqz", Path("x" + ending).suffix.lower()}
        if out.exists():
            raise OutputError(f"{out}: several inputs need -o to be a folder")
        if file_name and not is_folder_name(output):
            raise OutputError(f"{out}: several inputs need -o to be a folder (end it with / for a folder of that name)")
    folder = out is not None and (many or out.is_dir() or is_folder_name(output))
    tasks: list[Task] = []
    for src in inputs:
        if src.is_dir():
            base = None if out is None else out / src.name if len(inputs) > 1 else out
            for f in files_in([src], accept):
                tasks.append(Task(f, _renamed(f, ending) if base is None else base / _renamed(f.relative_to(src), ending)))
        elif out is None:
            tasks.append(Task(src, _renamed(src, ending)))
        elif folder:
            tasks.append(Task(src, out / _renamed(Path(src.name), ending)))
        else:
            tasks.append(Task(src, out))
    return _refuse_collisions(tasks)


def is_image(path: Path) -> bool:
    """Whether a folder walk takes this file for compression: any suffix Pillow reads (not .vqz)."""
    return path.suffix.lower() in readable_suffixes()


def is_vqz(path: Path) -> bool:
    """Whether a folder walk takes this file for decompression."""
    return path.suffix.lower() == ".vqz"


def compress_task(task: Task, model: CodecModel, settings: Settings) -> Outcome:
    """Compress one file to its destination, atomically; input and output are checked before encoding."""
    from vqcodec import codec

    with open_image(task.src, settings.max_pixels) as im:
        check_output(task.dst, settings.force, [task.src])
        t0 = time.perf_counter()
        data = codec.compress(im, model, settings.quality, max_pixels=settings.max_pixels,
                              target_bpp=settings.target_bpp, effort=settings.effort,
                              refine_steps=settings.refine_steps)
        seconds = time.perf_counter() - t0
    write_bytes_atomic(task.dst, data, overwrite=settings.force, inputs=[task.src])
    header = codec.info(data).header
    shrunk = f", coded at {header.coded_width}x{header.coded_height}" if header.reduced else ""
    if settings.target_bpp is not None:
        what = f"{stages(header.stages)}{shrunk}"
    else:
        quality = codec.check_quality(model, settings.quality)
        what = f"quality {quality}" + ("" if quality == header.stages and not shrunk else
                                       f" ({stages(header.stages)}{shrunk})")
    return Outcome(task, task.src.stat().st_size, len(data), header.width * header.height, seconds, what,
                   compressed=len(data))


def decompress_task(task: Task, model: CodecModel | None, settings: Settings) -> Outcome:
    """Decompress one file to its destination image (tagged as vqcodec's), atomically; checked before decoding.

    A truncated file decodes from its complete stages, with a warning."""
    from vqcodec import codec

    data = codec.read_file(task.src)
    if not data.startswith(MAGIC):
        raise VqzError(f"{task.src}: not a .vqz file")
    check_output(task.dst, settings.force, [task.src])
    t0 = time.perf_counter()
    image = codec.decompress(data, model, settings.quality, max_pixels=settings.max_pixels)
    seconds = time.perf_counter() - t0
    options: dict[str, object] = {"lossless": True} if settings.fmt == "webp" else {}
    if settings.fmt != "bmp":
        options["exif"] = software_exif()
    write_atomic(task.dst, lambda f: image.save(f, format=OUTPUT_FORMATS[settings.fmt], **options),
                 overwrite=settings.force, inputs=[task.src])
    quality = image.info["quality"]
    if image.info["truncated"]:
        warnings.warn(f"{task.src}: truncated file, decoded quality {quality} from its complete stages",
                      VqcodecWarning, stacklevel=2)
    return Outcome(task, len(data), task.dst.stat().st_size, image.width * image.height, seconds,
                   f"{image.width}x{image.height} {image.mode}, {stages(quality)}",
                   compressed=len(data))


ACTIONS = {"compress": compress_task, "decompress": decompress_task}


def _attempt(action: str, task: Task, settings: Settings) -> Outcome:
    """Run one task, turning its failure into an `Outcome` and collecting vqcodec's warnings into it."""
    from vqcodec.zoo import load_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VqcodecWarning)
        try:
            model = load_model(settings.model) if (settings.model is not None or action == "compress") else None
            outcome = ACTIONS[action](task, model, settings)
        except (VqcodecError, OSError) as exc:
            outcome = Outcome(task, error=error_line(task.src, exc, task.dst))
    ours = tuple(str(w.message) for w in caught if issubclass(w.category, VqcodecWarning))
    for w in caught:
        if not issubclass(w.category, VqcodecWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return replace(outcome, warnings=ours)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run(action: str, tasks: list[Task], settings: Settings, jobs: int = 1,
        threads: int | None = None) -> Iterator[Outcome]:
    """Execute tasks, yielding outcomes as they finish; `jobs` > 1 uses that many processes.

    `threads`: torch threads of each process (None: in this process, torch's default, every core;
    in workers, the cores shared out among the jobs).
    """
    if jobs <= 1 or len(tasks) <= 1:
        if threads is not None:
            _init_worker(threads)
        for task in tasks:
            yield _attempt(action, task, settings)
        return
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
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
