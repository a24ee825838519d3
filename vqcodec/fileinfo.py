"""Reading a `.vqz` file and describing it without decoding pixels.

Kept apart from `vqcodec.codec` because it needs no torch: `vqcodec info`, `import vqcodec`
and the Pillow plugin's header parsing start in a fraction of the time the codec takes to import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vqcodec import container
from vqcodec.container import VqzHeader
from vqcodec.errors import VqzError


@dataclass(frozen=True)
class FileInfo:
    """What `vqcodec info` reports about a file."""

    header: VqzHeader
    size: int

    @property
    def bpp(self) -> float:
        return 8.0 * self.size / (self.header.width * self.header.height)


def info(data: bytes) -> FileInfo:
    """Validate a file (structure and checksum) and describe it, without decoding pixels."""
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
