"""Bytes format 2 saves over format 1, measured on real files: `python -m vqcodec.bench.header_savings DIR`.

Both formats carry the same stage streams (whole 32-bit words of the range coder);
they differ in the header and the checksums. A format-1 file of the same streams
is `40 + len(model name) + 4 x stages + payload` bytes (docs/format.md, version 1:
magic 8, version, mode, width 4, height 4, name length, name, fingerprint 8,
stages, grid 4, a 4-byte length per stage, alpha length 4, CRC-32 4).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from PIL import Image

from vqcodec import codec, container
from vqcodec.zoo import load_model


def v1_size(data: bytes, model_name: str) -> int:
    """Length of the format-1 file holding the same streams and alpha plane as the format-2 file `data`."""
    f = container.unpack(data)
    return 40 + len(model_name.encode()) + 4 * f.header.stages + sum(map(len, f.streams)) + len(f.alpha)


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
            saved, shares, bpps, heads = [], [], [], []
            for p in paths:
                with Image.open(p) as im:
                    im = im.convert("RGB")
                    if crop:
                        left, top = (im.width - crop) // 2, (im.height - crop) // 2
                        im = im.crop((left, top, left + crop, top + crop))
                    data = codec.compress(im, model, q)
                old = v1_size(data, model.name)
                saved.append(old - len(data))
                shares.append((old - len(data)) / old)
                bpps.append(8 * (old - len(data)) / (im.width * im.height))
                heads.append(len(data) - sum(map(len, container.unpack(data).streams)))
            print(f"{label}, quality {q}: {len(paths)} images, format-2 overhead {min(heads)}-{max(heads)} bytes, "
                  f"saved {statistics.mean(saved):.1f} bytes per file ({min(saved)}-{max(saved)}), "
                  f"{100 * statistics.mean(shares):.2f}% of the format-1 file, {statistics.mean(bpps):.5f} bpp")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
