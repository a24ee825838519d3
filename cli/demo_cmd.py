"""`vqcodec demo`: the CLI face of `vqcodec.demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .codec_cmds import Force, Inputs, ModelOpt
from .console import console, err_console


def demo(
    inputs: Inputs,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the figures and summary.txt (created if missing).")],
    quality: Annotated[Optional[list[int]], typer.Option("--quality", "-q", help="A quality to show; repeat for several. Default: 1, 2, 4, ... and the model's best.")] = None,
    embedding: Annotated[str, typer.Option("--embedding", help="2-D projection of the codebooks: pca (fast) or tsne.")] = "pca",
    model: ModelOpt = None,
    force: Force = False,
) -> None:
    """Show what the codec does: reconstructions with bpp and PSNR, codebook use, index grids.

    Writes reconstructions.png, codebook.png, usage.png, index_map.png
    (of the first image) and summary.txt into OUT, and prints the summary.

    Example: vqcodec demo photo.png other.png -q 1 -q 4 -q 8 --out demo-out
    """
    from vqcodec import codec  # here, so other commands start without torch, matplotlib and sklearn
    from vqcodec.demo import Embedding, run_demo
    from vqcodec.zoo import load_model

    try:
        method = Embedding(embedding)
    except ValueError:
        raise typer.BadParameter(f"choose one of {', '.join(e.value for e in Embedding)}", param_hint="--embedding") from None
    m = load_model(model)
    for q in quality or ():
        try:
            codec.check_quality(m, q)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--quality") from None
    with err_console.status("compressing and drawing"):
        report = run_demo(inputs, out, m, quality or None, method, overwrite=force)
    console.print(report.summary, markup=False, highlight=False, end="")
    console.print(f"wrote {', '.join(str(p) for p in report.files)}", markup=False, highlight=False)
