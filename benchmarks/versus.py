"""This vqcodec against another installed release, timed in the same run: speed ratios that hold on a noisy host.

`python -m vqcodec.bench.versus --baseline /path/to/other/venv/bin/python [IMAGE] [--model M] [--threads N]
[--rounds R]`

Two worker processes, one per Python (this one and the baseline's, each importing its own `vqcodec`), load
their default model (or the shipped model `--model` names) once and read the image; then, round by round and
alternating which goes first, each times `--repeats` compresses and decompresses at its model's default
quality. Interleaving puts both versions under the same machine load, which on a shared host moves absolute
times by half or more within an hour; the medians over all rounds and their ratios are printed as a Markdown
table (and written as JSON with `--out`). The workers use only the API every release has (`vqcodec.load_model`,
`vqcodec.compress`, `vqcodec.decompress`, `vqcodec.codec.default_quality`). Default image: kodim19 from
`../shared/data/kodak`, turned to landscape (768x512), as `vqcodec.bench.profile` uses.

With `--rd DIR`, each version instead compresses and decompresses every image of DIR (sorted by name, the
first `--limit`) at each of `--qualities`, both at once in their own processes, and the table gives each
quality's bpp (whole files) and mean PSNR on 8-bit RGB for both, with the BD-rate (PSNR) of this version
against the baseline: what a change to the code, rather than to a model, costs in rate/distortion.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from vqcodec.data import find_images
from vqcodec.errors import VqcodecError

from .bdrate import bd_rate
from .profile import DEFAULT_IMAGE

WORKER = r"""
import json, sys, time
import torch
from PIL import Image
import vqcodec
from vqcodec import codec

torch.set_num_threads(int(sys.argv[2]))
model = vqcodec.load_model(sys.argv[3] or None)
with Image.open(sys.argv[1]) as im:
    image = im.convert("RGB")
if image.height > image.width:
    image = image.transpose(Image.Transpose.ROTATE_90)
quality = codec.default_quality(model)
data = vqcodec.compress(image, model, quality)
vqcodec.decompress(data, model)
print(json.dumps({"version": vqcodec.__version__, "quality": quality, "bytes": len(data),
                  "fingerprint": model.fingerprint.hex(), "size": list(image.size)}), flush=True)
for line in sys.stdin:
    enc, dec = [], []
    for _ in range(int(line)):
        t0 = time.perf_counter()
        data = vqcodec.compress(image, model, quality)
        t1 = time.perf_counter()
        vqcodec.decompress(data, model)
        enc.append(t1 - t0)
        dec.append(time.perf_counter() - t1)
    print(json.dumps({"compress_s": enc, "decompress_s": dec}), flush=True)
"""


RD_WORKER = r"""
import json, sys
import numpy as np
import torch
from PIL import Image
import vqcodec

torch.set_num_threads(int(sys.argv[2]))
model = vqcodec.load_model(sys.argv[4] or None)
paths, qualities = json.loads(sys.argv[1]), json.loads(sys.argv[3])
points = {}
for quality in qualities:
    bits = pixels = 0
    psnrs = []
    for path in paths:
        with Image.open(path) as im:
            image = im.convert("RGB")
        data = vqcodec.compress(image, model, quality)
        ref = np.asarray(image, dtype=np.float64)
        out = np.asarray(vqcodec.decompress(data, model).convert("RGB"), dtype=np.float64)
        psnrs.append(10 * np.log10(255.0**2 / max(float(((out - ref) ** 2).mean()), 1e-10)))
        bits += 8 * len(data)
        pixels += ref.shape[0] * ref.shape[1]
    points[quality] = [bits / pixels, float(np.mean(psnrs))]
