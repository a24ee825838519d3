"""What latent refinement buys at each quality: `python -m vqcodec.bench.refinement DIR [--steps N]`.

Every image of DIR is compressed at every quality of the model twice, without latent refinement
(`refine_steps=0`) and with it (`--steps`, or `compress`'s default by quality, `SCHEDULES`), decoded, and
compared with the image in the measure the model's decoder was trained for (`ModelConfig.distortion`):
PSNR on 8-bit RGB, or MS-SSIM in dB; with bpp of the whole file and compress time, means over the images,
one thread. Qualities the refinement leaves alone are coded once. Then the BD-rate of the refined curve
against the plain one in that measure, over the qualities given and over those refined. The default
schedules were chosen from this on BSDS500 val (never on Kodak).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vqcodec import codec, latent_refinement
from vqcodec.data import find_images
from vqcodec.images import load_image
from vqcodec.zoo import ModelLike, as_model
from . import metrics
from .bdrate import bd_rate

Point = tuple[float, float, float]
"""Mean bpp, quality (PSNR or MS-SSIM, in dB) and compress time (s) over the images."""

MEASURES = {"mse": "PSNR", "ms-ssim": "MS-SSIM"}
"""What each distortion is reported as (both in dB)."""


def quality_db(distortion: str, ref: np.ndarray, out: np.ndarray) -> float:
    """PSNR of `out` against `ref` for an MSE model, MS-SSIM in dB for an MS-SSIM one."""
    if distortion == "mse":
        return metrics.psnr(ref, out)
    return metrics.ms_ssim_db(metrics.ms_ssim(metrics.as_tensor(ref), out))


def measure(model: ModelLike, paths: list[Path], qualities: list[int],
            steps: int | None = None) -> dict[int, tuple[Point, Point]]:
    """Per quality: the mean point coded without refinement and with `steps` (None: `compress`'s default), in
    the model's own measure (`quality_db`)."""
    m = as_model(model)
    levels = codec.quality_levels(m)
    sums: dict[tuple[int, int], np.ndarray] = {}
    for path in paths:
        ref = load_image(path).rgb
        height, width = ref.shape[:2]
        for q in qualities:
            refined = latent_refinement.steps_for(steps, levels[q - 1].stages, m.config.distortion)
            for kind, count in ((0, 0), (1, refined)) if refined else ((0, 0),):
                t0 = time.perf_counter()
                data = codec.compress(path, m, q, refine_steps=count)
                seconds = time.perf_counter() - t0
                out = np.asarray(codec.decompress(data, m).convert("RGB"))
                point = (metrics.bits_per_pixel(len(data), width, height), quality_db(m.config.distortion, ref, out),
                         seconds)
                sums[q, kind] = sums.get((q, kind), np.zeros(3)) + point
    means = {key: tuple(float(v) for v in total / len(paths)) for key, total in sums.items()}
    return {q: (means[q, 0], means.get((q, 1), means[q, 0])) for q in qualities}


def report(points: dict[int, tuple[Point, Point]], measure_name: str = "PSNR") -> str:
    """The points in Markdown, and the BD-rates of the refined curve against the plain one; `measure_name`
    says what the points' quality is ("PSNR" or "MS-SSIM", `MEASURES`)."""
    unit = f"{measure_name} (dB)"
    lines = [f"| quality | plain bpp | {unit} | compress (s) | refined bpp | {unit} | compress (s) | "
             f"{measure_name} gain | rate |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for q, (plain, refined) in sorted(points.items()):
        change = f"{refined[1] - plain[1]:+.3f} dB | {100 * (refined[0] / plain[0] - 1):+.1f}%" if refined != plain \
            else "- | -"
        lines.append(f"| {q} | {plain[0]:.4f} | {plain[1]:.3f} | {plain[2]:.2f} | {refined[0]:.4f} | "
                     f"{refined[1]:.3f} | {refined[2]:.2f} | {change} |")
    lines.append("")
    touched = [q for q, (plain, refined) in sorted(points.items()) if refined != plain]
    for label, chosen in (("every quality given", sorted(points)), ("the refined qualities", touched)):
        if len(chosen) < 4:
            continue
        plain = [points[q][0] for q in chosen]
        refined = [points[q][1] for q in chosen]
        r = bd_rate([p[0] for p in plain], [p[1] for p in plain], [p[0] for p in refined], [p[1] for p in refined])
        lines.append(f"BD-rate ({measure_name}) refined against plain over {label}: {r.percent:+.2f}% "
                     f"({r.low:.2f}-{r.high:.2f} dB)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder of images (BSDS500 val: never tune on Kodak)")
    parser.add_argument("--model", default="default", help="shipped model name or model file")
    parser.add_argument("--steps", type=int, default=None, help="refinement steps at every quality (default: "
                        "compress's by quality)")
    parser.add_argument("--qualities", default="", help="a range (9-28) or a list (5,28); default: every quality")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (sorted by name)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    m = as_model(args.model)
    top = len(codec.quality_levels(m))
    try:
        lo, _, hi = args.qualities.partition("-")
        qualities = (list(range(int(lo), int(hi) + 1)) if hi else [int(q) for q in args.qualities.split(",")]
                     ) if args.qualities else list(range(1, top + 1))
        latent_refinement.check_steps(args.steps)
    except ValueError as exc:
        sys.exit(f"error: --qualities takes a range (9-28) or a list (5,28), --steps 0..; {exc}")
    paths = find_images(args.data)[: args.limit or None]
    if not paths or not all(1 <= q <= top for q in qualities):
        sys.exit(f"error: no images found, or a quality outside 1..{top}")
    distortion = m.config.distortion
    print(report(measure(m, paths, qualities, args.steps), MEASURES[distortion]))
    print(f"\n{len(paths)} images of {args.data}, model {m.name} ({distortion}), steps "
          f"{args.steps if args.steps is not None else latent_refinement.describe_default(distortion)}")


if __name__ == "__main__":
    main()
