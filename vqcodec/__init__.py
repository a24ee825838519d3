"""vqcodec: a learned image codec built on a residual VQ-VAE.

    import vqcodec
    data = vqcodec.compress("photo.png", quality=4)   # .vqz bytes
    image = vqcodec.decompress(data)                  # PIL.Image.Image
    small = vqcodec.truncate(data, 2)                 # quality 2, by copying bytes

Importing the package is light: the codec and the model zoo (which need torch) load on first
use of `compress`, `decompress`, `load_model` or `CodecModel`, so `vqcodec info`, `truncate`,
`--help` and the Pillow plugin's header parsing start without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from vqcodec.errors import ArgumentError, ImageError, ModelError, OutputError, VqcodecError, VqcodecWarning, VqzError
from vqcodec.fileinfo import info
from vqcodec.container import truncate
from vqcodec.registry import shipped_models
from vqcodec import pillow_plugin  # noqa: F401 (registers the .vqz format with Pillow)

__version__ = "0.19.0"

_LAZY = {
    "compress": "vqcodec.codec",
    "decompress": "vqcodec.codec",
    "CodecModel": "vqcodec.zoo",
    "load_model": "vqcodec.zoo",
}
"""Public names whose modules import torch, and where they live."""

__all__ = [
    "ArgumentError",
    "CodecModel",
    "ImageError",
    "ModelError",
    "OutputError",
    "VqcodecError",
    "VqcodecWarning",
    "VqzError",
    "compress",
    "decompress",
    "info",
    "load_model",
    "shipped_models",
    "truncate",
]


def __getattr__(name: str) -> Any:
    """Import a torch-backed name on first access (PEP 562), then keep it as a plain attribute."""
    if name not in _LAZY:
        raise AttributeError(f"module 'vqcodec' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
