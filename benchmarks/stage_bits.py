"""Bits per cell of each stage under a model's prior, with and without its context: `python -m vqcodec.bench.stage_bits DIR`.

Every image of DIR is coded as `vqcodec compress` codes it at `--quality` (the quality's
stages and rate weights, effort 0), and each stage's codes are priced two ways: under
the model's prior as the range coder uses it (`stage_bits`: in context), and under the
prior's marginal over contexts (`code_bits`: the same table without context). The gap
is what the context buys, stage by stage; the model card states it for BSDS500 val. These are the
fixed tables: files of 6 stages or more are coded adaptively (`python -m vqcodec.bench.adaptive`
compares the two).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vqcodec import codec
from vqcodec.data import find_images
from vqcodec.images import load_image
from vqcodec.zoo import ModelLike, as_model

@dataclass(frozen=True)
class StageBits:
    """Ideal bits summed over images, per stage: in context and under the marginal; cells and pixels counted."""

    context: np.ndarray
    marginal: np.ndarray
    cells: int
    pixels: int

    def per_cell(self) -> tuple[np.ndarray, np.ndarray]:
        return self.context / self.cells, self.marginal / self.cells


def measure(model: ModelLike, paths: list[Path], quality: int) -> StageBits:
    """Per-stage ideal bits of the codes `compress` picks at `quality` for these images."""
    m = as_model(model)
    prior = m.prior
    context, marginal, cells, pixels = None, None, 0, 0
    for path in paths:
        rgb = load_image(path).rgb
        grids = codec.encode_indices(m, rgb, quality).astype(np.int64)
        stages = grids.shape[0]
        if context is None:
            context, marginal = np.zeros(stages), np.zeros(stages)
        for s in range(stages):
            context[s] += prior.stage_bits(grids, s)
            marginal[s] += float(prior.code_bits(s)[grids[s].ravel()].sum())
        cells += grids.shape[1] * grids.shape[2]
        pixels += rgb.shape[0] * rgb.shape[1]
    if context is None:
        raise ValueError("no images")
    return StageBits(context, marginal, cells, pixels)


def table(bits: StageBits, codebook_size: int) -> str:
    """The per-stage table in Markdown, with the totals and the ideal bpp."""
    ctx, marg = bits.per_cell()
    lines = ["| stage | bits per cell, in context | without context (marginal) | saved by the context | uniform |",
             "|---|---|---|---|---|"]
    uniform = float(np.log2(codebook_size))
    for s, (c, u) in enumerate(zip(ctx, marg), start=1):
        lines.append(f"| {s} | {c:.3f} | {u:.3f} | {100 * (1 - c / u):.1f}% | {uniform:.0f} |")
    lines.append(f"| all | {ctx.sum():.3f} | {marg.sum():.3f} | {100 * (1 - ctx.sum() / marg.sum()):.1f}% | "
                 f"{uniform * len(ctx):.0f} |")
    lines.append(f"\nideal rate: {bits.context.sum() / bits.pixels:.4f} bpp in context, "
                 f"{bits.marginal.sum() / bits.pixels:.4f} bpp without ({bits.cells} cells, {bits.pixels} pixels)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder of images (BSDS500 val: never tune on Kodak)")
    parser.add_argument("--model", default="default", help="shipped model name or model file")
    parser.add_argument("--quality", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    paths = find_images(args.data)
    m = as_model(args.model)
    print(f"model {m.name}, quality {args.quality}, {len(paths)} images from {args.data}")
    print(table(measure(m, paths, args.quality), m.config.codebook_size))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
