"""The `.vqz` container, versions 3 to 6: a lean header, then the alpha plane and the stage streams, each checked.

Layout (`docs/format.md` documents it byte by byte):

    magic        4   b"\\x89VQZ"
    version      1   3, or 4 for an image coded at a reduced size; 5 and 6 are 3 and 4 with adaptively coded stages
    mode         1   1 = L, 2 = LA, 3 = RGB, 4 = RGBA
    width        v   varint, pixels
    height       v   varint, pixels
    coded size   v+v versions 4 and 6 only: width and height the pixels were coded at (then enlarged to width x height)
    model        1   short id of a model shipped with vqcodec (`SHIPPED_MODELS`), or 0: then ...
    fingerprint  4   ... the first 4 bytes of the model's SHA-256 fingerprint follow
    stages       1   S, number of quantizer stages stored (the quality)
    stage_len    v*S varint each, stored byte length of every stage stream
    alpha_len    v   varint, only for LA and RGBA: byte length of the zlib-compressed alpha plane
    check        1   low byte of the CRC-32 of every byte before it
    alpha            alpha_len bytes, then a 1-byte check; LA and RGBA only
    stage s          stage_len[s] bytes, then a 1-byte check; s = 1..S in order, except ...
    stage S          ... the last stage, whose check is the whole CRC-32 (4 bytes)

Every check is the CRC-32 of all the file's bytes before it, so a complete file is covered
by one CRC-32 and each block of a cut file by its own check and every later one. A prefix
that holds the header, the alpha plane and k complete stages decodes as quality k:
`unpack(..., allow_truncated=True)` returns the complete stages and says the file was cut.
`truncate` makes a smaller file of a lower quality by copying blocks. Version-2 files (one
CRC-32 per block, a 4-byte model id) are still read. This module imports neither torch nor
numpy, so `info` and `truncate` run without them.
"""

from __future__ import annotations

import operator
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from vqcodec.errors import VqzError

