"""Shared rich consoles: progress and messages go to stderr, results to stdout."""

from rich.console import Console

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
