"""`vqcodec tokens` and `vqcodec detokenize`: the CLI face of `vqcodec.tokens`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .codec_cmds import SUFFIX_FORMATS, Force, Inputs, ModelOpt
from .console import console
from vqcodec.errors import OutputError
from vqcodec.safe_io import check_output, write_atomic


def tokens(
    inputs: Inputs,
    out: Annotated[Path, typer.Option("--out", "-o", help="The .npz file to write.")],
    quality: Annotated[Optional[int], typer.Option("--quality", "-q", help="Stages per grid: 1 to the model's stage count; default: middle (as compress).")] = None,
    model: ModelOpt = None,
    force: Force = False,
) -> None:
    """Encode images to index grids (one per quantizer stage) and save them as integer arrays in a .npz.

    The file also names the model (and its fingerprint) and keeps each
    image's size, mode and alpha plane, so `vqcodec detokenize` rebuilds
    exactly what `decompress` gives at the same quality. Read it with
    numpy.load: the grids of the i-th image are tokens_<i>, an integer array
    of shape (quality, rows, columns).

    Example: vqcodec tokens photo.png other.png -q 4 --out tokens.npz
    """
    from vqcodec import codec  # here, so other commands start without torch
    from vqcodec.tokens import save_tokens, tokenize
    from vqcodec.zoo import load_model

    m = load_model(model)
    try:
        q = codec.check_quality(m, quality)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--quality") from None
    check_output(out, force, inputs)
    result = tokenize(inputs, m, q)
    save_tokens(result, out, overwrite=force, inputs=inputs)
    for t in result.images:
        console.print(f"{t.name}: {t.width}x{t.height} {t.mode}, grids {'x'.join(map(str, t.grids.shape))}",
                      markup=False, highlight=False)
    console.print(f"{len(result.images)} image(s) -> {out}: model {m.name}, quality {q}, codes 0..{m.config.codebook_size - 1}",
                  markup=False, highlight=False)


def detokenize(
    source: Annotated[Path, typer.Argument(help="A .npz file written by vqcodec tokens.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output image when the file holds one image, else folder; default: beside the .npz, one PNG per image.")] = None,
    model: ModelOpt = None,
    force: Force = False,
) -> None:
    """Decode the index grids of a tokens file back to images (NAME.png per image; NAME-i.png if names clash).

    The pixels are exactly those `vqcodec decompress` gives for a .vqz of
    the same image, model and quality. The model named in the file is used
    unless --model is given.

    Example: vqcodec detokenize tokens.npz -o decoded/
    """
    from vqcodec.batch import OUTPUT_FORMATS  # here, so other commands start without torch
    from vqcodec.tokens import detokenize as decode_tokens
    from vqcodec.tokens import load_tokens, model_for_tokens

    token_set = load_tokens(source)
    m = model_for_tokens(token_set, model)
    one_file = output is not None and len(token_set.images) == 1 and not output.is_dir()
    if one_file:
        fmt = SUFFIX_FORMATS.get(output.suffix.lower())
        if fmt is None:
            raise OutputError(f"{output}: unknown image suffix (use .png, .tif, .bmp or .webp)")
        targets = [(output, fmt)]
    else:
        folder = output if output is not None else source.parent
        stems = [Path(t.name).stem for t in token_set.images]
        clashes = {s for s in stems if stems.count(s) > 1}
        targets = [(folder / (f"{s}-{i}.png" if s in clashes else f"{s}.png"), "png") for i, s in enumerate(stems)]
    for dst, _ in targets:
        check_output(dst, force, [source])
    for t, (dst, fmt) in zip(token_set.images, targets):
        image = decode_tokens(t, m)
        options = {"lossless": True} if fmt == "webp" else {}
        write_atomic(dst, lambda f, im=image: im.save(f, format=OUTPUT_FORMATS[fmt], **options), overwrite=force,
                     inputs=[source])
        console.print(f"{t.name} -> {dst}: {image.width}x{image.height} {image.mode}", markup=False, highlight=False)
