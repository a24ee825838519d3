"""The .vqz container: round trips and every rejection, before any allocation."""

from __future__ import annotations

import struct
import time
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vqcodec import container
from vqcodec.container import MAGIC, VqzFile, VqzHeader
from vqcodec.errors import VqzError


def sample(streams: tuple[bytes, ...] = (b"abcd", b"efghijkl"), alpha: bytes = b"") -> VqzFile:
    header = VqzHeader("RGB", 17, 33, "default", bytes(range(8)), 5, 3, tuple(len(s) for s in streams), len(alpha))
    return VqzFile(header, streams, alpha)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@given(
    mode=st.sampled_from(["L", "LA", "RGB", "RGBA"]),
    width=st.integers(1, 5000), height=st.integers(1, 5000),
    name=st.text(min_size=1, max_size=16),
    streams=st.lists(st.binary(max_size=40), min_size=1, max_size=8),
    alpha=st.binary(max_size=20),
)
@settings(max_examples=150, deadline=None)
def test_round_trip(mode: str, width: int, height: int, name: str, streams: list[bytes], alpha: bytes) -> None:
    header = VqzHeader(mode, width, height, name, b"\x01" * 8, -(-height // 8), -(-width // 8),
                       tuple(len(s) for s in streams), len(alpha))
    f = VqzFile(header, tuple(streams), alpha)
    assert container.unpack(container.pack(f)) == f


def test_layout_starts_with_magic_and_version() -> None:
    data = container.pack(sample())
    assert data[:8] == MAGIC and data[8] == container.VERSION
    assert container.read_header(data) == sample().header


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\nrest of a png", "not a .vqz file"),
        (b"hello world, plain text", "not a .vqz file"),
        (MAGIC[:5], "truncated"),
    ],
)
def test_rejects_non_vqz(data: bytes, message: str) -> None:
    with pytest.raises(VqzError, match=message):
        container.unpack(data)


def test_rejects_every_truncation() -> None:
    data = container.pack(sample())
    for n in range(1, len(data)):
        with pytest.raises(VqzError, match="truncated|bad magic"):
            container.unpack(data[:n])


def test_rejects_every_single_bit_flip() -> None:
    data = container.pack(sample())
    for i in range(len(data)):
        for bit in (0, 3, 7):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            with pytest.raises(VqzError):
                container.unpack(bytes(damaged))


def test_rejects_trailing_bytes() -> None:
    with pytest.raises(VqzError, match="unexpected bytes"):
        container.unpack(container.pack(sample()) + b"\x00")


def test_rejects_checksum_mismatch() -> None:
    data = bytearray(container.pack(sample()))
    data[-6] ^= 0xFF  # inside the payload: structure intact, CRC wrong
    with pytest.raises(VqzError, match="checksum"):
        container.unpack(bytes(data))


def test_rejects_unsupported_version() -> None:
    body = bytearray(container.pack(sample())[:-4])
    body[8] = 99
    with pytest.raises(VqzError, match="unsupported format version 99"):
        container.unpack(with_crc(bytes(body)))


def test_rejects_unknown_mode() -> None:
    body = bytearray(container.pack(sample())[:-4])
    body[9] = 7
    with pytest.raises(VqzError, match="mode"):
        container.unpack(with_crc(bytes(body)))


def test_absurd_dimensions_are_refused_quickly() -> None:
    body = bytearray(container.pack(sample())[:-4])
    struct.pack_into("<II", body, 10, 60000, 60000)
    data = with_crc(bytes(body))
    start = time.perf_counter()
    with pytest.raises(VqzError, match="exceeds the limit"):
        container.unpack(data)
    assert time.perf_counter() - start < 0.01


def test_zero_dimensions_are_refused() -> None:
    body = bytearray(container.pack(sample())[:-4])
    struct.pack_into("<I", body, 10, 0)
    with pytest.raises(VqzError, match="empty"):
        container.unpack(with_crc(bytes(body)))


def test_pack_refuses_inconsistent_headers() -> None:
    f = sample()
    bad = VqzFile(f.header, (b"x",), b"")
    with pytest.raises(ValueError):
        container.pack(bad)
