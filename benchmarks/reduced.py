"""Rate and PSNR of coding images shrunk, for choosing reduced qualities: `python -m vqcodec.bench.reduced DIR`.

Every image of DIR is shrunk by each `--factors` value (as `compress` shrinks for a reduced quality),
coded with each stage count of `--stages` at full-size rate weights and the default effort, decoded and
enlarged back (as `decompress` enlarges), and compared with the image itself: bpp over the image's own
pixels, PSNR on 8-bit RGB, means over the images. Points that no other point beats in both (fewer
bits and more dB, on the upper convex hull of the curve) are marked: those are worth a quality. The
model card's choice of `default`'s reduced qualities comes from this on BSDS500 val.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from vqcodec import codec
from vqcodec.data import find_images
from vqcodec.images import load_image
from vqcodec.zoo import ModelLike, as_model


def measure(model: ModelLike, paths: list[Path], factors: list[float], stages: list[int]) -> dict[tuple[float, int], tuple[float, float]]:
    """Mean (bpp, PSNR) of every image coded shrunk by each factor with each stage count."""
    m = as_model(model)
    ladder = replace(m.config, reduced_qualities=tuple((f, k) for f in factors if f > 1 for k in stages),
                     full_from=1, default_quality=0)
    net = copy.copy(m.net)  # the same weights under another ladder
    net.config = ladder
    probe = replace(m, net=net)
    levels = codec.quality_levels(probe)
    sums: dict[tuple[float, int], np.ndarray] = {}
    for path in paths:
        image = load_image(path)
        ref = image.rgb.astype(np.float64)
        height, width = ref.shape[:2]
        for q, level in enumerate(levels, start=1):
            if level.scale != 1 or (level.shrink == 1 and (1.0 not in factors or level.stages not in stages)):
                continue
            data = codec.compress(path, probe, q)
            out = np.asarray(codec.decompress(data, probe).convert("RGB"), dtype=np.float64)
            psnr = 10 * np.log10(255.0**2 / max(np.mean((out - ref) ** 2), 1e-10))
            key = (level.shrink, level.stages)
            sums[key] = sums.get(key, np.zeros(2)) + (8 * len(data) / (width * height), psnr)
    return {key: (float(v[0]) / len(paths), float(v[1]) / len(paths)) for key, v in sums.items()}


def hull(points: dict[tuple[float, int], tuple[float, float]]) -> set[tuple[float, int]]:
    """The points on the upper convex hull of PSNR against bpp: no mix of two others gives more dB for the rate."""
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


def table(points: dict[tuple[float, int], tuple[float, float]]) -> str:
    """The points in Markdown, by rate, hull points marked."""
    on = hull(points)
    lines = ["| shrink | stages | bpp | PSNR (dB) | on the hull |", "|---|---|---|---|---|"]
    for key in sorted(points, key=lambda k: points[k]):
        bpp, psnr = points[key]
        lines.append(f"| {key[0]:g} | {key[1]} | {bpp:.4f} | {psnr:.2f} | {'yes' if key in on else ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder of images (BSDS500 val: never tune on Kodak)")
    parser.add_argument("--model", default="default", help="shipped model name or model file")
    parser.add_argument("--factors", default="1,1.25,1.5,1.75,2,2.5", help="shrink factors, 1 = full size")
    parser.add_argument("--stages", default="1-6", help="stage counts, e.g. 1-6 or 2,4")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (sorted by name)")
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
    print(table(measure(args.model, paths, factors, stages)))
    print(f"\n{len(paths)} images of {args.data}")


if __name__ == "__main__":
    main()
