"""Where compress and decompress spend their time: each phase of one image timed alone.

`python -m vqcodec.bench.profile [IMAGE] [--quality Q] [--threads N] [--repeats R]` prints a
Markdown table of median milliseconds per phase (model loaded, one warm-up), the table of
docs/benchmarks.md. Default image: kodim19 from `../shared/data/kodak`, turned to landscape.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqcodec import codec, container
from vqcodec.zoo import load_model

DEFAULT_IMAGE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kodak" / "kodim19.png"


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn` in milliseconds over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def profile(path: Path, model: str | None, quality: int | None, repeats: int) -> list[tuple[str, float]]:
    """(phase, median ms) for compressing and decompressing the image at `path`."""
    m = load_model(model)
    with Image.open(path) as im:
        rgb_image = im.convert("RGB")
    if rgb_image.height > rgb_image.width:
        rgb_image = rgb_image.transpose(Image.Transpose.ROTATE_90)
    rgb = np.asarray(rgb_image)
    q = codec.check_quality(m, quality)
    grid = codec.grid_shape(m, rgb.shape[1], rgb.shape[0])
    latents = codec.embed(m, rgb)
    indices = codec.quantize(m, latents, grid, q)
    data = codec.compress(rgb_image, m, q)
    parsed = container.unpack(data)
    grids = torch.from_numpy(indices.astype(np.int64))[None]
    pixels = codec.decode_indices(m, indices, rgb.shape[1], rgb.shape[0])
    rows = [
        ("read PNG (Pillow)", lambda: np.asarray(Image.open(path).convert("RGB"))),
        ("encoder network", lambda: codec.embed(m, rgb)),
        (f"quantize, {indices.shape[0]} stages", lambda: codec.quantize(m, latents, grid, q)),
        ("entropy encode" + (" (adaptive)" if parsed.header.adaptive else ""),
         lambda: codec.entropy_encode(m, indices)),
        ("compress (whole)", lambda: codec.compress(rgb_image, m, q)),
        ("entropy decode", lambda: codec.entropy_decode(m.prior_for(parsed.header.model_id), parsed.streams, *grid,
                                                        parsed.header.adaptive)),
        ("decoder network, inference form", lambda: m.decode(grids)),
        ("decoder network, trained modules", lambda: m.net.decode(grids)),
        ("decompress (whole)", lambda: codec.decompress(data, m)),
        ("write PNG (Pillow)", lambda: Image.fromarray(pixels).save(io.BytesIO(), "PNG")),
    ]
    with torch.inference_mode():
        return [(name, median_ms(fn, repeats)) for name, fn in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--model", default=None, help="shipped model name or model file (default: default)")
    parser.add_argument("--quality", type=int, default=None, help="quality (default: the model's default)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per phase (default 7)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = profile(args.image.resolve(), args.model, args.quality, args.repeats)
    print(f"{args.image.name}, {args.threads} thread(s)\n\n| phase | ms |\n|---|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.0f} |")


if __name__ == "__main__":
    main()
