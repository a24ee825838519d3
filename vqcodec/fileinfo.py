"""Reading a `.vqz` file given as bytes, a path or a binary file object, and describing it.

Kept apart from `vqcodec.codec` because it needs no torch: `vqcodec info`, `import vqcodec`
and the Pillow plugin's header parsing start in a fraction of the time the codec takes to import.
The file format itself is `vqcodec.container`.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

from vqcodec import container
from vqcodec.container import FileInfo, read_file
from vqcodec.errors import ArgumentError

VqzSource = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO
"""What `decompress` and `info` take: the bytes of a `.vqz` file, its path, or a binary file object."""


def read_vqz(source: VqzSource) -> bytes:
    """The bytes of a `.vqz` file given as bytes, a path or a binary file object (as `PIL.Image.open` takes)."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, (bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        return read_file(source)
    if hasattr(source, "read") and not isinstance(source, io.TextIOBase):
        data = source.read()
        if isinstance(data, (bytes, bytearray)):
            return bytes(data)
    raise ArgumentError(f"expected the bytes, a path or a binary file object of a .vqz file, got {type(source).__name__}")


def info(data: VqzSource) -> FileInfo:
    """Check a file (structure and every checksum) and describe it, without a model or decoding pixels.

    A truncated file is described too (`truncated`, `complete_stages`); damage is a `VqzError`.
    """
    return container.info(read_vqz(data))
