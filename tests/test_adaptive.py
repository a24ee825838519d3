"""Adaptive coding under a context prior (`vqcodec.entropy.adaptive`) and the files that use it (versions 5, 6)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY, noise_image
from tests.test_robustness import FUZZ_EXAMPLES, decode_or_vqz_error, mutate, mutation, rechecksum
from vqcodec import codec, container
from vqcodec.entropy import ContextPrior, FrequencyPrior, adaptive
from vqcodec.errors import VqzError
from vqcodec.model import VQVAE
from vqcodec.zoo import load_model, save_model

K = 32
MSE_FROM = adaptive.ADAPTIVE_FROM["mse"]


def random_prior(seed: int, stages: int = 3, k: int = K, groups: int = 8) -> ContextPrior:
    rng = np.random.default_rng(seed)
    return ContextPrior(rng.integers(1, 500, (stages, groups + 1, k)), rng.integers(0, groups, (stages, k)))


def image_like_grids(seed: int, stages: int, rows: int, cols: int, k: int = K) -> np.ndarray:
    """Grids that use a few codes of their own, as one image does: the kind adaptive tables learn."""
    rng = np.random.default_rng(seed)
    own = rng.choice(k, size=(stages, 4), replace=False if k >= 4 else True)
    return np.stack([own[s][rng.integers(0, 4, (rows, cols))] for s in range(stages)])


@given(st.integers(0, 2**32 - 1), st.integers(1, 20), st.integers(1, 20))
@settings(max_examples=40, deadline=None)
def test_round_trip_of_any_grid(seed: int, rows: int, cols: int) -> None:
    prior = random_prior(seed % 7)
    grids = np.random.default_rng(seed).integers(0, K, (3, rows, cols))
    streams = adaptive.encode_grids(prior, grids)
    assert np.array_equal(adaptive.decode_grids(prior, streams, rows, cols), grids)
    assert np.array_equal(adaptive.decode_grids(prior, streams[:1], rows, cols), grids[:1])  # a prefix of stages


def test_the_tables_learn_the_image() -> None:
    """Grids that keep to a few codes cost far less once the tables have seen them; the prior alone cannot know."""
    prior = random_prior(1)
    grids = image_like_grids(2, 3, 48, 64)
    learned = sum(map(len, adaptive.encode_grids(prior, grids)))
    fixed = sum(map(len, prior.encode_grids(grids)))
    assert learned < 0.6 * fixed


def test_every_cell_is_in_exactly_one_pass_and_the_first_is_spread() -> None:
    for rows, cols in [(1, 1), (3, 5), (8, 8), (41, 61), (64, 96)]:
        order = np.concatenate(adaptive.passes(rows, cols))
        assert np.array_equal(np.sort(order), np.arange(rows * cols))
        first = adaptive.passes(rows, cols)[0]
        assert len(first) == adaptive.first_cells(1, rows, cols)
    first = adaptive.passes(64, 96)[0]
    assert len(np.unique(first // 96 // 8)) == 8 and len(np.unique(first % 96 // 8)) == 12  # every 8x8 block


def test_first_cells_are_coded_under_the_prior_alone() -> None:
    """The cells `first_cells` counts cost what the fixed tables charge: the decoder's size guard relies on it."""
    prior = random_prior(3, stages=2)
    grids = np.random.default_rng(4).integers(0, K, (2, 16, 24))
    for s in range(2):
        if s == 0:
            head = grids[:1, : adaptive.STAGE0_ROWS]
            assert adaptive.encode_grids(prior, head)[0] == prior.encode_grids(head)[0]
        else:
            assert adaptive.first_cells(s, 16, 24) == len(adaptive.passes(16, 24)[0])


def test_used_from_six_stages_for_context_priors_whose_sums_stay_exact() -> None:
    prior = random_prior(0, stages=8)
    assert not adaptive.used_for(prior, MSE_FROM - 1, 100)
    assert adaptive.used_for(prior, MSE_FROM, 100)
    assert adaptive.used_for(prior, 1, 100, "ms-ssim")
    assert adaptive.describe() == f"files of {MSE_FROM} stages or more" and adaptive.describe("ms-ssim") == "every file"
    assert not adaptive.used_for(FrequencyPrior(np.ones((8, K), dtype=np.int64)), 8, 100)
    huge = ContextPrior(np.full((8, 9, K), 2**40), np.zeros((8, K), dtype=np.int64))
    assert not adaptive.used_for(huge, 8, 2**20)
    with pytest.raises(ValueError, match="too large"):
        adaptive.encode_grids(huge, np.zeros((8, 1024, 1024), dtype=np.int64))


def test_same_streams_in_another_process() -> None:
    prior = random_prior(5)
    grids = image_like_grids(6, 3, 20, 30)
    here = b"".join(adaptive.encode_grids(prior, grids))
    script = ("import sys; from tests.test_adaptive import random_prior, image_like_grids; "
              "from vqcodec.entropy import adaptive; grids = image_like_grids(6, 3, 20, 30); "
              "sys.stdout.buffer.write(b''.join(adaptive.encode_grids(random_prior(5), grids)))")
    there = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True, timeout=120).stdout
    assert there == here


@pytest.fixture(scope="module")
def deep_file(default_model, kodak_crop) -> bytes:
    return codec.compress(kodak_crop, default_model, MSE_FROM + 2)


