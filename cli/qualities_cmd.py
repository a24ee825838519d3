"""`vqcodec qualities`: print a model's quality ladder, or write the model with other reduced qualities."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .console import console


def qualities(
    model: Annotated[str, typer.Argument(help="A shipped model's name or a model file.")] = "default",
    reduced: Annotated[Optional[str], typer.Option("--reduced", help="With --out: the qualities below the full-size ones, FACTOR:STAGES each, lowest first (e.g. 2:4,1.5:4: the image shrunk by 2, then by 1.5, four stages each); empty for none.")] = None,
    full_from: Annotated[Optional[int], typer.Option("--full-from", min=1, help="With --out: the fewest stages a full-size quality keeps (default: MODEL's).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write MODEL with these qualities here; its weights are MODEL's, so it reads every file MODEL wrote.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
) -> None:
    """Print what each compress quality of a model does: stages, the size it codes the image at, the
    scale of its rate weights, its default encoder effort and its default latent refinement steps. With
    --out, write the model with other reduced qualities.

    Reduced qualities shrink the image before coding it and enlarge it after decoding: below about
    0.15 bpp that gives a better picture for the size than the full image with fewer stages. The
    default quality keeps its meaning (the same stages at full size) under its new number.

    Example: vqcodec qualities default --reduced 2:4,1.5:4 --full-from 3 --out m.safetensors
    """
    from vqcodec import codec, ladder
    from vqcodec.effort import default_effort
    from vqcodec.errors import OutputError
    from vqcodec.latent_refinement import default_steps
    from vqcodec.zoo import load_model, save_model

    base = load_model(model)
    if out is None:
        if reduced is not None or full_from is not None:
            raise typer.BadParameter("--reduced and --full-from need --out (the model file to write)", param_hint="--out")
        default = codec.default_quality(base)
        for q, level in enumerate(codec.quality_levels(base), start=1):
            size = "full size" if level.shrink == 1 else f"shrunk by {level.shrink:g}"
            mark = "  (default)" if q == default else ""
            console.print(f"{q:3d}: {level.stages:3d} stages, {size}, rate weights x {level.scale:g}, "
                          f"effort {default_effort(level.stages, base.config.distortion)}, "
                          f"{default_steps(level.stages, base.config.distortion)} refine steps{mark}",
                          markup=False, highlight=False)
        return
    if out.exists() and not force:
        raise OutputError(f"{out} exists (add --force to replace it)")
    pairs = base.config.reduced_qualities if reduced is None else ladder.parse_reduced(reduced)
    config = ladder.relabel(base, pairs, base.config.full_from if full_from is None else full_from)
    made = ladder.with_config(base, config)
    fingerprint = save_model(made.net, made.prior, out, made.rate_weights, *base.lineage)
    console.print(f"wrote {out} ({fingerprint[:4].hex()}): {len(codec.quality_levels(made))} qualities, "
                  f"default {config.default_quality}", markup=False, highlight=False)
