"""`vqcodec tokens` and `vqcodec detokenize`: the CLI face of `vqcodec.tokens`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .codec_cmds import SUFFIX_FORMATS, Force, MaxPixels, ModelOpt, Shard, parse_shard
from .console import console
from vqcodec import batch, shards
from vqcodec.errors import OutputError
from vqcodec.images import MAX_INPUT_PIXELS
from vqcodec.text import printable
from vqcodec.safe_io import check_output, software_exif, write_atomic


def tokens(
    inputs: Annotated[list[Path], typer.Argument(help="Images, .vqz files, or folders of them (walked recursively).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The .npz file to write.")],
    quality: Annotated[Optional[int], typer.Option("--quality", "-q", help="Quality, as compress takes it (sets the stages per grid); default: for .vqz files, every stage all their headers announce; for images, compress's default.")] = None,
    model: ModelOpt = None,
    shard: Shard = None,
    max_pixels: MaxPixels = MAX_INPUT_PIXELS,
    force: Force = False,
) -> None:
    """Encode images to index grids (one per quantizer stage) and save them as integer arrays in a .npz.

    .vqz files are not re-encoded: their grids are read from the file (entropy
    decoding only), and equal those of the images they were compressed from.
    Folders are walked for images and .vqz files; --shard K/N keeps every N-th
    file of the sorted list from the K-th, so N jobs split a dataset and their
    .npz files together hold what one run would.

    The file also names the model (and its fingerprint) and keeps each
    image's size, mode and alpha plane, so `vqcodec detokenize` rebuilds
    exactly what `decompress` gives at the same quality. Read it with
    numpy.load: the grids of the i-th image are tokens_<i>, an integer array
    of shape (quality, rows, columns).

    Example: vqcodec tokens photo.png other.png -q 4 --out tokens.npz
    """
    from vqcodec import codec  # here, so other commands start without torch
    from vqcodec.tokens import save_tokens, tokenize, vqz_quality
    from vqcodec.zoo import load_model

    parse_shard(shard)
    m = load_model(model)
    try:
        codec.check_quality(m, quality)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--quality") from None
    check_output(out, force, inputs)
    files = _walk(inputs)
    if not files:
        raise OutputError("no input files found")
    mine = shards.select(files, parse_shard(shard))
    if not mine:
        console.print(f"shard {shard}: no files (the other shards hold all {len(files)})", markup=False, highlight=False)
        return
    if quality is None and all(map(batch.is_vqz, files)):
        quality = vqz_quality(m, files)  # over every shard's files, so that all shards keep the same stages
    result = tokenize(mine, m, quality, max_pixels=max_pixels)
    save_tokens(result, out, overwrite=force, inputs=files)
    for t in result.images:
        console.print(printable(f"{t.name}: {t.width}x{t.height} {t.mode}, grids {'x'.join(map(str, t.grids.shape))}"),
                      markup=False, highlight=False)
    console.print(printable(f"{len(result.images)} image(s) -> {out}: model {m.name}, {result.quality} stage(s), "
                            f"codes 0..{m.config.codebook_size - 1}"), markup=False, highlight=False)


def _walk(inputs: list[Path]) -> list[Path]:
    """Files named, and the images and .vqz files under folders named (recursively, sorted)."""
    files = []
    for p in inputs:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and (batch.is_image(f) or batch.is_vqz(f)))
        else:
            files.append(p)
    return files


def detokenize(
    source: Annotated[Path, typer.Argument(help="A .npz file written by vqcodec tokens.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output image when the file holds one image, else folder; default: beside the .npz, one PNG per image.")] = None,
    model: ModelOpt = None,
    max_pixels: MaxPixels = MAX_INPUT_PIXELS,
    force: Force = False,
) -> None:
    """Decode the index grids of a tokens file back to images (NAME.decoded.png per image; NAME-i... if names clash).

    The pixels are exactly those `vqcodec decompress` gives for a .vqz of
    the same image, model and quality. The model named in the file is used
    unless --model is given.

    Example: vqcodec detokenize tokens.npz -o decoded/
    """
    from vqcodec.batch import OUTPUT_FORMATS  # here, so other commands start without torch
    from vqcodec.tokens import detokenize as decode_tokens
    from vqcodec.tokens import load_tokens, model_for_tokens

    token_set = load_tokens(source, max_pixels)
    m = model_for_tokens(token_set, model)
    one_file = output is not None and len(token_set.images) == 1 and not output.is_dir()
    if one_file:
        fmt = SUFFIX_FORMATS.get(output.suffix.lower())
        if fmt is None:
            raise OutputError(f"{output}: unknown image suffix (use .png, .tif, .bmp or .webp)")
        targets = [(output, fmt)]
    else:
        folder = output if output is not None else source.parent
        stems = [printable(Path(t.name).stem) for t in token_set.images]
        clashes = {s for s in stems if stems.count(s) > 1}
        # NAME.decoded.png, as decompress names its outputs: never the original NAME.png beside it.
        targets = [(folder / (f"{s}-{i}.decoded.png" if s in clashes else f"{s}.decoded.png"), "png")
                   for i, s in enumerate(stems)]
    for dst, _ in targets:
        check_output(dst, force, [source])
    for t, (dst, fmt) in zip(token_set.images, targets):
        image = decode_tokens(t, m, max_pixels)
        options: dict[str, object] = {"lossless": True} if fmt == "webp" else {}
        if fmt != "bmp":
            options["exif"] = software_exif()
        write_atomic(dst, lambda f, im=image: im.save(f, format=OUTPUT_FORMATS[fmt], **options), overwrite=force,
                     inputs=[source])
        console.print(printable(f"{t.name} -> {dst}: {image.width}x{image.height} {image.mode}"), markup=False,
                      highlight=False)
