"""Hostile and huge inputs: tiling, allocation guards, fuzzed files, determinism."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import zlib

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
    whole = codec.encode_indices(default_model, rgb, q)
    tiled = codec.encode_indices(default_model, rgb, q, tile=4)
    assert (whole == tiled).mean() > 0.99
    a = codec.decode_indices(default_model, whole, rgb.shape[1], rgb.shape[0])
    b = codec.decode_indices(default_model, whole, rgb.shape[1], rgb.shape[0], tile=4)
    assert abs(psnr(rgb, a) - psnr(rgb, b)) < 0.1
    assert np.abs(a.astype(int) - b).max() <= 2


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_grid_larger_than_its_stream_is_refused_before_allocation(tiny_model) -> None:
    f = container.unpack(codec.compress(noise_image(16, 16), tiny_model))
    h = f.header
    side = 4000 * tiny_model.config.stride
    big = container.VqzFile(h.__class__(**{**h.__dict__, "width": side, "height": side,
                                           "grid_h": 4000, "grid_w": 4000}), f.streams, f.alpha)
    data = container.pack(big)
    start = time.perf_counter()
    with pytest.raises(VqzError, match="too short"):
        codec.decompress(data, tiny_model)
    assert time.perf_counter() - start < 0.05


@pytest.fixture(scope="module")
def valid_files(tiny_model) -> list[bytes]:
    return [codec.compress(noise_image(w, h, mode, seed=w), tiny_model, q)
            for w, h, mode, q in [(16, 16, "RGB", 3), (9, 5, "RGBA", 1), (23, 8, "L", 2)]]


def decode_or_vqz_error(data: bytes, model) -> None:
    start = time.perf_counter()
    try:
        codec.decompress(data, model)
    except VqzError:
        pass
    assert time.perf_counter() - start < 1.0


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
"""Cases of the mutation fuzz test; docs/fuzzing.md records a run with 100,000."""


@given(which=st.integers(0, 2), mutations=st.lists(mutation, min_size=1, max_size=4), fix_crc=st.booleans())
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_files_decode_or_raise_vqz_error(valid_files, tiny_model, which: int, mutations: list,
                                                fix_crc: bool) -> None:
    data = valid_files[which]
    for kind, pos, arg in mutations:
        data = mutate(data, kind, pos, arg)
    if fix_crc and len(data) > 4:
        data = with_crc(data[:-4])  # get past the checksum to exercise the parser and decoder
    decode_or_vqz_error(data, tiny_model)


@given(which=st.integers(0, 2), field=st.sampled_from(["width", "height", "name_len", "stages", "grid_h",
                                                     "grid_w", "stage_len", "alpha_len"]),
       value=st.sampled_from([0, 1, 2, 255, 256, 65535, 65536, 2**31 - 1, 2**32 - 1]))
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_header_fields_at_extremes(valid_files, tiny_model, which: int, field: str, value: int) -> None:
    data = valid_files[which]
    name_len = data[18]
    offsets = {"width": (10, "<I"), "height": (14, "<I"), "name_len": (18, "<B"),
               "stages": (27 + name_len, "<B"), "grid_h": (28 + name_len, "<H"), "grid_w": (30 + name_len, "<H"),
               "stage_len": (32 + name_len, "<I"), "alpha_len": (32 + name_len + 4 * data[27 + name_len], "<I")}
    offset, fmt = offsets[field]
    body = bytearray(data[:-4])
    struct.pack_into(fmt, body, offset, value % (256 ** struct.calcsize(fmt)))
    decode_or_vqz_error(with_crc(bytes(body)), tiny_model)


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
