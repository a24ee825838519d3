"""The typer app behind the `vqcodec` console script.

Command modules import torch-backed code only inside their commands, so `--help`, usage errors
and `vqcodec info` start in a fraction of a second.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated

import typer

from .console import err_console
from .bench_cmd import bench
from .codec_cmds import compress, decompress, info
from .demo_cmd import demo
from .tokens_cmd import detokenize, tokens
from .train_cmd import train
from .prior_cmd import fit_prior
from .qualities_cmd import qualities
from .stages_cmd import add_stages
from .truncate_cmd import truncate
from vqcodec.errors import VqcodecError
from vqcodec.text import printable

UsageError: type[Exception] = typer.BadParameter.__base__
"""click's UsageError (vendored by newer typer): bad options, missing arguments, unknown commands."""

app = typer.Typer(
    name="vqcodec",
    help="A learned image codec: compress photos to .vqz, decompress them, train models, benchmark.",
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
app.command("fit-prior")(fit_prior)
app.command("add-stages")(add_stages)
app.command()(qualities)


def version_line() -> str:
    """What `vqcodec --version` prints: the package, the .vqz format it writes and the models it ships."""
    from vqcodec import __version__, container, shipped_models

    formats = f"{container.VERSION}-{max(container.ADAPTIVE_VERSIONS.values())}"
    return f"vqcodec {__version__} (.vqz formats {formats}; models: {', '.join(sorted(shipped_models()))})"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print vqcodec's version, the .vqz format version it "
                                                     "writes and the shipped models, and exit.")] = False) -> None:
    """vqcodec: compress photos to .vqz with a learned VQ-VAE, decompress, train and benchmark."""


def usage_line(exc: Exception) -> str:
    """One line for a usage error: click's message, whitespace collapsed, and where to read the help."""
    message = re.sub(r"\s+", " ", exc.format_message()).strip()  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "vqcodec"
    return f"error: {message} (see '{command} --help')"


def main() -> None:
    """Console-script entry: run the app; vqcodec's errors become one line and exit code 1, usage errors
    one line and exit code 2, and no arguments at all print the help."""
    try:
        code = app(args=sys.argv[1:] or ["--help"], prog_name="vqcodec", standalone_mode=False)
    except UsageError as exc:
        err_console.print(usage_line(exc), markup=False, highlight=False)
        sys.exit(2)
    except VqcodecError as exc:
        err_console.print(f"error: {printable(exc)}", markup=False, highlight=False)
        sys.exit(1)
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("interrupted", markup=False, highlight=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
