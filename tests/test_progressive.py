"""Issue 17 on Kodak: prefixes of a file decode as lower qualities, truncate copies bytes, info says where."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import KODAK
from tests.test_container import version_2
from vqcodec import codec, container
from vqcodec.entropy import adaptive
from vqcodec.errors import VqzError

IMAGES = ["kodim05.png", "kodim19.png", "kodim23.png"]


@pytest.fixture(scope="module")
def kodak_files(default_model) -> dict[str, bytes]:
    top = default_model.config.num_stages
    return {name: codec.compress(KODAK / name, default_model, top) for name in IMAGES}


def test_every_cut_of_a_kodak_file_keeps_its_complete_stages_or_is_refused(kodak_files) -> None:
    data = kodak_files[IMAGES[0]]
    full = container.unpack(data)
    ends = codec.info(data).quality_ends
    for n in range(1, len(data)):
        complete = sum(end <= n for end in ends)
        if complete == 0:
            with pytest.raises(VqzError, match="truncated"):
                container.unpack(data[:n], allow_truncated=True)
        else:
            assert container.unpack(data[:n], allow_truncated=True).streams == full.streams[:complete]


def test_a_cut_at_each_stage_boundary_gives_the_pixels_of_that_quality(kodak_files, default_model) -> None:
    data = kodak_files[IMAGES[0]]
    ends = codec.info(data).quality_ends
    for q, end in enumerate(ends, start=1):
        prefix = codec.decompress(data[:end], default_model)
        assert prefix.info == {"quality": q, "truncated": q < len(ends)}
        assert np.array_equal(np.asarray(prefix), np.asarray(codec.decompress(data, default_model, q)))
        if q < len(ends):  # a cut inside the next stage gives the same grids, hence the same image
            _, _, inside = codec.decompress_indices(data[: end + (ends[q] - end) // 2], default_model)
            _, _, at_end = codec.decompress_indices(data[:end], default_model)
            assert np.array_equal(inside, at_end)


@pytest.mark.parametrize("name", IMAGES)
def test_truncate_equals_decompress_quality_on_kodak(kodak_files, default_model, name: str) -> None:
    """Same grids, alpha, size and mode as `--quality Q` of the full file, hence the same pixels; and as the prefix."""
    data = kodak_files[name]
    ends = codec.info(data).quality_ends
    for q in range(1, len(ends) + 1):
        small = codec.truncate(data, q)
        f_small, _, g_small = codec.decompress_indices(small, default_model)
        f_full, _, g_full = codec.decompress_indices(data, default_model, q)
        _, _, g_prefix = codec.decompress_indices(data[: ends[q - 1]], default_model)
        assert np.array_equal(g_small, g_full) and np.array_equal(g_prefix, g_full)
        assert (f_small.header.width, f_small.header.height, f_small.header.mode, f_small.alpha) == \
               (f_full.header.width, f_full.header.height, f_full.header.mode, f_full.alpha)
        last_check = container.CRC_BYTES - container.TAG_BYTES if q < len(ends) else 0  # a whole CRC-32 ends it
        assert len(small) == ends[q - 1] - (container.header_length(data) - container.header_length(small)) + last_check
    q = 3
    assert np.array_equal(np.asarray(codec.decompress(codec.truncate(data, q), default_model)),
                          np.asarray(codec.decompress(data, default_model, q)))


def test_fixed_overhead_of_kodak_files_is_at_most_40_bytes_at_quality_8(kodak_files, default_model) -> None:
    """Issue 17: header, stage lengths and checks of a default-model Kodak file at quality 8 take at most 40 bytes,
    and 16 + 3 per stage at every stage count (76 at the 20 stages of the top quality, docs/format.md); the file
    names the model by its short id, which pins the full fingerprint."""
    for data in kodak_files.values():
        for stages, cut in ((default_model.config.num_stages, data), (8, codec.truncate(data, 8))):
            h = container.read_header(cut)
            assert h.stages == stages and len(cut) - sum(h.stage_lengths) <= 16 + 3 * stages
            assert stages > 8 or len(cut) - sum(h.stage_lengths) <= 40
            assert h.model_id == default_model.fingerprint


def test_version_2_files_of_the_shipped_model_still_decode(default_model) -> None:
    """The model that wrote version-2 files still ships, so they decode, to the pixels of the version-3 file.
    (Version 2 had fixed tables only: the file is one of fewer stages than adaptive coding starts at.)"""
    data = codec.compress(KODAK / IMAGES[1], default_model, adaptive.ADAPTIVE_FROM["mse"] - 1)
    assert container.read_header(data).version == container.VERSION
    old = version_2(container.unpack(data))
    assert old[4] == 2 and len(old) > len(data)
    assert np.array_equal(np.asarray(codec.decompress(old, default_model)), np.asarray(codec.decompress(data, default_model)))
    small_old, small = container.unpack(codec.truncate(old, 2)), container.unpack(codec.truncate(data, 2))
    assert small_old.header.version == 3 and small_old.streams == small.streams
