"""The exception family. The CLI maps every `VqcodecError` to a one-line message and a non-zero exit."""

from __future__ import annotations

import os


class VqcodecError(Exception):
    """Base of every error vqcodec raises on purpose."""


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


def error_line(src: str | os.PathLike[str], exc: Exception) -> str:
    """A one-line message for a failed file, naming the file once."""
    msg = str(exc) if isinstance(exc, VqcodecError) else (getattr(exc, "strerror", None) or str(exc))
    return msg if msg.startswith(str(src)) else f"{src}: {msg}"
