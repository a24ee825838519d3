"""The exception family. The CLI maps every `VqcodecError` to a one-line message and a non-zero exit."""

from __future__ import annotations

import os


class VqcodecError(Exception):
    """Base of every error vqcodec raises on purpose."""


class ArgumentError(VqcodecError, ValueError):
    """An argument to a vqcodec function has the wrong type or is out of range (quality, target_bpp, ...)."""


class VqzError(VqcodecError, ValueError):
    """A `.vqz` file is malformed, damaged, unsupported, or needs a model we do not have."""


class ModelError(VqcodecError):
    """A model file is missing, unreadable, altered, or does not fit its config."""


class ImageError(VqcodecError, ValueError):
    """An input image cannot be read or is outside the limits we accept."""


class DataError(VqcodecError):
    """A training or evaluation folder holds no usable images."""


class OutputError(VqcodecError):
    """An output would overwrite an existing file (without force) or its own input."""


class TokensError(VqcodecError, ValueError):
    """A tokens file is malformed, or does not fit the model asked to decode it."""


class VqcodecWarning(UserWarning):
    """Base of every warning vqcodec gives; the CLI prints each as one line on stderr."""


def error_line(src: str | os.PathLike[str], exc: Exception, dst: str | os.PathLike[str] | None = None) -> str:
    """A one-line message for a failed file, naming the file once (the output, when the output is the problem)."""
    msg = str(exc) if isinstance(exc, VqcodecError) else (getattr(exc, "strerror", None) or str(exc))
    named = msg.startswith(str(src)) or (dst is not None and msg.startswith(str(dst)))
    return msg if named else f"{src}: {msg}"
