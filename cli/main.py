"""The typer app behind the `vqcodec` console script."""

from __future__ import annotations

import sys

import typer

from cli.console import err_console
from cli.bench_cmd import bench
from cli.codec_cmds import compress, decompress, info
from cli.demo_cmd import demo
from cli.tokens_cmd import detokenize, tokens
from cli.truncate_cmd import truncate
from cli.train_cmd import train
from vqcodec.errors import VqcodecError
from vqcodec.text import printable

app = typer.Typer(
    name="vqcodec",
    help="A learned image codec: compress photos to .vqz, decompress them, train models, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(compress)
app.command()(decompress)
app.command()(info)
app.command()(truncate)
app.command()(bench)
app.command()(train)
app.command()(demo)
app.command()(tokens)
app.command()(detokenize)


@app.callback()
def _root() -> None:
    """vqcodec: compress photos to .vqz with a learned VQ-VAE, decompress, train and benchmark."""


def main() -> None:
    """Console-script entry: run the app, turning vqcodec's errors into one line and exit code 1."""
    try:
        app()
    except VqcodecError as exc:
        err_console.print(f"error: {printable(exc)}", markup=False, highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False, highlight=False)
        sys.exit(130)