MAGIC = b"\x89VQZ"
V1_MAGIC = b"\x89VQZ\r\n\x1a\n"
VERSION = 3
"""The version of a file coded at its own size."""
REDUCED_VERSION = 4
"""The version of a file coded at a reduced size: version 3 with the coded width and height after the height."""
ADAPTIVE_VERSIONS = {VERSION: 5, REDUCED_VERSION: 6}
"""The versions of files whose stages are coded adaptively (`vqcodec.entropy.adaptive`): the same layouts as 3
and 4, whose streams the decoder reads with tables that learn the image as it decodes it."""
READ_VERSIONS = (2, 3, 4, 5, 6)
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
MODE_CODES = {v: k for k, v in MODES.items()}
ALPHA_MODES = ("LA", "RGBA")
MODEL_ID_BYTES = 4
"""Fingerprint bytes that name a model without a short id (and every model in version 2)."""
SHIPPED_MODELS: dict[int, bytes] = {
    1: bytes.fromhex("594cd1ff3a4e9506f34f27d25d0b250d70adc662ff24e8ae2f03c4505eff9b92"),  # default, 2026-11
    2: bytes.fromhex("0d7bebccc4787c387839b7a413ec78a7aa5116dfa0ab4ad08dff174651595e78"),  # default, decoder tuned
    3: bytes.fromhex("44868d9813905d3e40c0018b9ea42c73ddcd1488de68f189e6589a4e2298e2ce"),  # perceptual
    4: bytes.fromhex("39bbdd43d2b9b9a6a005b76e250b5149b454e26a7392bf00714c0bf28686bd24"),  # default, decoder tuned longer
    5: bytes.fromhex("405b08585aa74157a403aa26b1d6eb84db6b3431cab6062709b27d45bb71625d"),  # default, narrower decoder
    6: bytes.fromhex("0012843e6c44206c13453b0357675a1551380245a56db82a788fc6526d5f4ee0"),  # default, 20 stages
    7: bytes.fromhex("61c5f844a8f3cb0b10289e81354e31d2bf3dba38a7331e916228855d6667263c"),  # perceptual, no EMA sums
    8: bytes.fromhex("7e9855232e550208ed7ed5d0b2ab740eca27637a3765bdd147788d6c2b229bf6"),  # default, top decoder
    9: bytes.fromhex("1608be9002c531d089138707880a50513c7aebb2980f234aa6f33cc177dedb60"),  # default, priced training
    10: bytes.fromhex("aad580e6a8552e4c966ebb9b26b8aef869a37ab5cf7053b622680cb37fd60044"),  # default, narrower encoder
    11: bytes.fromhex("1b917fc26665304dae35a870166c4460999b76feb081342423bf6649dc9ad223"),  # default, 26 stages
    12: bytes.fromhex("6091ca63659f828787993fcdb40794ca45080667f6138d1961a7e67caef8bb22"),  # perceptual, shrunk quality 1
    13: bytes.fromhex("7c691daf1a8ac63232ca46cdf2bdb2f21b7b15094b6ce8e05043d194c4e9a3cc"),  # default, shrunk 1-2, top decoder
    14: bytes.fromhex("0c0f1c8d7bf8867e5d12e20aa535349eb38294d4accec8a3ff737af254ed74ca"),  # perceptual, refined for MS-SSIM
    15: bytes.fromhex("0df85a820255cf987066ce8acbf6af88bd9f991ad30a32f43d7544ffb7e94f5c"),  # perceptual, prior counted again
    16: bytes.fromhex("5fdc839a50ac746abb018f90aefddc7410ac12eccaf0e23cb37ae6a6f8d28b10"),  # perceptual, shrunk 1-4
    17: bytes.fromhex("1401a504730bec1fd0b427f925b065a36bb4efd0ff5dd83e8beb53e1a8ab6dae"),  # perceptual, shrunk 1-5
    18: bytes.fromhex("938f0299f57ba9c8aaf82703ad26273f04c76fdc1a644050e6732ba3b394e11a"),  # perceptual, end to end
    19: bytes.fromhex("0a8796f03120c2af6486a002d0a46228c5f5084ae000fb48f6066f090d527398"),  # perceptual, decoder tuned
    20: bytes.fromhex("074254282e450c62e7d8be5fcf434965c02b175cfce575196b6a7e1c3d566b37"),  # perceptual, encoder tuned
}
"""Short ids of the models shipped with vqcodec, each bound for good to one full fingerprint.

A model that ships gets the next number; a number is never reused, so a file's short id
pins the exact model (the full fingerprint is checked when the model is loaded). An id whose
model no longer ships is read by a shipped decoder fine-tune of it, if any (`registry.find_shipped`)."""
SHORT_IDS = {fingerprint: short for short, fingerprint in SHIPPED_MODELS.items()}
LAST_SHIPPED_IN: dict[int, str] = {4: "0.1.0", 5: "0.1.0", 6: "0.1.0", 8: "0.1.0",
                                   **{short: "0.16.0" for short in (1, 2, 3, 7, 12, 14, 15, 16, 17)}}
"""The last vqcodec release that ships a model no longer shipped, by short id, for models whose files no
shipped model reads (a retrained model writes other streams): decompressing such a file says which release
to use. Ids 1, 2, 3, 7, 12 and 14-17 were read by `perceptual` until vqcodec 0.16.0, whose network (a decoder
fine-tune of id 2) 0.17.0's `perceptual` (short id 18, trained end to end) replaced."""
MAX_PIXELS = 1 << 28
"""Largest width x height a file may claim (about 268 megapixels)."""
MAX_STAGES = 255
MAX_BLOCK = (1 << 32) - 1
"""Largest stage or alpha block, in bytes."""
TAG_BYTES = 1
"""Check after the header and every block but the last stage: the CRC-32's low byte (version 3)."""
CRC_BYTES = 4
"""Check after the last stage (version 3), and after every block (version 2)."""
WORD = 4
"""Stage streams are whole 32-bit words of the range coder; trailing zero bytes of the last word are not stored."""
MAX_HEADER = 4 + 1 + 1 + 5 + 5 + 5 + 5 + 1 + MODEL_ID_BYTES + 1 + 5 * MAX_STAGES + 5 + CRC_BYTES
"""Longest possible header in any version read, in bytes: how much a reader needs to see to parse any header."""