def test_compress_codes_deep_qualities_adaptively(default_model, kodak_crop, deep_file) -> None:
    shallow = codec.compress(kodak_crop, default_model, codec.default_quality(default_model))
    assert container.read_header(shallow).version == container.VERSION
    header = container.read_header(deep_file)
    assert header.version == 5 and header.adaptive
    _, _, grids = codec.decompress_indices(deep_file, default_model)
    quality = MSE_FROM + 2
    assert np.array_equal(grids, codec.encode_indices(default_model, np.asarray(kodak_crop), quality))
    stored = container.unpack(deep_file).streams
    assert stored == codec.entropy_encode(default_model, grids)[0] == adaptive.encode_grids(default_model.prior, grids)


def test_truncated_adaptive_file_decodes_as_its_lower_quality(default_model, deep_file) -> None:
    cut = container.truncate(deep_file, 3)
    assert container.read_header(cut).version == 5
    assert np.array_equal(np.asarray(codec.decompress(cut, default_model)),
                          np.asarray(codec.decompress(deep_file, default_model, 3)))


def test_reduced_and_adaptive_is_version_6() -> None:
    header = container.VqzHeader("RGB", 64, 48, b"\0\1\2\3", (4, 4), reduced=(32, 24), adaptive=True)
    data = container.pack(container.VqzFile(header, (b"abcd", b"efgh")))
    parsed = container.read_header(data)
    assert data[4] == 6 and parsed.adaptive and parsed.reduced == (32, 24)


def test_adaptive_file_for_a_prior_that_cannot_decode_it_is_refused(tiny_model, kodak_crop) -> None:
    data = codec.compress(kodak_crop, tiny_model, 3)
    f = container.unpack(data)
    forged = container.pack(container.VqzFile(container.VqzHeader(
        f.header.mode, f.header.width, f.header.height, f.header.model_id, f.header.stage_lengths,
        adaptive=True), f.streams))
    with pytest.raises(VqzError, match="coded adaptively"):
        codec.decompress(forged, tiny_model)


def test_forged_size_of_an_adaptive_file_is_refused_before_decoding(default_model, deep_file) -> None:
    f = container.unpack(deep_file)
    h = f.header
    forged = container.pack(container.VqzFile(container.VqzHeader(
        h.mode, 8000, 8000, h.model_id, h.stage_lengths, adaptive=True), f.streams))
    with pytest.raises(VqzError, match="too short"):
        codec.decompress(forged, default_model)


@given(st.integers(0, 2**32 - 1), st.binary(max_size=48))
@settings(max_examples=200, deadline=None)
def test_damaged_streams_decode_to_valid_codes_or_raise(seed: int, junk: bytes) -> None:
    """What `codec.decompress_indices` maps to VqzError (ValueError, RuntimeError, constriction's AssertionError),
    or grids of valid codes."""
    prior = random_prior(seed % 5)
    streams = list(adaptive.encode_grids(prior, image_like_grids(seed, 3, 12, 16)))
    streams[seed % 3] = junk
    try:
        out = adaptive.decode_grids(prior, tuple(streams), 12, 16)
    except (ValueError, RuntimeError, AssertionError):
        return
    assert out.shape == (3, 12, 16) and out.min() >= 0 and out.max() < K


@pytest.fixture(scope="module")
def context_model(tmp_path_factory: pytest.TempPathFactory):
    """A small untrained model of 6 stages with a context prior: its files of 6 stages are coded adaptively."""
    config = replace(TINY, name="tiny-context", num_stages=MSE_FROM)
    torch.manual_seed(0)
    net = VQVAE(config).eval()
    rng = np.random.default_rng(0)
    k = config.codebook_size
    prior = ContextPrior(rng.integers(1, 100, (config.num_stages, 5, k)), rng.integers(0, 4, (config.num_stages, k)))
    path = tmp_path_factory.mktemp("models") / "context.safetensors"
    save_model(net, prior, path)
    return load_model(path)


@pytest.fixture(scope="module")
def adaptive_files(context_model) -> list[bytes]:
    files = [codec.compress(noise_image(w, h, mode, seed=w), context_model, MSE_FROM)
             for w, h, mode in [(16, 16, "RGB"), (9, 5, "RGBA"), (23, 8, "L")]]
    assert all(container.read_header(f).adaptive for f in files)
    return files


@given(which=st.integers(0, 2), mutations=st.lists(mutation, min_size=1, max_size=4), fix_crc=st.booleans())
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_adaptive_files_decode_or_raise_vqz_error(adaptive_files, context_model, which: int,
                                                         mutations: list, fix_crc: bool) -> None:
    """`test_robustness`'s mutations on adaptively coded files, decoded by a model that can decode them."""
    data = adaptive_files[which]
    for kind, pos, arg in mutations:
        data = mutate(data, kind, pos, arg)
    if fix_crc:
        data = rechecksum(data)
    decode_or_vqz_error(data, context_model)


def test_an_ms_ssim_model_codes_every_file_adaptively(kodak_crop, default_model) -> None:
    """`perceptual` codes even its default quality adaptively; `default` keeps fixed tables below `MSE_FROM`."""
    perceptual = load_model("perceptual")
    low = codec.compress(kodak_crop, perceptual, codec.default_quality(perceptual))
    assert container.read_header(low).adaptive
    assert not container.read_header(codec.compress(kodak_crop, default_model, MSE_FROM - 1)).adaptive
    assert np.asarray(codec.decompress(low)).shape == np.asarray(kodak_crop).shape
