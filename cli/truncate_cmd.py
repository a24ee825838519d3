"""`vqcodec truncate`: a lower-quality .vqz made by copying bytes (torch-free: no model, no pixels)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .console import console
from vqcodec import container
from vqcodec.errors import VqzError
from vqcodec.safe_io import write_bytes_atomic
from vqcodec.text import printable


def truncate(
    source: Annotated[Path, typer.Argument(help="The .vqz file to read.", show_default=False)],
    quality: Annotated[int, typer.Option("--quality", "-q", help="Quality to keep: 1 to the file's quality.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .vqz file to write.", show_default=False)],
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output.")] = False,
) -> None:
    """Write the quality-Q version of a .vqz file by copying its first stages: no model, no decoding.

    The output decodes to exactly the pixels `vqcodec decompress --quality Q` gives
    for the input. (The first N bytes of the input, N as `vqcodec info` lists for
    quality Q, decode the same, flagged as truncated; this writes a complete file.)

    Example: vqcodec truncate photo.vqz -q 2 -o photo-q2.vqz
    """
    data = container.read_file(source)
    try:
        out = container.truncate(data, quality)
    except VqzError as exc:
        raise VqzError(f"{source}: {exc}") from None
    write_bytes_atomic(output, out, overwrite=force, inputs=[source])
    h = container.read_header(out)
    console.print(printable(f"{source} -> {output}: quality {quality}, {len(out)} bytes "
                            f"({8 * len(out) / h.pixels:.4f} bpp), {len(data) - len(out)} bytes fewer"),
                  markup=False, highlight=False)