_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class VqzHeader:
    """Everything a reader learns from a file's header, before reading its payload.

    `model_id` is what the file pins of its model's fingerprint: all 32 bytes for a shipped
    model named by its short id, else the first 4. `stage_lengths` are the stored lengths
    (stream words with trailing zero bytes trimmed). `version` is the layout the file was
    read in; `pack` writes version 3, or 4 when the image was coded at a reduced size (5 and 6
    when `adaptive`). `reduced` is that size, (width, height), when smaller than the image's own;
    the decoder decodes that many pixels and enlarges them (`codec.quality_levels`). `adaptive`:
    the stage streams are coded adaptively (`vqcodec.entropy.adaptive`), not under the prior's
    fixed tables.
    """

    mode: str
    width: int
    height: int
    model_id: bytes
    stage_lengths: tuple[int, ...]
    alpha_length: int = 0
    version: int = VERSION
    reduced: tuple[int, int] | None = None
    adaptive: bool = False

    @property
    def coded_width(self) -> int:
        """Width of the pixels the stage streams code."""
        return self.reduced[0] if self.reduced else self.width

    @property
    def coded_height(self) -> int:
        """Height of the pixels the stage streams code."""
        return self.reduced[1] if self.reduced else self.height

    @property
    def stages(self) -> int:
        return len(self.stage_lengths)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def model_hex(self) -> str:
        """The model id as people read it: the fingerprint's first 4 bytes in hex, whatever the file pins."""
        return self.model_id[:MODEL_ID_BYTES].hex()


@dataclass(frozen=True)
class VqzFile:
    """A parsed file: header, the streams of its complete stages (whole words), the compressed alpha plane (or b"").

    `streams` holds fewer than `header.stages` entries when the file was cut (see `truncated`).
    """

    header: VqzHeader
    streams: tuple[bytes, ...]
    alpha: bytes = b""

    @property
    def truncated(self) -> bool:
        return len(self.streams) < self.header.stages


def check_limits(width: int, height: int) -> None:
    """Refuse sizes that are empty or absurd, before anything is allocated for them."""
    if width < 1 or height < 1:
        raise VqzError(f"image size {width}x{height} is empty")
    if width * height > MAX_PIXELS:
        raise VqzError(f"image size {width}x{height} exceeds the format's limit of {MAX_PIXELS} pixels")


def check_reduced(width: int, height: int, coded_width: int, coded_height: int) -> None:
    """Refuse a coded size that is not a reduction of the image's: each side 1..its own, and not both equal
    (an image coded at its own size is a version-3 file, so every file has one header)."""
    if not (1 <= coded_width <= width and 1 <= coded_height <= height) or (coded_width, coded_height) == (width, height):
        raise VqzError(f"coded size {coded_width}x{coded_height} is not a reduction of the image's {width}x{height}")


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse an image larger than the caller's `max_pixels` (a decompression bomb guard), saying how to allow it."""
    if width * height > max_pixels:
        raise VqzError(f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} "
                       f"(pass max_pixels=, or --max-pixels on the command line, to decode it)")


def varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low bits first, high bit set on every byte but the last."""
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, offset: int, what: str) -> tuple[int, int]:
    """A varint at `offset` and the offset after it; refuses non-minimal or over-long encodings."""
    value = 0
    for i in range(5):
        if offset + i >= len(data):
            raise VqzError("truncated file: cut inside the header")
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise VqzError(f"bad {what}: over-long varint")
            return value, offset + i + 1
    raise VqzError(f"bad {what}: varint longer than 5 bytes")


def trim(stream: bytes) -> bytes:
    """A stream as stored: its trailing zero bytes dropped, at most WORD - 1 of them (all within the last word)."""
    if len(stream) % WORD:
        raise ValueError(f"a stage stream must be whole {WORD}-byte words, got {len(stream)} bytes")
    keep = len(stream)
    while keep > len(stream) - (WORD - 1) and keep > 0 and stream[keep - 1] == 0:
        keep -= 1
    return stream[:keep]


def restore(stored: bytes) -> bytes:
    """The stream a stored block stands for: zero bytes appended up to a whole word (the inverse of `trim`)."""
    return stored + b"\0" * (-len(stored) % WORD)


def _check_sizes(version: int, has_alpha: bool, stages: int) -> tuple[int, int, tuple[int, ...]]:
    """Bytes of the checks after the header, the alpha plane and each stage, in this layout version."""
    if version == 2:
        return CRC_BYTES, CRC_BYTES, (CRC_BYTES,) * stages
    return TAG_BYTES, TAG_BYTES if has_alpha else 0, (TAG_BYTES,) * (stages - 1) + (CRC_BYTES,)


def write_version(reduced: bool, adaptive: bool) -> int:
    """The version a file is written in: 3, 4 coded at a reduced size, 5 and 6 the same coded adaptively."""
    layout = REDUCED_VERSION if reduced else VERSION
    return ADAPTIVE_VERSIONS[layout] if adaptive else layout


def header_body(h: VqzHeader) -> bytes:
    """The header bytes of `h` before its check, in `write_version` (no field is validated: `pack_header`
    does that)."""
    short = SHORT_IDS.get(bytes(h.model_id))
    model = bytes([short]) if short else b"\0" + bytes(h.model_id[:MODEL_ID_BYTES])
    version = write_version(h.reduced is not None, h.adaptive)
    parts = [MAGIC, bytes([version, MODE_CODES[h.mode]]), varint(h.width), varint(h.height),
             *(map(varint, h.reduced) if h.reduced else ()), model, bytes([h.stages]), *map(varint, h.stage_lengths)]
    if h.mode in ALPHA_MODES:
        parts.append(varint(h.alpha_length))
    return b"".join(parts)


def assemble(body: bytes, blocks: Sequence[bytes]) -> bytes:
    """A version-3 or -4 file from a header body and its blocks (alpha plane first, if any, then the stages).

    Each block gets its check: the low byte of the CRC-32 of every byte before it, and the
    whole CRC-32 after the last block. `pack` writes files with it; fuzz tests forge with it.
    """
    out = bytearray(body)
    for i, block in enumerate([b"", *blocks]):
        out += block
        crc = zlib.crc32(out)
        out += _CRC.pack(crc) if i == len(blocks) else bytes([crc & 0xFF])
    return bytes(out)


def _check_header(h: VqzHeader) -> None:
    """ValueError when `h` cannot be written: unknown mode, short model id, bad stage or alpha lengths, size."""
    if h.mode not in MODE_CODES:
        raise ValueError(f"unknown mode {h.mode}")
    if len(h.model_id) < MODEL_ID_BYTES:
        raise ValueError(f"model id must be at least {MODEL_ID_BYTES} bytes")
    if not 1 <= h.stages <= MAX_STAGES or any(not 0 <= n <= MAX_BLOCK for n in h.stage_lengths):
        raise ValueError("stage count or stage length out of range")
    if (h.alpha_length > 0) != (h.mode in ALPHA_MODES) or h.alpha_length > MAX_BLOCK:
        raise ValueError(f"mode {h.mode} with an alpha plane of {h.alpha_length} bytes")
    check_limits(h.width, h.height)
    if h.reduced is not None:
        check_reduced(h.width, h.height, *h.reduced)


def pack_header(h: VqzHeader) -> bytes:
    """The header bytes of `h`, its check included (checked for consistency first)."""
    _check_header(h)
    body = header_body(h)
    return body + bytes([zlib.crc32(body) & 0xFF])


def pack(f: VqzFile) -> bytes:
    """Serialise a file in the current version; `f.streams` are whole-word streams, stored trimmed.

    The inverse of `unpack` for complete files.
    """
    stored = [trim(s) for s in f.streams]
    h = f.header
    if tuple(len(s) for s in stored) != h.stage_lengths or len(f.alpha) != h.alpha_length:
        raise ValueError("stream lengths disagree with the header")
    _check_header(h)
    return assemble(header_body(h), ([f.alpha] if h.alpha_length else []) + stored)


def header_for(mode: str, width: int, height: int, model_id: bytes, streams: tuple[bytes, ...],
               alpha: bytes = b"", reduced: tuple[int, int] | None = None, adaptive: bool = False) -> VqzHeader:
    """The header that describes these (untrimmed) streams and this alpha block, for a model of this fingerprint,
    the streams coding the image at size `reduced` (None: its own size), adaptively coded or not.

    A shipped model keeps its full fingerprint (the file stores its short id), any other the first 4 bytes.
    """
    pinned = bytes(model_id) if bytes(model_id) in SHORT_IDS else bytes(model_id[:MODEL_ID_BYTES])
    return VqzHeader(mode, width, height, pinned, tuple(len(trim(s)) for s in streams), len(alpha),
                     reduced=reduced, adaptive=adaptive)


def read_header(data: bytes) -> VqzHeader:
    """Parse and check only the header (for `vqcodec info`, Pillow's open and size limits)."""
    return _parse_header(bytes(data))[0]


def header_length(data: bytes) -> int:
    """Bytes the header of `data` takes, its check included."""
    return _parse_header(bytes(data))[1]


def quality_ends(header: VqzHeader, header_bytes: int) -> tuple[int, ...]:
    """File length at which each quality is complete: the first `ends[q - 1]` bytes decode as quality q.

    For q below the file's stage count that is a cut file (decoded with a warning); `truncate`
    writes the complete quality-q file, whose last check is a whole CRC-32.
    """
    _, alpha_check, stage_checks = _check_sizes(header.version, header.alpha_length > 0, header.stages)
    offset = header_bytes + (header.alpha_length + alpha_check if header.alpha_length else 0)
    ends = []
    for n, check in zip(header.stage_lengths, stage_checks):
        offset += n + check
        ends.append(offset)
    return tuple(ends)


def unpack(data: bytes, allow_truncated: bool = False) -> VqzFile:
    """Parse and check a file (every check); raises `VqzError` saying what is wrong.

    A file cut after its k-th complete stage (k >= 1) is returned with those k stages when
    `allow_truncated`, and refused otherwise. A cut inside the header or the alpha plane,
    or before the end of stage 1, and damage inside any complete block are always refused.
    """
    data = bytes(data)
    header, offset = _parse_header(data)
    ends = quality_ends(header, offset)
    _, alpha_check, stage_checks = _check_sizes(header.version, header.alpha_length > 0, header.stages)
    running = zlib.crc32(memoryview(data)[:offset])  # version 3: the CRC-32 of every byte read so far
    alpha = b""
    if header.alpha_length:
        alpha, running = _block(data, offset, header.alpha_length, alpha_check, header.version, running,
                                "the alpha plane")
        offset += header.alpha_length + alpha_check
    streams = []
    for s, (n, check) in enumerate(zip(header.stage_lengths, stage_checks)):
        if offset + n + check > len(data):
            break
        block, running = _block(data, offset, n, check, header.version, running, f"stage {s + 1}")
        streams.append(restore(block))
        offset += n + check
    if not streams:
        raise VqzError(f"truncated file: {len(data)} bytes, cut before the end of stage 1 (byte {ends[0]})")
    if len(streams) < header.stages and not allow_truncated:
        raise VqzError(f"truncated file: {len(data)} bytes, the header announces {ends[-1]} "
                       f"(complete stages: {len(streams)} of {header.stages})")
    if len(streams) == header.stages and len(data) > offset:
        raise VqzError(f"{len(data) - offset} unexpected bytes after the end of the file")
    return VqzFile(header, tuple(streams), alpha)


def truncate(data: bytes, quality: int) -> bytes:
    """The file of quality `quality` made from `data` by copying its first blocks (no model, no pixels).

    It decodes to exactly the image `data` gives at that quality. `data` may itself be a
    truncated file, as long as it holds `quality` complete stages; a version-2 file gives
    a version-3 file of the same streams.
    """
    f = unpack(data, allow_truncated=True)
    h = f.header
    try:
        quality = operator.index(quality)
    except TypeError:
        raise VqzError(f"quality must be a whole number, got {quality!r}") from None
    if not 1 <= quality <= h.stages:
        raise VqzError(f"this file stores qualities 1..{h.stages}; cannot truncate it to quality {quality}")
    if quality > len(f.streams):
        raise VqzError(f"this file was cut after quality {len(f.streams)}; cannot truncate it to quality {quality}")
    short = VqzHeader(h.mode, h.width, h.height, h.model_id, h.stage_lengths[:quality], h.alpha_length,
                      reduced=h.reduced, adaptive=h.adaptive)
    return pack(VqzFile(short, f.streams[:quality], f.alpha))


@dataclass(frozen=True)
class FileInfo:
    """What `vqcodec info` reports about a file: its header, size, and where each quality ends."""

    header: VqzHeader
    size: int
    header_bytes: int
    quality_ends: tuple[int, ...]
    complete_stages: int

    @property
    def truncated(self) -> bool:
        return self.complete_stages < self.header.stages

    @property
    def bpp(self) -> float:
        return 8.0 * self.size / self.header.pixels


def info(data: bytes) -> FileInfo:
    """Check a file (structure and every check) and describe it, without a model or decoding pixels.

    A truncated file is described too (`truncated`, `complete_stages`); damage is a `VqzError`.
    """
    data = bytes(data)
    f = unpack(data, allow_truncated=True)
    n = header_length(data)
    return FileInfo(f.header, len(data), n, quality_ends(f.header, n), len(f.streams))


def _block(data: bytes, offset: int, length: int, check: int, version: int, running: int,
           what: str) -> tuple[bytes, int]:
    """A block's bytes, its check verified, and the CRC-32 of the file up to the end of its check.

    `running` is the CRC-32 of the file's bytes before the block (version 3 checks cover them;
    version 2 checks cover the block alone). Refuses a block cut short.
    """
    end = offset + length
    if end + check > len(data):
        raise VqzError(f"truncated file: cut inside {what} (it ends at byte {end + check})")
    block = data[offset:end]
    upto = zlib.crc32(block, running)
    expected = zlib.crc32(block) if version == 2 else upto
    stored = data[end : end + check]
    if (_CRC.pack(expected) if check == CRC_BYTES else bytes([expected & 0xFF])) != stored:
        raise VqzError(f"{what} is damaged (checksum mismatch)")
    return block, zlib.crc32(stored, upto)


def _parse_header(data: bytes) -> tuple[VqzHeader, int]:
    if len(data) == 0:
        raise VqzError("empty file")
    if len(data) < len(MAGIC) and MAGIC.startswith(data):
        raise VqzError("truncated file: shorter than the magic bytes")
    if not data.startswith(MAGIC):
        raise VqzError("not a .vqz file (bad magic bytes)")
    if data.startswith(V1_MAGIC):
        raise VqzError("format version 1 file: this vqcodec reads versions 2 to 6 only "
                       "(decode it with vqcodec 0.1 and the model that wrote it)")
    if len(data) < 6:
        raise VqzError("truncated file: cut inside the header")
    version, mode_code = data[4], data[5]
    if version not in READ_VERSIONS:
        raise VqzError(f"unsupported format version {version} (this vqcodec reads versions 2 to 6)")
    if mode_code not in MODES:
        raise VqzError(f"unknown image mode code {mode_code}")
    mode = MODES[mode_code]
    width, offset = _read_varint(data, 6, "width")
    height, offset = _read_varint(data, offset, "height")
    reduced = None
    adaptive = version in ADAPTIVE_VERSIONS.values()
    if version in (REDUCED_VERSION, ADAPTIVE_VERSIONS[REDUCED_VERSION]):
        coded_width, offset = _read_varint(data, offset, "coded width")
        coded_height, offset = _read_varint(data, offset, "coded height")
        reduced = coded_width, coded_height
    short = 0
    if version >= 3:
        if offset >= len(data):
            raise VqzError("truncated file: cut inside the header")
        short = data[offset]
        offset += 1
    id_bytes = 0 if short else MODEL_ID_BYTES
    if offset + id_bytes + 1 > len(data):
        raise VqzError("truncated file: cut inside the header")
    model_id = data[offset : offset + id_bytes]
    stages = data[offset + id_bytes]
    offset += id_bytes + 1
    if stages < 1:
        raise VqzError("file stores no quantizer stage")
    lengths = []
    for s in range(stages):
        n, offset = _read_varint(data, offset, f"stage {s + 1} length")
        lengths.append(n)
    alpha_len = 0
    if mode in ALPHA_MODES:
        alpha_len, offset = _read_varint(data, offset, "alpha length")
    check = _check_sizes(version, alpha_len > 0, stages)[0]
    if offset + check > len(data):
        raise VqzError("truncated file: cut inside the header")
    crc = zlib.crc32(data[:offset])
    if (_CRC.pack(crc) if check == CRC_BYTES else bytes([crc & 0xFF])) != data[offset : offset + check]:
        raise VqzError("header is damaged (checksum mismatch)")
    # Checked after the checksum: a damaged header is reported as damage, a forged one by what is wrong.
    if short:
        if short not in SHIPPED_MODELS:
            raise VqzError(f"file names shipped model #{short}, which this vqcodec does not know "
                           "(a newer vqcodec wrote it)")
        model_id = SHIPPED_MODELS[short]
    check_limits(width, height)
    if reduced is not None:
        check_reduced(width, height, *reduced)
    if any(n > MAX_BLOCK for n in lengths) or alpha_len > MAX_BLOCK:
        raise VqzError("a block length exceeds the format's limit")
    if mode in ALPHA_MODES and alpha_len == 0:
        raise VqzError(f"mode {mode} but no alpha plane stored")
    header = VqzHeader(mode, width, height, model_id, tuple(lengths), alpha_len, version, reduced, adaptive)
    return header, offset + check


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
