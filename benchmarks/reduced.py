"""Rate, PSNR and MS-SSIM of coding images shrunk, for choosing reduced qualities: `python -m vqcodec.bench.reduced DIR`.

Every image of DIR is shrunk by each `--factors` value (as `compress` shrinks for a reduced quality),
coded with each stage count of `--stages` at full-size rate weights and the default effort, decoded and
enlarged back (as `decompress` enlarges), and compared with the image itself: bpp over the image's own
pixels, PSNR on 8-bit RGB and MS-SSIM (in dB of the mean, as the benchmark reports it), means over the
images. Points on the upper convex hull of `--metric` against bpp (no mix of two others gives more
for the rate) are marked: those are worth a quality. The model cards' choices of reduced qualities
come from this on BSDS500 val (`--metric ms-ssim` for `perceptual`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from vqcodec import codec
from vqcodec.ladder import with_config
from . import metrics
from vqcodec.data import find_images
from vqcodec.images import load_image
from vqcodec.zoo import ModelLike, as_model


def measure(model: ModelLike, paths: list[Path], factors: list[float],
            stages: list[int]) -> dict[tuple[float, int], tuple[float, float, float]]:
    """Mean (bpp, PSNR, MS-SSIM in dB) of every image coded shrunk by each factor with each stage count; the
    MS-SSIM is NaN when an image is too small for its five scales."""
    m = as_model(model)
    ladder = replace(m.config, reduced_qualities=tuple((f, k) for f in factors if f > 1 for k in stages),
                     full_from=1, default_quality=0)
    probe = with_config(m, ladder)
    levels = codec.quality_levels(probe)
    sums: dict[tuple[float, int], np.ndarray] = {}
    for path in paths:
        ref = load_image(path).rgb
        height, width = ref.shape[:2]
        tensor = metrics.as_tensor(ref) if min(height, width) >= metrics.MIN_MS_SSIM_SIDE else None
        for q, level in enumerate(levels, start=1):
            if level.scale != 1 or (level.shrink == 1 and (1.0 not in factors or level.stages not in stages)):
                continue
            data = codec.compress(path, probe, q)
            out = np.asarray(codec.decompress(data, probe).convert("RGB"))
            similarity = metrics.ms_ssim(tensor, out) if tensor is not None else float("nan")
            key = (level.shrink, level.stages)
            sums[key] = sums.get(key, np.zeros(3)) + (metrics.bits_per_pixel(len(data), width, height),
                                                      metrics.psnr(ref, out), similarity)
    return {key: (v[0] / len(paths), v[1] / len(paths), metrics.ms_ssim_db(v[2] / len(paths)))
            for key, v in sums.items()}


def hull(points: dict[tuple[float, int], tuple[float, float]]) -> set[tuple[float, int]]:
    """The points on the upper convex hull of (bpp, quality): no mix of two others gives more for the rate."""
    order = sorted(points, key=lambda k: points[k])
    kept: list[tuple[float, int]] = []
    for key in order:
        if kept and points[key][1] <= points[kept[-1]][1]:
            continue
        while len(kept) >= 2:
            (r0, d0), (r1, d1), (r2, d2) = points[kept[-2]], points[kept[-1]], points[key]
            if (d1 - d0) * (r2 - r0) <= (d2 - d0) * (r1 - r0):
                kept.pop()
            else:
                break
        kept.append(key)
    return set(kept)


def table(points: dict[tuple[float, int], tuple[float, float, float]], metric: str = "psnr") -> str:
    """The points in Markdown, by rate, the points on the hull of `metric` (psnr or ms-ssim) marked."""
    column = 1 if metric == "psnr" else 2
    on = hull({key: (v[0], v[column]) for key, v in points.items()})
    lines = [f"| shrink | stages | bpp | PSNR (dB) | MS-SSIM (dB) | on the {metric} hull |", "|---|---|---|---|---|---|"]
    for key in sorted(points, key=lambda k: points[k]):
        bpp, psnr, similarity = points[key]
        lines.append(f"| {key[0]:g} | {key[1]} | {bpp:.4f} | {psnr:.2f} | {similarity:.3f} | {'yes' if key in on else ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder of images (BSDS500 val: never tune on Kodak)")
    parser.add_argument("--model", default="default", help="shipped model name or model file")
    parser.add_argument("--factors", default="1,1.25,1.5,1.75,2,2.5", help="shrink factors, 1 = full size")
    parser.add_argument("--stages", default="1-6", help="stage counts, e.g. 1-6 or 2,4")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (sorted by name)")
    parser.add_argument("--metric", choices=("psnr", "ms-ssim"), default="psnr", help="the quality the hull is of")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        factors = [float(f) for f in args.factors.split(",")]
        lo, _, hi = args.stages.partition("-")
        stages = list(range(int(lo), int(hi) + 1)) if hi else [int(k) for k in args.stages.split(",")]
    except ValueError:
        sys.exit("error: --factors takes numbers and --stages a range (1-6) or a list (2,4)")
    paths = find_images(args.data)[: args.limit or None]
    if not paths or any(f < 1 for f in factors):
        sys.exit("error: no images found, or a factor below 1")
    print(table(measure(args.model, paths, factors, stages), args.metric))
    print(f"\n{len(paths)} images of {args.data}")


if __name__ == "__main__":
    main()
