"""Speed and memory of vqcodec: compress/decompress time per quality at fixed image sizes, peak RSS.

At the first size (a Kodak-sized photo) every quality is timed, each followed by WebP's and AVIF's times at
the same file size (`benchmarks.rivals`), so the report can give ratios measured minutes, not days, apart.
The larger sizes time a few qualities that stand for the rest (`large_qualities`): the qualities between
follow the first size's table, and timing all of them at 12 megapixels took over half an hour.

Times come from this process with the model loaded once and a warm-up excluded; each point is the
median of up to `MAX_REPEATS` runs (fewer when the runs already took `MIN_TIME_S`). Peak resident
memory is measured in a fresh Python process (`python -m vqcodec.bench.speed JOB`) that loads the model,
reads its input, notes its resident memory (the baseline), runs one compress or decompress and reports
the peak resident memory during it, so the figure belongs to the codec and not to the benchmark around it.
The test images are the first benchmark image resized (bicubic) to each size; none is written out.
"""

from __future__ import annotations

import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vqcodec import codec as vq
from vqcodec.effort import default_effort
from vqcodec.zoo import CodecModel, load_model, shipped_models

from . import rivals
from .codecs import Codec
from .results import Memory, RivalTiming, Timing

SIZES: tuple[tuple[int, int], ...] = ((768, 512), (4000, 3000))
"""Image sizes timed by a full run: a Kodak-sized photo and a 12-megapixel camera image."""

QUICK_SIZES: tuple[tuple[int, int], ...] = ((768, 512),)
"""Image sizes timed by `--quick`."""

MEMORY_SIZE: tuple[int, int] = (6000, 4000)
"""Image size of the peak-memory runs of a full run: 24 megapixels, coded tile by tile."""

QUICK_MEMORY_SIZE: tuple[int, int] = (768, 512)
"""Image size of the peak-memory runs of `--quick`."""

MIN_TIME_S = 1.0
MAX_REPEATS = 3


def speed_image(source: Path, width: int, height: int) -> Image.Image:
    """The source image as RGB, resized (bicubic) to width x height unless it already has that size."""
    with Image.open(source) as im:
        rgb = im.convert("RGB")
    return rgb if rgb.size == (width, height) else rgb.resize((width, height), Image.Resampling.BICUBIC)


def large_qualities(model: CodecModel) -> tuple[int, ...]:
    """The qualities timed at the sizes after the first: the lowest, the default, the first quality of each
    default encoder effort level (`vqcodec.effort.DEFAULT_EFFORTS`, where the time per pixel steps up) and
    the top."""
    levels = vq.quality_levels(model)
    efforts = [default_effort(level.stages, model.config.distortion) for level in levels]
    steps_up = [q for q in range(2, len(levels) + 1) if efforts[q - 1] != efforts[q - 2]]
    return tuple(sorted({1, vq.default_quality(model), *steps_up, len(levels)}))


def steps(sizes: Sequence[tuple[int, int]], qualities: Sequence[int], large: Sequence[int]) -> int:
    """Progress steps of `measure_speed`: one per quality at the first size and per `large` quality at each
    further size, plus the two memory runs."""
    return len(qualities) + (len(sizes) - 1) * len(large) + 2


def _median_times(encode: Callable[[], bytes], decode: Callable[[bytes], object]) -> tuple[bytes, float, float, int]:
    """The encoded bytes and the median encode and decode seconds over up to `MAX_REPEATS` runs (fewer once
    they took `MIN_TIME_S`), with the repeat count."""
    enc: list[float] = []
    dec: list[float] = []
    data = b""
    while len(enc) < MAX_REPEATS and sum(enc) + sum(dec) < MIN_TIME_S:
        t0 = time.perf_counter()
        data = encode()
        t1 = time.perf_counter()
        decode(data)
        t2 = time.perf_counter()
        enc.append(t1 - t0)
        dec.append(t2 - t1)
    return data, statistics.median(enc), statistics.median(dec), len(enc)


def _time_rival(codec: Codec, image: Image.Image, quality: int, target: int) -> RivalTiming:
    """`codec` timed on `image` at its setting whose file is nearest `target` bytes (vqcodec's at `quality`)."""
    setting, nbytes = rivals.nearest_setting(lambda s: len(codec.encode(image, s)), target)
    _, enc, dec, repeats = _median_times(partial(codec.encode, image, setting), codec.decode)
    width, height = image.size
    return RivalTiming(codec=codec.name, width=width, height=height, quality=quality, setting=setting,
                       bytes=nbytes, bpp=8.0 * nbytes / (width * height), encode_s=enc, decode_s=dec,
                       repeats=repeats)


