"""Hostile and huge inputs: tiling, allocation guards, fuzzed files, determinism."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import noise_image
from vqcodec import codec, container
from vqcodec.errors import VqzError


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_tiles_match_whole_image_coding(default_model, kodak_crop) -> None:
    rgb = np.asarray(kodak_crop)
    q = default_model.config.num_stages
    whole = codec.encode_indices(default_model, rgb, q, refine_steps=0)
    tiled = codec.encode_indices(default_model, rgb, q, tile=4, refine_steps=0)
    assert (whole == tiled).mean() > 0.99
    a = codec.decode_indices(default_model, whole, rgb.shape[1], rgb.shape[0])
    b = codec.decode_indices(default_model, whole, rgb.shape[1], rgb.shape[0], tile=4)
    assert abs(psnr(rgb, a) - psnr(rgb, b)) < 0.1
    assert np.abs(a.astype(int) - b).max() <= 2


def test_tiles_refine_about_as_the_whole_image_does(default_model, kodak_crop) -> None:
    """Each tile's latents are refined with a halo of 8 cells, wider than the decoder sees: the refined
    codes are nearly those of refining the whole image at once, and decode as well."""
    rgb = np.asarray(kodak_crop)
    q = default_model.config.num_stages
    whole = codec.encode_indices(default_model, rgb, q)
    tiled = codec.encode_indices(default_model, rgb, q, tile=4)
    assert (whole == tiled).mean() > 0.9
    a, b = (codec.decode_indices(default_model, g, rgb.shape[1], rgb.shape[0]) for g in (whole, tiled))
    assert abs(psnr(rgb, a) - psnr(rgb, b)) < 0.1


def rechecksum(data: bytes) -> bytes:
    """`data` with every check that its (possibly mutated) header implies recomputed, where the header parses."""
    try:
        mode = container.MODES[data[5]]
        _, pos = container._read_varint(data, 6, "width")
        _, pos = container._read_varint(data, pos, "height")
        pos += 1 if data[pos] else 1 + container.MODEL_ID_BYTES
        stages = data[pos]
        pos += 1
        lengths = []
        for _ in range(stages):
            n, pos = container._read_varint(data, pos, "stage length")
            lengths.append(n)
        if mode in container.ALPHA_MODES:
            n, pos = container._read_varint(data, pos, "alpha length")
            lengths.insert(0, n)  # the alpha block comes first in the payload
    except (VqzError, KeyError, IndexError):
        return data
    out = bytearray(data)
    checks, at = [(pos, 1)], pos + 1
    for i, n in enumerate(lengths):
        size = container.CRC_BYTES if i == len(lengths) - 1 else 1
        checks.append((at + n, size))
        at += n + size
    for end, size in checks:
        if end + size > len(out):
            break
        crc = zlib.crc32(bytes(out[:end]))
        out[end : end + size] = crc.to_bytes(4, "little")[:size]
    return bytes(out)


def forge(mode: str, width: int, height: int, model_id: bytes, blocks: list[bytes], alpha: bytes | None = None) -> bytes:
    """A file with a header as given, unchecked, and every check valid: what a hostile writer can make."""
    header = container.VqzHeader(mode, width, height, model_id, tuple(map(len, blocks)), len(alpha or b""))
    return container.assemble(container.header_body(header), ([alpha] if alpha is not None else []) + blocks)


def test_grid_larger_than_its_stream_is_refused_before_allocation(tiny_model) -> None:
    f = container.unpack(codec.compress(noise_image(16, 16), tiny_model))
    side = 4000 * tiny_model.config.stride
    data = forge("RGB", side, side, f.header.model_id, list(map(container.trim, f.streams)))
    start = time.perf_counter()
    with pytest.raises(VqzError, match="too short"):
        codec.decompress(data, tiny_model, max_pixels=container.MAX_PIXELS)
    assert time.perf_counter() - start < 0.05


def test_decompression_bomb_is_refused_from_the_header(tiny_model, default_model, tmp_path) -> None:
    """Issue 13 item 1: over max_pixels (default 100 MP) is refused in under 10 ms, naming the size and the knob."""
    model_id = default_model.fingerprint[:4]
    for width, height in ((16384, 16384), (524280, 512), (12000, 9000)):
        data = forge("RGB", width, height, model_id, [bytes(range(256)) * 4])
        start = time.perf_counter()
        with pytest.raises(VqzError, match=f"{width}x{height} = {width * height} pixels.*max_pixels"):
            codec.decompress(data)
        assert time.perf_counter() - start < 0.01
    small = forge("RGB", 4000, 3000, model_id, [bytes(range(256)) * 28])  # 7 KB claiming 12 MP
    start = time.perf_counter()
    with pytest.raises(VqzError, match="over the limit of 1000000"):
        codec.decompress(small, max_pixels=1_000_000)
    assert time.perf_counter() - start < 0.01
    path = tmp_path / "bomb.vqz"
    path.write_bytes(small)
    result = subprocess.run([str(Path(sys.executable).with_name("vqcodec")), "decompress", str(path),
                             "--max-pixels", "1000000"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and not (tmp_path / "bomb.png").exists()
    assert result.stderr.count("\n") == 1 and "4000x3000" in result.stderr and "--max-pixels" in result.stderr


@pytest.fixture(scope="module")
def valid_files(tiny_model) -> list[bytes]:
    return [codec.compress(noise_image(w, h, mode, seed=w), tiny_model, q)
            for w, h, mode, q in [(16, 16, "RGB", 3), (9, 5, "RGBA", 3), (23, 8, "L", 2)]]


def decode_or_vqz_error(data: bytes, model) -> None:
    """Decodes or raises VqzError, within one second of CPU time (wall time would flag a busy shared machine)."""
    start = time.process_time()
    try:
        codec.decompress(data, model)
    except VqzError:
        pass
    assert time.process_time() - start < 1.0


def test_every_cut_decodes_a_prefix_of_stages_or_raises(valid_files, tiny_model) -> None:
    """Issue 17: a cut file decodes exactly as --quality k would (k = its complete stages), flagged, or is refused."""
    for data in valid_files:
        stages = container.read_header(data).stages
        expected = {q: np.asarray(codec.decompress(data, tiny_model, q)) for q in range(1, stages + 1)}
        outcomes = set()
        for n in range(len(data) + 1):
            try:
                image = codec.decompress(data[:n], tiny_model)
            except VqzError:
                outcomes.add("refused")
                continue
            k = image.info["quality"]
            assert image.info["truncated"] == (k < stages) == (n < len(data))
            assert np.array_equal(np.asarray(image), expected[k])
            outcomes.add(k)
        assert outcomes == {"refused", *range(1, stages + 1)}


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 8)),
)


def mutate(data: bytes, kind: str, pos: int, arg: int) -> bytes:
    pos %= len(data) + 1
    if kind == "flip" and pos < len(data):
        b = bytearray(data)
        b[pos] ^= 1 << arg
        return bytes(b)
    if kind == "truncate":
        return data[:pos]
    if kind == "insert":
        return data[:pos] + bytes([arg]) + data[pos:]
    return data[:pos] + data[pos + arg :]


FUZZ_EXAMPLES = int(os.environ.get("VQCODEC_FUZZ_EXAMPLES", "1500"))
"""Cases of each fuzz test below; docs/fuzzing.md records a long run."""


@given(which=st.integers(0, 2), mutations=st.lists(mutation, min_size=1, max_size=4), fix_crc=st.booleans())
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_files_decode_or_raise_vqz_error(valid_files, tiny_model, which: int, mutations: list,
                                                fix_crc: bool) -> None:
    data = valid_files[which]
    for kind, pos, arg in mutations:
        data = mutate(data, kind, pos, arg)
    if fix_crc:
        data = rechecksum(data)  # get past the checksums to exercise the parser and decoder
    decode_or_vqz_error(data, tiny_model)


SIZES = [0, 1, 2, 7, 8, 9, 255, 256, 4000, 16384, 65535, 2**24, 2**28, 2**28 + 1, 2**31, 2**35 - 1]


@given(which=st.integers(0, 2), mode=st.sampled_from(["L", "LA", "RGB", "RGBA"]),
       width=st.sampled_from(SIZES) | st.integers(1, 64), height=st.sampled_from(SIZES) | st.integers(1, 64),
       stages=st.lists(st.integers(0, 3), min_size=1, max_size=4), junk=st.binary(max_size=64),
       alpha=st.sampled_from(["valid", "none", "junk", "empty"]), own_id=st.booleans())
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_forged_files_with_valid_checksums_decode_or_raise(valid_files, tiny_model, which: int, mode: str,
                                                          width: int, height: int, stages: list[int], junk: bytes,
                                                          alpha: str, own_id: bool) -> None:
    """Header fields, mode/alpha combinations and huge sizes with short streams, every checksum valid."""
    f = container.unpack(valid_files[which])
    pool = [container.trim(s) for s in f.streams] + [junk]
    blocks = [pool[i % len(pool)] for i in stages]
    alpha_block = {"valid": f.alpha or zlib.compress(bytes(width * height % 4096)), "none": None,
                   "junk": junk, "empty": b""}[alpha]
    model_id = f.header.model_id if own_id else b"\0\1\2\3"
    decode_or_vqz_error(forge(mode, width, height, model_id, blocks, alpha_block), tiny_model)


def test_same_pixels_with_one_and_two_threads(default_model, kodak_crop) -> None:
    data = codec.compress(kodak_crop, default_model, default_model.config.num_stages)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = np.asarray(codec.decompress(data))
        torch.set_num_threads(2)
        two = np.asarray(codec.decompress(data))
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, two)


def test_same_bytes_in_another_process(default_model, kodak_crop, tmp_path) -> None:
    src = tmp_path / "crop.png"
    kodak_crop.save(src)
    here = codec.compress(src, default_model, 4)
    script = "import sys, vqcodec; sys.stdout.buffer.write(vqcodec.compress(sys.argv[1], quality=4))"
    other = subprocess.run([sys.executable, "-c", script, str(src)], capture_output=True, timeout=120, check=True)
    assert other.stdout == here
