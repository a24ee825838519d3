"""The `.vqz` container: header, per-stage range-coded streams, optional alpha, CRC32.

Layout (all integers little-endian; `docs/format.md` documents it byte by byte):

    magic        8   b"\\x89VQZ\\r\\n\\x1a\\n"
    version      1   1
    mode         1   image mode: 1 = L, 2 = LA, 3 = RGB, 4 = RGBA
    width        4   u32, pixels
    height       4   u32, pixels
    name_len     1   u8, 1..64
    name         n   model name, UTF-8
    fingerprint  8   first 8 bytes of the model's SHA-256 fingerprint
    stages       1   u8, number of quantizer stages stored (the quality)
    grid_h       2   u16, index grid rows
    grid_w       2   u16, index grid columns
    stage_len    4*S u32 each, byte length of every stage's stream
    alpha_len    4   u32, byte length of the zlib-compressed alpha plane (0 = none)
    payload          stage streams in order, then the alpha stream
    crc32        4   u32, CRC-32 of every byte before it

Every field is validated, and limits are checked, before anything is allocated.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from vqcodec.errors import VqzError

MAGIC = b"\x89VQZ\r\n\x1a\n"
VERSION = 1
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
MODE_CODES = {v: k for k, v in MODES.items()}
MAX_NAME = 64
MAX_PIXELS = 1 << 28
"""Largest width x height a file may claim (about 268 megapixels)."""
MAX_GRID_CELLS = 1 << 24
"""Largest grid_h x grid_w a file may claim."""

_FIXED = struct.Struct("<8sBBIIB")
_AFTER_NAME = struct.Struct("<8sBHH")


@dataclass(frozen=True)
class VqzHeader:
    """Everything a reader learns from a file before decoding its payload."""

    mode: str
    width: int
    height: int
    model_name: str
    fingerprint: bytes
    grid_h: int
    grid_w: int
    stage_lengths: tuple[int, ...]
    alpha_length: int = 0

    @property
    def stages(self) -> int:
        return len(self.stage_lengths)


@dataclass(frozen=True)
class VqzFile:
    """A parsed file: header, one byte string per stage, and the compressed alpha plane (or b"")."""

    header: VqzHeader
    streams: tuple[bytes, ...]
    alpha: bytes = b""


def check_limits(width: int, height: int, grid_h: int, grid_w: int) -> None:
    """Refuse sizes that are empty or absurd, before anything is allocated for them."""
    if width < 1 or height < 1:
        raise VqzError(f"image size {width}x{height} is empty")
    if width * height > MAX_PIXELS:
        raise VqzError(f"image size {width}x{height} exceeds the limit of {MAX_PIXELS} pixels")
    if grid_h < 1 or grid_w < 1 or grid_h * grid_w > MAX_GRID_CELLS:
        raise VqzError(f"index grid {grid_h}x{grid_w} is empty or exceeds the limit of {MAX_GRID_CELLS} cells")


def pack(f: VqzFile) -> bytes:
    """Serialise a file; the inverse of `unpack`."""
    h = f.header
    name = h.model_name.encode()
    if not 1 <= len(name) <= MAX_NAME:
        raise ValueError(f"model name must be 1..{MAX_NAME} bytes of UTF-8")
    if len(f.streams) != h.stages or any(len(s) != n for s, n in zip(f.streams, h.stage_lengths)):
        raise ValueError("stream lengths disagree with the header")
    if not 1 <= h.stages <= 255 or len(f.alpha) != h.alpha_length:
        raise ValueError("stage count or alpha length out of range")
    check_limits(h.width, h.height, h.grid_h, h.grid_w)
    parts = [
        _FIXED.pack(MAGIC, VERSION, MODE_CODES[h.mode], h.width, h.height, len(name)),
        name,
        _AFTER_NAME.pack(h.fingerprint[:8], h.stages, h.grid_h, h.grid_w),
        struct.pack(f"<{h.stages}I", *h.stage_lengths),
        struct.pack("<I", h.alpha_length),
        *f.streams,
        f.alpha,
    ]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(data: bytes, check_crc: bool = True) -> VqzFile:
    """Parse and validate a file; raises `VqzError` saying what is wrong."""
    data = bytes(data)
    header, offset = _parse_header(data)
    payload = sum(header.stage_lengths) + header.alpha_length
    expected = offset + payload + 4
    if len(data) < expected:
        raise VqzError(f"truncated file: {len(data)} bytes, the header announces {expected}")
    if len(data) > expected:
        raise VqzError(f"{len(data) - expected} unexpected bytes after the end of the file")
    if check_crc:
        (stored,) = struct.unpack_from("<I", data, expected - 4)
        if zlib.crc32(data[: expected - 4]) != stored:
            raise VqzError("checksum mismatch: the file is damaged")
    streams = []
    for n in header.stage_lengths:
        streams.append(data[offset : offset + n])
        offset += n
    return VqzFile(header, tuple(streams), data[offset : offset + header.alpha_length])


def read_header(data: bytes) -> VqzHeader:
    """Parse only the header (for `vqcodec info` and quick checks)."""
    return _parse_header(bytes(data))[0]


def _parse_header(data: bytes) -> tuple[VqzHeader, int]:
    if len(data) == 0:
        raise VqzError("empty file")
    if len(data) < len(MAGIC) and MAGIC.startswith(data):
        raise VqzError("truncated file: shorter than the magic bytes")
    if not data.startswith(MAGIC):
        raise VqzError("not a .vqz file (bad magic bytes)")
    if len(data) < _FIXED.size:
        raise VqzError("truncated file: header incomplete")
    _, version, mode_code, width, height, name_len = _FIXED.unpack_from(data, 0)
    if version != VERSION:
        raise VqzError(f"unsupported format version {version} (this vqcodec reads version {VERSION})")
    if mode_code not in MODES:
        raise VqzError(f"unknown image mode code {mode_code}")
    if not 1 <= name_len <= MAX_NAME:
        raise VqzError(f"bad model name length {name_len}")
    offset = _FIXED.size
    if len(data) < offset + name_len + _AFTER_NAME.size:
        raise VqzError("truncated file: header incomplete")
    try:
        name = data[offset : offset + name_len].decode()
    except UnicodeDecodeError:
        raise VqzError("model name is not valid UTF-8") from None
    offset += name_len
    fp, stages, grid_h, grid_w = _AFTER_NAME.unpack_from(data, offset)
    offset += _AFTER_NAME.size
    if stages < 1:
        raise VqzError("file stores no quantizer stage")
    check_limits(width, height, grid_h, grid_w)
    if len(data) < offset + 4 * stages + 4:
        raise VqzError("truncated file: header incomplete")
    lengths = struct.unpack_from(f"<{stages}I", data, offset)
    offset += 4 * stages
    (alpha_len,) = struct.unpack_from("<I", data, offset)
    offset += 4
    header = VqzHeader(MODES[mode_code], width, height, name, fp, grid_h, grid_w, tuple(lengths), alpha_len)
    return header, offset