def peak_rss(model_path: Path, operation: str, input_path: Path, quality: int, threads: int,
             output_path: Path | None = None) -> tuple[float, float]:
    """Baseline and peak RSS in MiB of a fresh process compressing (input: .npy pixels; the .vqz goes to
    `output_path` when given) or decompressing (.vqz)."""
    job = {"model": str(model_path), "operation": operation, "input": str(input_path), "quality": quality,
           "threads": threads, "output": None if output_path is None else str(output_path)}
    done = subprocess.run([sys.executable, "-m", "vqcodec.bench.speed", json.dumps(job)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement of {operation} failed: {done.stderr.strip()[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["baseline_mib"], out["peak_mib"]


def measure_speed(model_name: str, source: Path, sizes: Sequence[tuple[int, int]], qualities: Sequence[int],
                  large: Sequence[int], threads: int, on_step: Callable[[str], None],
                  memory_size: tuple[int, int] = MEMORY_SIZE) -> tuple[list[Timing], list[RivalTiming], list[Memory]]:
    """Time every quality at the first size, each followed by the rivals (`benchmarks.rivals`) at the same
    file size, and the `large` qualities (`large_qualities`) at the further sizes; then measure peak RSS at
    `memory_size` and top quality.

    `on_step` is called with a short label after each timed point and each memory run.
    """
    model = load_model(model_name)
    timings: list[Timing] = []
    rival_timings: list[RivalTiming] = []
    others = rivals.rivals(threads)
    top = max(qualities)
    largest = memory_size
    for i, (width, height) in enumerate(sizes):
        image = speed_image(source, width, height)
        vq.decompress(vq.compress(image, model, min(qualities)), model)
        for q in qualities if i == 0 else large:
            data, comp, decomp, repeats = _median_times(partial(vq.compress, image, model, q),
                                                        partial(vq.decompress, model=model))
            timings.append(Timing(width=width, height=height, quality=q, bytes=len(data),
                                  bpp=8.0 * len(data) / (width * height), compress_s=comp, decompress_s=decomp,
                                  repeats=repeats))
            if i == 0:
                rival_timings += [_time_rival(c, image, q, len(data)) for c in others]
            on_step(f"speed vqcodec-{model_name} {width}x{height} q{q}")
    memory: list[Memory] = []
    with tempfile.TemporaryDirectory(prefix="vqcodec-bench-") as tmp:
        pixels, vqz = Path(tmp) / "image.npy", Path(tmp) / "image.vqz"
        np.save(pixels, np.asarray(speed_image(source, *largest)))
        # the compress run writes the file the decompress run reads: a 24 MP image is coded once, not twice
        for operation, path, output in (("compress", pixels, vqz), ("decompress", vqz, None)):
            base, peak = peak_rss(shipped_models()[model_name], operation, path, top, threads, output)
            memory.append(Memory(width=largest[0], height=largest[1], quality=top, operation=operation,
                                 baseline_mib=base, peak_mib=peak))
            on_step(f"memory vqcodec-{model_name} {operation}")
    return timings, rival_timings, memory


PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def _proc_mib(field: str) -> float:
    match = re.search(rf"^{field}:\s+(\d+) kB", PROC_STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{PROC_STATUS} has no {field}")
    return int(match.group(1)) / 1024


def _maxrss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _memory_worker(job: dict[str, Any]) -> dict[str, float]:
    """Set up (threads, model, input), then report resident memory before and at the peak of one operation;
    a compress writes its file to the job's "output" when one is given.

    On Linux the peak is VmHWM reset to the current RSS just before the operation (clear_refs 5), so
    neither the model load's transient nor the parent (whose peak `ru_maxrss` inherits across exec)
    leaks into it. Elsewhere both figures are `ru_maxrss`, an upper bound.
    """
    torch.set_num_threads(int(job["threads"]))
    model = load_model(job["model"])
    path = Path(job["input"])
    operation: Callable[[], Any]
    if job["operation"] == "compress":
        operation = partial(vq.compress, Image.fromarray(np.load(path)), model, int(job["quality"]))
    else:
        operation = partial(vq.decompress, path.read_bytes(), model)
    linux = PROC_STATUS.is_file() and PROC_CLEAR_REFS.exists()
    if linux:
        baseline = _proc_mib("VmRSS")
        PROC_CLEAR_REFS.write_text("5")
    else:
        baseline = _maxrss_mib()
    result = operation()
    peak = _proc_mib("VmHWM") if linux else _maxrss_mib()
    if job["output"] is not None:
        Path(job["output"]).write_bytes(result)
    return {"baseline_mib": baseline, "peak_mib": peak}


if __name__ == "__main__":
    print(json.dumps(_memory_worker(json.loads(sys.argv[1]))))
