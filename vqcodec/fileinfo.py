"""Reading a `.vqz` file and describing it without decoding pixels.

Kept apart from `vqcodec.codec` because it needs no torch: `vqcodec info`, `import vqcodec`
and the Pillow plugin's header parsing start in a fraction of the time the codec takes to import.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vqcodec import container
from vqcodec.container import VqzHeader
from vqcodec.errors import ArgumentError, VqzError


@dataclass(frozen=True)
class FileInfo:
    """What `vqcodec info` reports about a file."""

    header: VqzHeader
    size: int

    @property
    def bpp(self) -> float:
        return 8.0 * self.size / (self.header.width * self.header.height)


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
    """Validate a file (bytes, a path or a binary file object) and describe it, without decoding pixels."""
    data = read_vqz(data)
    return FileInfo(container.unpack(data).header, len(data))


def read_file(path: str | os.PathLike[str]) -> bytes:
    """Bytes of a `.vqz` file, with a `VqzError` when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise VqzError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise VqzError(f"{path}: is a folder") from None
    except OSError as exc:
        raise VqzError(f"{path}: cannot read ({exc.strerror})") from None
