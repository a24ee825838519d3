"""Strings that come from files, made safe to show: no terminal escapes, no control characters.

A model name in a tokens or model file, an image name, a path: any of them may hold
escape sequences that a terminal would obey. `printable` writes every non-printable
character as a Python escape (`\\x1b`, `\\u202e`), so what is shown is inert and still
says exactly what the file holds.
"""

from __future__ import annotations


def printable(text: object) -> str:
    """`str(text)` with every non-printable character written as its Python escape."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)


def stages(count: int) -> str:
    """"1 stage", "4 stages": how the command line names a number of quantizer stages."""
    return f"{count} stage{'s' * (count != 1)}"