print(json.dumps({"version": vqcodec.__version__, "points": points}), flush=True)
"""


def compare_rd(baseline: str, paths: list[Path], qualities: list[int], threads: int,
               model: str = "") -> dict[str, Any]:
    """Each version's (bpp, mean PSNR) per quality over `paths`, both computed at once, with the shipped model
    `model` ("": the default one)."""
    args = [RD_WORKER, json.dumps([str(p) for p in paths]), str(threads), json.dumps(qualities), model]
    procs = {name: subprocess.Popen([python, "-c", *args], stdout=subprocess.PIPE, text=True,
                                    cwd=tempfile.gettempdir())
             for name, python in (("this", sys.executable), ("baseline", baseline))}
    result: dict[str, Any] = {"images": [p.name for p in paths], "qualities": qualities, "threads": threads}
    for name, proc in procs.items():
        out, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"the worker of {proc.args[0]} stopped (exit code {proc.returncode})")
        result[name] = json.loads(out)
    return result


def report_rd(result: dict[str, Any]) -> str:
    """A Markdown table of both versions' bpp and PSNR per quality, and the BD-rate of this one against the
    baseline."""
    this, base = result["this"], result["baseline"]
    qualities = [str(q) for q in result["qualities"]]
    rows = [f"{len(result['images'])} images, {result['threads']} thread(s)", "",
            f"| quality | vqcodec {this['version']} bpp | PSNR (dB) | vqcodec {base['version']} bpp | PSNR (dB) "
            "| rate | PSNR |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for q in qualities:
        (ra, da), (rb, db) = this["points"][q], base["points"][q]
        rows.append(f"| {q} | {ra:.4f} | {da:.3f} | {rb:.4f} | {db:.3f} | {100 * (ra / rb - 1):+.2f}% "
                    f"| {da - db:+.4f} dB |")
    if len(qualities) >= 4:
        bd = bd_rate(*zip(*(base["points"][q] for q in qualities)), *zip(*(this["points"][q] for q in qualities)))
        rows += ["", f"BD-rate (PSNR) of vqcodec {this['version']} against {base['version']}: {bd.percent:+.3f}% "
                 f"({bd.low:.2f}-{bd.high:.2f} dB)"]
    return "\n".join(rows)


class Worker:
    """One Python's vqcodec, loaded and waiting for timing requests."""

    def __init__(self, python: str, image: Path, threads: int, model: str = "") -> None:
        # in a neutral folder: `python -c` imports from the working directory first, which in a source
        # checkout would hand both workers the checkout's vqcodec
        self.proc = subprocess.Popen([python, "-c", WORKER, str(image), str(threads), model], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())
        self.info: dict[str, Any] = json.loads(self._line())
        self.times: dict[str, list[float]] = {"compress_s": [], "decompress_s": []}

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker of {self.proc.args[0]} stopped (exit code {self.proc.wait()})")
        return line

    def time(self, repeats: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{repeats}\n")
        self.proc.stdin.flush()
        for key, values in json.loads(self._line()).items():
            self.times[key] += values

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


def compare(baseline: str, image: Path, threads: int, rounds: int, repeats: int, model: str = "") -> dict[str, Any]:
    """Both versions' details and all their times, interleaved round by round, with the shipped model `model`
    ("": the default one)."""
    workers = {"this": Worker(sys.executable, image, threads, model),
               "baseline": Worker(baseline, image, threads, model)}
    try:
        for r in range(rounds):
            for name in (("this", "baseline") if r % 2 == 0 else ("baseline", "this")):
                workers[name].time(repeats)
    finally:
        for w in workers.values():
            w.close()
    return {"image": str(image), "model": model or "default", "threads": threads, "rounds": rounds, "repeats": repeats,
            **{name: {**w.info, **w.times} for name, w in workers.items()}}


def report(result: dict[str, Any]) -> str:
    """A Markdown table of median milliseconds per version and operation, and this version's ratio to the
    baseline."""
    this, base = result["this"], result["baseline"]
    rows = [f"{result['image']} ({this['size'][0]}x{this['size'][1]}), model {result.get('model', 'default')}, "
            f"{result['threads']} thread(s), "
            f"{result['rounds']} interleaved rounds of {result['repeats']}", "",
            "| | vqcodec " + this["version"] + " | vqcodec " + base["version"] + " | ratio |", "|---|---:|---:|---:|",
            f"| quality (its default) | {this['quality']} | {base['quality']} | |",
            f"| file (bytes) | {this['bytes']} | {base['bytes']} | {this['bytes'] / base['bytes']:.2f} |"]
    for key, label in (("compress_s", "compress (ms)"), ("decompress_s", "decompress (ms)")):
        a, b = statistics.median(this[key]), statistics.median(base[key])
        rows.append(f"| {label}, median | {1000 * a:.1f} | {1000 * b:.1f} | {a / b:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--baseline", required=True, help="the Python executable of the other release's environment")
    parser.add_argument("--model", default="", help="a shipped model both releases have (default: the default model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write every time and both versions' details as JSON")
    parser.add_argument("--rd", type=Path, metavar="DIR", help="compare rate/distortion on the images of DIR instead")
    parser.add_argument("--qualities", default="1,3,5,8,12,16,21,28", help="with --rd: qualities (default %(default)s)")
    parser.add_argument("--limit", type=int, default=0, help="with --rd: only the first N images (sorted by name)")
    args = parser.parse_args(argv)
    if args.rd is not None:
        try:
            paths = find_images(args.rd.resolve())[: args.limit or None]
        except VqcodecError as e:
            parser.error(str(e))
        result = compare_rd(args.baseline, paths, [int(q) for q in args.qualities.split(",")], args.threads,
                            args.model)
    else:
        result = compare(args.baseline, args.image.resolve(), args.threads, args.rounds, args.repeats, args.model)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(report_rd(result) if args.rd is not None else report(result))


if __name__ == "__main__":
    main()
