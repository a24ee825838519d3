"""Bytes format 3 saves over formats 2 and 1, measured on real files: `python -m vqcodec.bench.header_savings DIR`.

All three formats carry the same stage streams (whole 32-bit words of the range coder);
they differ in the header and the checks (docs/format.md):

- version 1: `40 + len(model name) + 4 x stages + payload` bytes (magic 8, version, mode,
  width 4, height 4, name length, name, fingerprint 8, stages, grid 4, a 4-byte length per
  stage, alpha length 4, CRC-32 4);
- version 2: a varint header with a 4-byte model id and a CRC-32, and a CRC-32 after
  every block;
- version 3: what `vqcodec compress` writes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from PIL import Image

from vqcodec import codec, container
from vqcodec.container import VqzFile, varint
from vqcodec.zoo import load_model


def v1_size(f: VqzFile, model_name: str) -> int:
    """Length of the format-1 file holding the same streams and alpha plane."""
    return 40 + len(model_name.encode()) + 4 * f.header.stages + sum(map(len, f.streams)) + len(f.alpha)


def v2_size(f: VqzFile) -> int:
    """Length of the format-2 file holding the same (trimmed) streams and alpha plane."""
    h = f.header
    head = 4 + 1 + 1 + len(varint(h.width)) + len(varint(h.height)) + container.MODEL_ID_BYTES + 1
    head += sum(len(varint(n)) for n in h.stage_lengths) + (len(varint(h.alpha_length)) if h.alpha_length else 0)
    blocks = list(h.stage_lengths) + ([h.alpha_length] if h.alpha_length else [])
    return head + container.CRC_BYTES + sum(n + container.CRC_BYTES for n in blocks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder of images (Kodak)")
    parser.add_argument("--quality", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--crop", type=int, default=128, help="side of the centre crops also measured")
    args = parser.parse_args(argv)
    model = load_model()
    paths = sorted(args.data.glob("*.png"))
    for label, crop in (("full", None), (f"{args.crop}x{args.crop} centre crop", args.crop)):
        for q in args.quality:
            heads, saved2, saved1, share2, bpp2 = [], [], [], [], []
            for p in paths:
                with Image.open(p) as im:
                    im = im.convert("RGB")
                    if crop:
                        left, top = (im.width - crop) // 2, (im.height - crop) // 2
                        im = im.crop((left, top, left + crop, top + crop))
                    data = codec.compress(im, model, q)
                f = container.unpack(data)
                heads.append(len(data) - sum(f.header.stage_lengths))
                saved2.append(v2_size(f) - len(data))
                saved1.append(v1_size(f, model.name) - len(data))
                share2.append(saved2[-1] / v2_size(f))
                bpp2.append(8 * saved2[-1] / (im.width * im.height))
            print(f"{label}, quality {q}: {len(paths)} images, format-3 overhead {min(heads)}-{max(heads)} bytes, "
                  f"saved against format 2 {statistics.mean(saved2):.1f} bytes per file ({min(saved2)}-{max(saved2)}), "
                  f"{100 * statistics.mean(share2):.2f}% of the format-2 file, {statistics.mean(bpp2):.5f} bpp; "
                  f"against format 1 {statistics.mean(saved1):.1f} bytes")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
