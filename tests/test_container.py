"""The .vqz container, version 3 (and reading version 2): round trips, prefixes, truncation, every rejection."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vqcodec import container
from vqcodec.container import MAGIC, VqzFile, VqzHeader
from vqcodec.errors import VqzError

ROOT = Path(__file__).resolve().parents[1]

words = st.lists(st.binary(min_size=4, max_size=4), min_size=1, max_size=12).map(b"".join)


def sample(streams: tuple[bytes, ...] = (b"abcd", b"efghijk\0", b"\1\0\0\0"), mode: str = "RGB",
           alpha: bytes = b"") -> VqzFile:
    header = container.header_for(mode, 17, 33, bytes(range(8)), streams, alpha)
    return VqzFile(header, streams, alpha)


def forge(header: VqzHeader, blocks: list[bytes]) -> bytes:
    """A file with every check valid: a header as given (not checked) and blocks as given."""
    return container.assemble(container.header_body(header), blocks)


def version_2(f: VqzFile) -> bytes:
    """The version-2 file of `f` (docs/format.md, "Version 2"): what vqcodec wrote before version 3."""
    h = f.header
    body = b"".join([MAGIC, bytes([2, container.MODE_CODES[h.mode]]), container.varint(h.width),
                     container.varint(h.height), h.model_id[:4], bytes([h.stages]),
                     *map(container.varint, h.stage_lengths),
                     container.varint(h.alpha_length) if h.mode in container.ALPHA_MODES else b""])
    out = body + zlib.crc32(body).to_bytes(4, "little")
    for b in ([f.alpha] if f.alpha else []) + [container.trim(s) for s in f.streams]:
        out += b + zlib.crc32(b).to_bytes(4, "little")
    return out


@given(
    mode=st.sampled_from(["L", "LA", "RGB", "RGBA"]),
    width=st.integers(1, 5000), height=st.integers(1, 5000),
    streams=st.lists(words, min_size=1, max_size=8),
    alpha=st.binary(min_size=1, max_size=20),
)
@settings(max_examples=150, deadline=None)
def test_round_trip(mode: str, width: int, height: int, streams: list[bytes], alpha: bytes) -> None:
    alpha = alpha if mode in container.ALPHA_MODES else b""
    header = container.header_for(mode, width, height, b"\x01\x02\x03\x04", tuple(streams), alpha)
    f = VqzFile(header, tuple(streams), alpha)
    assert container.unpack(container.pack(f)) == f


@given(stream=words)
@settings(max_examples=300, deadline=None)
def test_trimmed_stream_ends_are_restored_exactly(stream: bytes) -> None:
    stored = container.trim(stream)
    assert stream.startswith(stored) and len(stream) - len(stored) <= 3
    assert set(stream[len(stored):]) <= {0}
    assert container.restore(stored) == stream


def test_trim_refuses_streams_that_are_not_whole_words() -> None:
    with pytest.raises(ValueError, match="whole"):
        container.trim(b"abcde")


def test_layout_starts_with_magic_and_version() -> None:
    data = container.pack(sample())
    assert data[:4] == MAGIC and data[4] == container.VERSION == 3
    assert container.read_header(data) == sample().header
    assert sample().header.stage_lengths == (4, 7, 1)  # trailing zero bytes of the last word are not stored


def test_layout_is_as_documented() -> None:
    """The example in docs/format.md, byte for byte: a shipped model's short id, a 1-byte check after each block
    but the last, and the whole CRC-32 of everything before it at the end."""
    streams = (b"\x11" * 3783 + b"\x22",)
    data = container.pack(VqzFile(container.header_for("RGB", 768, 512, container.SHIPPED_MODELS[1], streams), streams))
    header = bytes.fromhex("89 56 51 5a 03 03 80 06 80 04 01 01 c8 1d")
    assert data.startswith(header) and data[len(header)] == zlib.crc32(header) & 0xFF
    assert len(data) == len(header) + 1 + 3784 + 4 == 3803
    assert data[-4:] == zlib.crc32(data[:-4]).to_bytes(4, "little")
    assert container.read_header(data).model_id == container.SHIPPED_MODELS[1]


@pytest.mark.parametrize("stages", range(1, 9))
@pytest.mark.parametrize(("side", "stage_bytes"), [((768, 512), 1400), ((128, 128), 56)])
def test_fixed_overhead_of_a_default_model_file_is_at_most_40_bytes(stages: int, side: tuple[int, int],
                                                                     stage_bytes: int) -> None:
    """Issue 17: everything but the stored streams (header, lengths, checks) fits 40 bytes at every quality,
    for Kodak-sized files (2-byte stage lengths) and 128x128 thumbnails."""
    streams = tuple(bytes(stage_bytes - 4) + b"\1\2\3\4" for _ in range(stages))
    data = container.pack(VqzFile(container.header_for("RGB", *side, container.SHIPPED_MODELS[1], streams), streams))
    overhead = len(data) - sum(map(len, streams))
    assert overhead <= 40
    assert overhead == container.header_length(data) + (stages - 1) + 4


def test_every_shipped_model_has_a_short_id() -> None:
    """A model that ships without a short id would cost its files 4 bytes: register it in SHIPPED_MODELS."""
    from vqcodec import registry

    for name, path in registry.shipped_models().items():
        assert registry.stated_fingerprint(path) in container.SHORT_IDS, name


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\nrest of a png", "not a .vqz file"),
        (b"hello world, plain text", "not a .vqz file"),
        (MAGIC[:3], "truncated"),
        (b"\x89VQZ\r\n\x1a\n\x01\x03" + bytes(40), "version 1"),
    ],
)
def test_rejects_non_vqz(data: bytes, message: str) -> None:
    with pytest.raises(VqzError, match=message):
        container.unpack(data)


def test_every_cut_decodes_its_complete_stages_or_is_refused() -> None:
    f = sample(mode="RGBA", alpha=b"alpha plane")
    data = container.pack(f)
    ends = container.info(data).quality_ends
    for n in range(1, len(data)):
        with pytest.raises(VqzError, match="truncated"):
            container.unpack(data[:n])
        complete = sum(end <= n for end in ends)
        if complete == 0:
            with pytest.raises(VqzError, match="truncated"):
                container.unpack(data[:n], allow_truncated=True)
            continue
        cut = container.unpack(data[:n], allow_truncated=True)
        assert cut.truncated and cut.streams == f.streams[:complete] and cut.alpha == f.alpha
    assert container.unpack(data, allow_truncated=True) == f and ends[-1] == len(data)


def test_truncate_copies_blocks_and_prefixes_match_it() -> None:
    f = sample(mode="LA", alpha=b"some alpha")
    data = container.pack(f)
    info = container.info(data)
    for q in range(1, f.header.stages + 1):
        small = container.truncate(data, q)
        assert container.unpack(small) == VqzFile(
            VqzHeader("LA", 17, 33, f.header.model_id, f.header.stage_lengths[:q], f.header.alpha_length),
            f.streams[:q], f.alpha)
        prefix = container.unpack(data[: info.quality_ends[q - 1]], allow_truncated=True)
        assert prefix.streams == f.streams[:q]
        assert container.truncate(small, q) == small
    with pytest.raises(VqzError, match="qualities 1..3"):
        container.truncate(data, 4)
    with pytest.raises(VqzError, match="cut after quality 1"):
        container.truncate(data[: info.quality_ends[0] + 2], 2)


def test_rejects_every_single_bit_flip() -> None:
    data = container.pack(sample(mode="RGBA", alpha=b"xyz"))
    for i in range(len(data)):
        for bit in (0, 3, 7):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            with pytest.raises(VqzError):
                container.unpack(bytes(damaged), allow_truncated=True)


def test_damage_inside_a_complete_stage_of_a_cut_file_is_refused() -> None:
    data = bytearray(container.pack(sample()))
    ends = container.info(bytes(data)).quality_ends
    data[ends[0] + 1] ^= 0x10  # inside stage 2, which the cut below keeps whole
    with pytest.raises(VqzError, match="stage 2 is damaged"):
        container.unpack(bytes(data[: ends[1] + 1]), allow_truncated=True)


def test_rejects_trailing_bytes() -> None:
    with pytest.raises(VqzError, match="unexpected bytes"):
        container.unpack(container.pack(sample()) + b"\x00")


def test_rejects_checksum_mismatches() -> None:
    data = bytearray(container.pack(sample()))
    data[-5] ^= 0xFF  # the one stored byte of stage 3
    with pytest.raises(VqzError, match="stage 3 is damaged"):
        container.unpack(bytes(data))
    data = bytearray(container.pack(sample()))
    data[7] ^= 0x01  # the width
    with pytest.raises(VqzError, match="header is damaged"):
        container.unpack(bytes(data))


def test_rejects_unsupported_version_and_unknown_mode() -> None:
    data = bytearray(container.pack(sample()))
    data[4] = 99
    with pytest.raises(VqzError, match="unsupported format version 99"):
        container.unpack(bytes(data))
    data[4], data[5] = 3, 7
    with pytest.raises(VqzError, match="mode"):
        container.unpack(bytes(data))


def test_rejects_over_long_varints() -> None:
    good = container.pack(sample())
    forged = good[:6] + b"\x91\x00" + good[7:]  # width 17 as two bytes
    body = forged[: container.header_length(good) + 1 - 1]
    with pytest.raises(VqzError, match="over-long"):
        container.read_header(body + bytes([zlib.crc32(body) & 0xFF]))


def test_absurd_dimensions_are_refused_quickly() -> None:
    h = sample().header
    data = forge(VqzHeader("RGB", 60000, 60000, h.model_id, h.stage_lengths), list(sample().streams))
    start = time.perf_counter()
    with pytest.raises(VqzError, match="exceeds the format's limit"):
        container.unpack(data)
    assert time.perf_counter() - start < 0.01


def test_zero_dimensions_are_refused() -> None:
    h = sample().header
    with pytest.raises(VqzError, match="empty"):
        container.unpack(forge(VqzHeader("RGB", 0, 5, h.model_id, h.stage_lengths), list(sample().streams)))


def test_mode_and_alpha_must_agree() -> None:
    """Issue 13 item 5: an alpha plane exactly when the mode has alpha, in writing and in reading."""
    h = sample().header
    with pytest.raises(ValueError, match="alpha"):
        container.pack(VqzFile(VqzHeader("RGB", 17, 33, h.model_id, h.stage_lengths, 3), sample().streams, b"abc"))
    with pytest.raises(ValueError, match="alpha"):
        container.pack(VqzFile(VqzHeader("RGBA", 17, 33, h.model_id, h.stage_lengths, 0), sample().streams))
    with pytest.raises(VqzError, match="no alpha plane"):
        container.unpack(forge(VqzHeader("LA", 17, 33, h.model_id, h.stage_lengths, 0), list(sample().streams)))
    # An RGB header cannot announce alpha: an alpha block in front of the stages is read as stage 1 and refused.
    rgba = container.pack(sample(mode="RGBA", alpha=b"abc"))
    forged = forge(VqzHeader("RGB", 17, 33, h.model_id, h.stage_lengths), [b"abc", *map(container.trim, sample().streams)])
    assert container.read_header(forged).mode == "RGB" and container.read_header(rgba).mode == "RGBA"
    with pytest.raises(VqzError):
        container.unpack(forged, allow_truncated=True)


def test_pack_refuses_inconsistent_headers() -> None:
    f = sample()
    with pytest.raises(ValueError):
        container.pack(VqzFile(f.header, (b"xxxx",), b""))


def test_info_and_truncate_run_without_torch_or_numpy(tmp_path: Path) -> None:
    """The package, its byte-level modules and the truncate command import neither torch nor numpy."""
    path = tmp_path / "x.vqz"
    path.write_bytes(container.pack(sample()))
    script = f"""
