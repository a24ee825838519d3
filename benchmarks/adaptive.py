"""Adaptive coding against the prior's fixed tables, on the same codes: `python -m vqcodec.bench.adaptive DIR`.

Every image of DIR is quantized as `vqcodec compress` quantizes it at each quality (its stages, rate
weights, default effort and latent refinement), and the codes are range-coded both ways: under the
prior's fixed tables (`ContextPrior.encode_grids`, format versions 3 and 4) and adaptively
(`entropy.adaptive.encode_grids`, versions 5 and 6). Both streams decode to the same codes, so the
images are the same and only the bytes differ; the table gives both sums of stream bytes and the mean
encode time per image. How `adaptive.PASS_LEVELS` and `STRENGTH` were chosen is in docs/entropy.md.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vqcodec import codec
from vqcodec.data import find_images
from vqcodec.entropy import adaptive
from vqcodec.images import load_image
from vqcodec.zoo import ModelLike, as_model


@dataclass(frozen=True)
class Row:
    """One quality over the folder: stream bytes and encode seconds summed over images, both ways."""

    quality: int
    images: int
    fixed_bytes: int
    adaptive_bytes: int
    fixed_seconds: float
    adaptive_seconds: float

    @property
    def change(self) -> float:
        """Relative change in bytes of adaptive coding against the fixed tables."""
        return self.adaptive_bytes / self.fixed_bytes - 1


def measure(model: ModelLike, paths: list[Path], quality: int) -> Row:
    """Both codings of the codes `compress` picks at `quality` for these images."""
    m = as_model(model)
    fixed = learned = 0
    fixed_s = learned_s = 0.0
    for path in paths:
        grids = codec.encode_indices(m, load_image(path).rgb, quality).astype(np.int64)
        start = time.perf_counter()
        fixed += sum(map(len, m.prior.encode_grids(grids)))
        middle = time.perf_counter()
        learned += sum(map(len, adaptive.encode_grids(m.prior, grids)))
        fixed_s, learned_s = fixed_s + middle - start, learned_s + time.perf_counter() - middle
    return Row(quality, len(paths), fixed, learned, fixed_s, learned_s)


def table(rows: list[Row]) -> str:
    """The rows in Markdown."""
    lines = ["| quality | fixed tables (bytes) | adaptive (bytes) | change | encode, fixed (ms) | adaptive (ms) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.quality} | {r.fixed_bytes:,} | {r.adaptive_bytes:,} | {100 * r.change:+.2f}% | "
                     f"{1e3 * r.fixed_seconds / r.images:.1f} | {1e3 * r.adaptive_seconds / r.images:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder of images (BSDS500 val: never tune on Kodak)")
    parser.add_argument("--model", default="default", help="shipped model name or model file")
    parser.add_argument("--qualities", default="6,9,12,16,20,21,24,26,27,28", help="comma-separated")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    paths = find_images(args.data)
    m = as_model(args.model)
    print(f"model {m.name}, {len(paths)} images from {args.data}", flush=True)
    rows = []
    for q in (int(x) for x in args.qualities.split(",")):
        rows.append(measure(m, paths, q))
        print(f"quality {q}: {100 * rows[-1].change:+.2f}%", flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
