"""Shared rich consoles: progress and messages go to stderr, results to stdout.

Importing this module also makes vqcodec's warnings print as one line on stderr
("warning: ..."), as errors do, instead of Python's two-line format pointing into
the library; other warnings keep Python's format.
"""

from __future__ import annotations

import time
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


class PlainLines:
    """When long work off a terminal (a log file, CI) prints a progress line: the first and last of `total`
    steps, about `lines` in all, and at least one every `PLAIN_LINE_SECONDS`."""

    def __init__(self, lines: int) -> None:
        self.lines = lines
        self.start = self.last = time.monotonic()

    def due(self, done: int, total: int) -> bool:
        """Whether step `done` of `total` gets a line (then the minute restarts)."""
        if done in (1, total) or done % max(1, total // self.lines) == 0 or self.late():
            self.printed()
            return True
        return False

    def late(self) -> bool:
        return time.monotonic() - self.last >= PLAIN_LINE_SECONDS

    def printed(self) -> None:
        """Note that a line was just printed (by `due` or by the caller, for a line of its own)."""
        self.last = time.monotonic()

    def elapsed(self) -> str:
        return clock(time.monotonic() - self.start)

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
