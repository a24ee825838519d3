"""Running the suite: every selected codec over every image and setting, vqcodec's speed, then the report.

Each image is read once as 8-bit RGB. For every codec a warm-up (one encode and decode per distinct
image size, at the lowest setting) runs before the timed work; then every image at every setting is
encoded to bytes (bpp from their length: the file a user would write), decoded, and compared with
the original (PSNR, MS-SSIM). A codec or speed result whose cache key matches a file already in the
output folder is reused instead of recomputed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vqcodec.data import find_images
from vqcodec.errors import DataError
from vqcodec.zoo import load_model, shipped_models

from . import results, rivals, speed
from .codecs import Codec, registry, select
from .environment import describe
from .metrics import MIN_MS_SSIM_SIDE, as_tensor, bits_per_pixel, ms_ssim, ms_ssim_phases, psnr
from .report import RunSummary, plot_rd, write_report
from .results import CodecResult, ImageResult, SettingResult, SpeedResult

QUICK_IMAGES = 4
"""Images used by `--quick` (the first ones in sorted order); it also runs `Codec.quick_settings`."""


@dataclass(frozen=True)
class BenchImage:
    """A benchmark image: its file name and SHA-256, the RGB image, its pixels and its MS-SSIM tensor."""

    name: str
    sha256: str
    image: Image.Image
    rgb: np.ndarray
    reference: torch.Tensor


def load_images(folder: Path, limit: int | None = None) -> list[BenchImage]:
    """The images in `folder` (recursively, sorted; the first `limit` of them) as 8-bit RGB."""
    found: list[BenchImage] = []
    for path in find_images(folder)[:limit]:
        raw = path.read_bytes()
        try:
            with Image.open(path) as im:
                rgb_image = im.convert("RGB")
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc})") from None
        if min(rgb_image.size) < MIN_MS_SSIM_SIDE:
            raise DataError(f"{path}: {rgb_image.width}x{rgb_image.height} is too small for MS-SSIM "
                            f"(needs {MIN_MS_SSIM_SIDE} pixels on each side)")
        rgb = np.asarray(rgb_image)
        found.append(BenchImage(str(path.relative_to(folder)), hashlib.sha256(raw).hexdigest(), rgb_image, rgb,
                                as_tensor(rgb)))
    return found


@dataclass(frozen=True)
class BenchConfig:
    """What `run_benchmark` does: which images, codecs, settings and threads, and where results go."""

    data: Path
    out: Path
    codecs: list[str] | None = None
    quick: bool = False
    threads: int = 1
    force: bool = False
    model_files: dict[str, str] = field(default_factory=dict)
    """Extra vqcodec models to run, label to model file (codec `vqcodec-LABEL`), e.g. an earlier release."""


@dataclass(frozen=True)
class BenchOutcome:
    """What a run produced: the results (fresh or cached), the files written and the wall time."""

    results: list[CodecResult]
    speed: list[SpeedResult]
    cached: list[str]
    files: list[Path]
    elapsed_s: float


def codec_key(codec: Codec, settings: Sequence[int], images: Sequence[BenchImage], threads: int) -> dict[str, Any]:
    """The cache key of a codec result: what its numbers depend on."""
    return {"schema": results.SCHEMA, "codec": codec.name, "settings": list(settings),
            "images": [[im.name, im.sha256] for im in images], "threads": threads, **codec.identity}


def speed_key(codec: Codec, source: BenchImage, sizes: Sequence[tuple[int, int]], qualities: Sequence[int],
              large: Sequence[int], threads: int) -> dict[str, Any]:
    """The cache key of a speed result."""
    return {"schema": results.SPEED_SCHEMA, "codec": codec.name, "sizes": [list(s) for s in sizes],
            "qualities": list(qualities), "large_qualities": list(large), "source": [source.name, source.sha256],
            "threads": threads,
            "rivals": {c.name: c.identity for c in rivals.rivals(threads)}, **codec.identity}


def _warm_up(codec: Codec, images: Sequence[BenchImage], setting: int) -> None:
    seen: set[tuple[int, int]] = set()
    for im in images:
        if im.image.size not in seen:
            seen.add(im.image.size)
            codec.decode(codec.encode(im.image, setting))


def measure_codec(codec: Codec, images: Sequence[BenchImage], settings: Sequence[int],
                  on_step: Callable[[str], None]) -> tuple[list[SettingResult], list[ImageResult]]:
    """Per-setting means and per-image rows of one codec; `on_step` is called after each image and setting."""
    _warm_up(codec, images, settings[0])
    rows: list[ImageResult] = []
    summaries: list[SettingResult] = []
    for setting in settings:
        current: list[ImageResult] = []
        for im in images:
            t0 = time.perf_counter()
            data = codec.encode(im.image, setting)
            t1 = time.perf_counter()
            decoded = codec.decode(data)
            t2 = time.perf_counter()
            out = np.asarray(decoded)
            if out.shape != im.rgb.shape:
                raise RuntimeError(f"{codec.name} decoded {im.name} to shape {out.shape}, expected {im.rgb.shape}")
            width, height = im.image.size
            current.append(ImageResult(image=im.name, setting=setting, bytes=len(data),
                                       bpp=bits_per_pixel(len(data), width, height), psnr=psnr(im.rgb, out),
                                       ms_ssim=ms_ssim(im.reference, out),
                                       ms_ssim_phases=ms_ssim_phases(im.reference, out), encode_s=t1 - t0,
                                       decode_s=t2 - t1))
            on_step(f"{codec.name} {codec.setting_name} {setting}")
        rows += current
        summaries.append(SettingResult.mean_of(setting, current))
    return summaries, rows


def _ignore(_: object) -> None:
    return None


def run_benchmark(config: BenchConfig, on_start: Callable[[int], None] = _ignore,
                  on_step: Callable[[str], None] = _ignore) -> BenchOutcome:
    """Run (or reuse from the cache) every selected codec and vqcodec's speed, then write the report and plots.

    `on_start` gets the number of steps still to compute, `on_step` a label after each one; a
    progress bar hangs on these. Raises ValueError for an unknown codec name, DataError for an
    unusable data folder.
    """
    started = time.perf_counter()
    if config.threads < 1:
        raise ValueError(f"threads must be at least 1, got {config.threads}")
    names = select(config.codecs, config.model_files)
    images = load_images(config.data, QUICK_IMAGES if config.quick else None)
    makers = registry(config.threads, config.model_files)
    codecs = [makers[n]() for n in names]
    config.out.mkdir(parents=True, exist_ok=True)
    sizes = speed.QUICK_SIZES if config.quick else speed.SIZES
    memory_size = speed.QUICK_MEMORY_SIZE if config.quick else speed.MEMORY_SIZE

    work: list[tuple[Codec, tuple[int, ...], dict[str, Any]]] = []
    found: dict[str, CodecResult] = {}
    speed_work: list[tuple[Codec, tuple[int, ...], tuple[int, ...], dict[str, Any]]] = []
    found_speed: dict[str, SpeedResult] = {}
    for codec in codecs:
        settings = codec.quick_settings() if config.quick else codec.settings
        key = codec_key(codec, settings, images, config.threads)
        cached = None if config.force else results.load(config.out / f"{codec.name}.json", CodecResult, key)
        if cached is None:
            work.append((codec, settings, key))
        else:
            found[codec.name] = cached
        if codec.name.removeprefix("vqcodec-") in shipped_models():
            model = load_model(codec.name.removeprefix("vqcodec-"))
            large = tuple(q for q in speed.large_qualities(model) if q in settings)
            skey = speed_key(codec, images[0], [*sizes, memory_size], settings, large, config.threads)
            scached = None if config.force else results.load(config.out / f"speed-{codec.name}.json", SpeedResult, skey)
            if scached is None:
                speed_work.append((codec, settings, large, skey))
            else:
                found_speed[codec.name] = scached
    cached_names = sorted(found) + [f"speed-{n}" for n in sorted(found_speed)]
    on_start(sum(len(images) * len(s) for _, s, _ in work)
             + sum(speed.steps(sizes, s, large) for _, s, large, _ in speed_work))

    environment = describe(config.threads)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        for codec, settings, key in work:
            t0 = time.perf_counter()
            summaries, rows = measure_codec(codec, images, settings, on_step)
            result = CodecResult(name=codec.name, description=codec.description, setting_name=codec.setting_name,
                                 threads=config.threads, key=key, settings=summaries, rows=rows,
                                 elapsed_s=time.perf_counter() - t0, environment=environment)
            results.save(result, config.out / f"{codec.name}.json")
            found[codec.name] = result
        for codec, qualities, large, key in speed_work:
            t0 = time.perf_counter()
            model_name = codec.name.removeprefix("vqcodec-")
            timings, rival_timings, memory = speed.measure_speed(model_name, config.data / images[0].name, sizes,
                                                                 qualities, large, config.threads, on_step,
                                                                 memory_size)
            sresult = SpeedResult(name=codec.name, threads=config.threads, key=key, timings=timings,
                                  rivals=rival_timings, memory=memory, elapsed_s=time.perf_counter() - t0,
                                  environment=environment)
            results.save(sresult, config.out / f"speed-{codec.name}.json")
            found_speed[codec.name] = sresult
    finally:
        torch.set_num_threads(previous_threads)

    ordered = [found[c.name] for c in codecs]
    ordered_speed = [found_speed[c.name] for c in codecs if c.name in found_speed]
    elapsed = time.perf_counter() - started
    summary = RunSummary(data=config.data, images=[im.name for im in images], quick=config.quick,
                         threads=config.threads, environment=environment, elapsed_s=elapsed, cached=cached_names,
                         defaults={c.name: c.default_setting for c in codecs if c.default_setting is not None})
    files = [write_report(config.out / "report.md", ordered, ordered_speed, summary), *plot_rd(config.out, ordered)]
    return BenchOutcome(results=ordered, speed=ordered_speed, cached=cached_names, files=files, elapsed_s=elapsed)