import sys
import vqcodec.cli.truncate_cmd
from vqcodec import container, registry
data = container.read_file({str(path)!r})
assert container.info(data).quality_ends[-1] == len(data)
assert container.unpack(container.truncate(data, 1)).header.stages == 1
registry.describe(container.read_header(data).model_id)
heavy = sorted(m for m in ("torch", "numpy") if m in sys.modules)
assert not heavy, heavy
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr


def test_reads_version_2_files() -> None:
    """Files written before version 3 (by the model that still ships) decode, cut or whole; truncate upgrades them."""
    f = sample(mode="RGBA", alpha=b"alpha plane")
    old = version_2(f)
    h2 = dataclasses.replace(f.header, version=2)
    assert container.unpack(old) == VqzFile(h2, f.streams, f.alpha)
    info = container.info(old)
    assert info.header.version == 2 and info.quality_ends[-1] == len(old)
    for q in range(1, f.header.stages + 1):
        cut = container.unpack(old[: info.quality_ends[q - 1]], allow_truncated=True)
        assert cut.streams == f.streams[:q]
        small = container.truncate(old, q)
        assert small[4] == container.VERSION and container.unpack(small).streams == f.streams[:q]
    damaged = bytearray(old)
    damaged[-6] ^= 1
    with pytest.raises(VqzError, match="damaged"):
        container.unpack(bytes(damaged))


def test_one_byte_checks_of_a_cut_file_catch_damage_in_its_stages() -> None:
    """A cut file has no final CRC-32: each complete stage is covered by its own 1-byte check and by every later
    one. Flips in stage 1 of this cut file meet two checks and are all caught; flips in its last complete stage
    meet one, which misses about 1 in 256 (docs/format.md, "Checks")."""
    f = sample(streams=(bytes(range(40)), bytes(range(40, 80)), bytes(range(80, 120))))
    data = container.pack(f)
    ends = container.info(data).quality_ends
    cut = data[: ends[1]]
    missed = {1: 0, 2: 0}
    for stage, (start, end) in {1: (container.header_length(data), ends[0]), 2: (ends[0], ends[1])}.items():
        for i in range(start, end):
            for bit in range(8):
                damaged = bytearray(cut)
                damaged[i] ^= 1 << bit
                try:
                    container.unpack(bytes(damaged), allow_truncated=True)
                    missed[stage] += 1
                except VqzError:
                    pass
    assert missed[1] == 0
    assert missed[2] <= 0.01 * 8 * (ends[1] - ends[0])
