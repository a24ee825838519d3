"""Shared rich consoles: progress and messages go to stderr, results to stdout.

Importing this module also makes vqcodec's warnings print as one line on stderr
("warning: ..."), as errors do, instead of Python's two-line format pointing into
the library; other warnings keep Python's format.
"""

from __future__ import annotations

import warnings
from typing import TextIO

from rich.console import Console

from vqcodec.errors import VqcodecWarning

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

PLAIN_LINE_SECONDS = 60.0
"""Off a terminal, long work prints a progress line at least this often."""


def clock(seconds: float) -> str:
    """Elapsed time as H:MM:SS."""
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}"

_python_showwarning = warnings.showwarning


def print_warning(text: str) -> None:
    """One warning line on stderr."""
    err_console.print(f"warning: {text}", markup=False, highlight=False)


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
    """`warnings.showwarning` for the CLI: one line for vqcodec's warnings, Python's format for the rest."""
    if issubclass(category, VqcodecWarning):
        print_warning(str(message))
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


warnings.showwarning = show_warning
