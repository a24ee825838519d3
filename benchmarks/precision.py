"""What bfloat16 inference costs: `python -m vqcodec.bench.precision DIR [--model M] [--qualities 1,5,28]`.

Every image of DIR is compressed at each quality twice, with the float32 inference forms and code search and
with the bfloat16 ones (`CodecModel.arithmetic`; what a CPU with AMX or AVX-512 BF16 runs by default), and
each file is decoded; the float32 file is decoded in bfloat16 too. Per quality, means over the images (one
thread): bpp, PSNR and compress and decompress times of each, and the change in PSNR when the same file is
decoded in bfloat16 (mean and largest over the images: what issue #16 allows to reach 0.02 dB). Then the
BD-rate (PSNR) of the bfloat16 curve against the float32 one. On a CPU without native bfloat16 the
bfloat16 rows are emulated: right, but slow.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vqcodec import codec
from vqcodec.data import find_images
from vqcodec.images import load_image
from vqcodec.zoo import as_model
from . import metrics
from .bdrate import bd_rate

ARITHMETICS = ("float32", "bfloat16")


def _timed(fn, *args):  # noqa: ANN001, ANN002, ANN202
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def measure(model: str, paths: list[Path], qualities: list[int]) -> dict[int, dict[str, list[float]]]:
    """Per quality, per measure ("bpp float32", "psnr bfloat16", "decode change", ...): one value per image."""
    base = as_model(model)
    models = {a: dataclasses.replace(base, arithmetic=a) for a in ARITHMETICS}
    out: dict[int, dict[str, list[float]]] = {q: {} for q in qualities}
    for path in paths:
        ref = load_image(path).rgb
        height, width = ref.shape[:2]
        for q in qualities:
            row = out[q]
            files = {}
            for a, m in models.items():
                data, enc = _timed(codec.compress, path, m, q)
                image, dec = _timed(codec.decompress, data, m)
                files[a] = data
                for key, value in ((f"bpp {a}", metrics.bits_per_pixel(len(data), width, height)),
                                   (f"psnr {a}", metrics.psnr(ref, np.asarray(image.convert("RGB")))),
                                   (f"compress s {a}", enc), (f"decompress s {a}", dec)):
                    row.setdefault(key, []).append(value)
            crossed = np.asarray(codec.decompress(files["float32"], models["bfloat16"]).convert("RGB"))
            row.setdefault("decode change", []).append(metrics.psnr(ref, crossed) - row["psnr float32"][-1])
    return out


def report(points: dict[int, dict[str, list[float]]]) -> str:
    """The means per quality in Markdown, and the BD-rate of bfloat16 against float32."""
    lines = ["| quality | float32 bpp | PSNR (dB) | compress / decompress (s) | bfloat16 bpp | PSNR (dB) | "
             "compress / decompress (s) | same file decoded in bfloat16: mean, largest change (dB) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    mean = {q: {k: float(np.mean(v)) for k, v in row.items()} for q, row in points.items()}
    for q, m in sorted(mean.items()):
        change = points[q]["decode change"]
        lines.append(f"| {q} | {m['bpp float32']:.4f} | {m['psnr float32']:.3f} | {m['compress s float32']:.3f} / "
                     f"{m['decompress s float32']:.3f} | {m['bpp bfloat16']:.4f} | {m['psnr bfloat16']:.3f} | "
                     f"{m['compress s bfloat16']:.3f} / {m['decompress s bfloat16']:.3f} | "
                     f"{np.mean(change):+.4f}, {max(change, key=abs):+.4f} |")
    qs = sorted(mean)
    if len(qs) >= 4:
        r = bd_rate([mean[q]["bpp float32"] for q in qs], [mean[q]["psnr float32"] for q in qs],
                    [mean[q]["bpp bfloat16"] for q in qs], [mean[q]["psnr bfloat16"] for q in qs])
        lines += ["", f"BD-rate (PSNR) of bfloat16 against float32: {r.percent:+.2f}% ({r.low:.2f}-{r.high:.2f} dB)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder of images")
    parser.add_argument("--model", default="default", help="shipped model name or model file")
    parser.add_argument("--qualities", default="", help="comma-separated; default: every quality")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (sorted by name)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    top = len(codec.quality_levels(as_model(args.model)))
    try:
        qualities = [int(q) for q in args.qualities.split(",")] if args.qualities else list(range(1, top + 1))
    except ValueError:
        sys.exit("error: --qualities takes comma-separated numbers")
    paths = find_images(args.data)[: args.limit or None]
    if not paths or not all(1 <= q <= top for q in qualities):
        sys.exit(f"error: no images found, or a quality outside 1..{top}")
    print(report(measure(args.model, paths, qualities)))
    print(f"\n{len(paths)} images of {args.data}, model {args.model}, one thread")


if __name__ == "__main__":
    main()
