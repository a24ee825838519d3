"""Reduced qualities: the lowest qualities code the image shrunk and enlarge it after decoding (format version 4)."""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TINY, save_untrained, synthetic_image
from tests.test_cli import run
from vqcodec import codec, container, ladder, tokens
from vqcodec.container import VqzFile, VqzHeader
from vqcodec.errors import ArgumentError, VqzError
from vqcodec.model import ModelConfig
from vqcodec.zoo import CodecModel, load_model

REDUCED = replace(TINY, name="tiny-reduced", reduced_qualities=((2.0, 3), (1.5, 2)), full_from=2)


@pytest.fixture(scope="module")
def reduced_model(tmp_path_factory: pytest.TempPathFactory) -> CodecModel:
    """A small untrained model whose qualities 1 and 2 shrink the image by 2 and 1.5, saved and loaded."""
    return load_model(save_untrained(REDUCED, tmp_path_factory.mktemp("models") / "reduced.safetensors"))


def test_the_ladder_puts_reduced_qualities_first_and_drops_the_full_size_ones_below_full_from(
        reduced_model: CodecModel) -> None:
    levels = codec.quality_levels(reduced_model)
    assert [(lv.stages, lv.shrink) for lv in levels] == [(3, 2.0), (2, 1.5), (2, 1.0), (3, 1.0)]
    assert codec.full_size_qualities(reduced_model) == "3..4"
    assert codec.coding_levels(reduced_model) == ((1, 1.0, 1.0), (2, 1.0, 1.0), (3, 1.0, 1.0))


def test_config_fields_are_validated_and_left_out_of_the_json_when_unused() -> None:
    assert "reduced_qualities" not in json.loads(TINY.to_json()) and "full_from" not in json.loads(TINY.to_json())
    assert ModelConfig.from_json(REDUCED.to_json()) == REDUCED
    for bad in ({"reduced_qualities": ((1.0, 2),)}, {"reduced_qualities": ((2.0, 4),)}, {"full_from": 0},
                {"full_from": 4}, {"default_quality": 5}):
        with pytest.raises(ValueError):
            replace(REDUCED, **bad)
    assert replace(REDUCED, default_quality=4).default_quality == 4


@pytest.mark.parametrize("size", [(64, 48), (33, 17), (9, 1), (1, 1)])
def test_a_reduced_quality_codes_the_shrunk_image_and_decodes_to_the_full_size(reduced_model: CodecModel,
                                                                                size: tuple[int, int]) -> None:
    image = synthetic_image(size=size)
    data = codec.compress(image, reduced_model, 1)
    header = container.read_header(data)
    coded = codec.coded_size(*size, 2.0)
    assert (header.width, header.height) == size and header.stages == 3
    if coded == size:  # nothing to shrink: a version-3 file of the image itself
        assert header.version == 3 and header.reduced is None
    else:
        assert header.version == 4 and header.reduced == coded == (header.coded_width, header.coded_height)
    out = codec.decompress(data, reduced_model)
    assert out.size == size and out.mode == "RGB"
    small = np.asarray(image.resize(coded, codec.RESIZE_DOWN))
    grids = codec.encode_indices(reduced_model, small, 4)  # the full-size quality of the same 3 stages
    pixels = codec.decode_indices(reduced_model, grids, *coded)
    expected = pixels if coded == size else np.asarray(Image.fromarray(pixels).resize(size, codec.RESIZE_UP))
    assert np.array_equal(np.asarray(out), expected)


def test_reduced_files_keep_alpha_at_full_size_and_truncate_to_reduced_files(reduced_model: CodecModel) -> None:
    image = synthetic_image("RGBA", size=(40, 24))
    data = codec.compress(image, reduced_model, 2)
    assert container.read_header(data).reduced == (27, 16)
    out = codec.decompress(data, reduced_model)
    assert out.mode == "RGBA" and out.size == (40, 24)
    assert np.array_equal(np.asarray(out)[..., 3], np.asarray(image)[..., 3])
    cut = container.truncate(data, 1)
    assert container.read_header(cut).reduced == (27, 16) and container.read_header(cut).stages == 1
    assert np.array_equal(np.asarray(codec.decompress(cut, reduced_model)),
                          np.asarray(codec.decompress(data, reduced_model, quality=1)))


def test_full_size_grids_are_refused_for_reduced_qualities(reduced_model: CodecModel, tmp_path: Path) -> None:
    rgb = np.asarray(synthetic_image())
    with pytest.raises(ArgumentError, match="shrunk image.*3..4"):
        codec.encode_indices(reduced_model, rgb, 1)
    with pytest.raises(ArgumentError, match="shrunk image"):
        tokens.tokenize([synthetic_image()], reduced_model, 2)
    path = tmp_path / "a.vqz"
    path.write_bytes(codec.compress(synthetic_image(), reduced_model, 1))
    with pytest.raises(VqzError, match="reduced size"):
        tokens.tokenize([path], reduced_model, 3)


def test_target_bpp_reaches_below_the_full_size_qualities(reduced_model: CodecModel) -> None:
    image = synthetic_image(size=(96, 64))
    smallest_full, lowest = (len(codec.compress(image, reduced_model, q)) for q in (3, 1))
    assert lowest < smallest_full
    data = codec.compress(image, reduced_model, target_bpp=8 * lowest / (96 * 64))
    assert container.read_header(data).reduced == (48, 32) and abs(len(data) - lowest) <= 0.02 * lowest


def _reduced_header(coded: tuple[int, int]) -> VqzHeader:
    return VqzHeader("RGB", 100, 60, bytes(4), (3,), reduced=coded)


def test_version_4_header_layout_and_round_trip() -> None:
    stream = b"\x01\x02\x03\x04"
    header = container.header_for("RGB", 100, 60, bytes(4), (stream,), reduced=(50, 30))
    data = container.pack(VqzFile(header, (stream,)))
    body = container.MAGIC + bytes([4, 3]) + bytes([100, 60, 50, 30]) + b"\0" + bytes(4) + bytes([1, 4])
    assert data[: len(body)] == body and data[len(body)] == zlib.crc32(body) & 0xFF
    parsed = container.unpack(data)
    assert parsed.header.reduced == (50, 30) and parsed.header.version == 4 and parsed.streams == (stream,)
    assert container.info(data).header_bytes == len(body) + 1


@pytest.mark.parametrize("coded", [(100, 60), (101, 30), (50, 61), (0, 30), (50, 0)])
def test_a_coded_size_that_is_not_a_reduction_is_refused(coded: tuple[int, int]) -> None:
    with pytest.raises(VqzError, match="not a reduction"):
        container.pack_header(_reduced_header(coded))
    body = container.header_body(_reduced_header(coded))  # forged with a valid check
    data = container.assemble(body, [b"\x01\x02\x03"])
    with pytest.raises(VqzError, match="not a reduction"):
        container.read_header(data)


def test_reduced_qualities_are_parsed_from_factor_stage_pairs() -> None:
    assert ladder.parse_reduced("2:4, 1.5:4") == ((2.0, 4), (1.5, 4)) and ladder.parse_reduced("") == ()
    for bad in ("2x4", "2", "a:4", "2:b"):
        with pytest.raises(ArgumentError, match="FACTOR:STAGES"):
            ladder.parse_reduced(bad)


def test_relabel_keeps_the_default_quality_s_level_under_its_new_number(tiny_model: CodecModel) -> None:
    assert codec.quality_levels(tiny_model)[codec.default_quality(tiny_model) - 1] == (2, 1.0, 1.0)
    config = ladder.relabel(tiny_model, ((2.0, 3),), 2)
    assert config.reduced_qualities == ((2.0, 3),) and config.full_from == 2 and config.default_quality == 2
    with pytest.raises(ArgumentError, match="leave out the default"):
        ladder.relabel(tiny_model, ((2.0, 3),), 3)
    with pytest.raises(ArgumentError, match="shrink factor above 1"):
        ladder.relabel(tiny_model, ((0.5, 3),), 1)


def test_qualities_command_prints_the_ladder_and_writes_a_model_that_reads_the_old_files(
        tiny_model_path: Path, tiny_model: CodecModel, tmp_path: Path) -> None:
    out = tmp_path / "relabelled.safetensors"
    made = run("qualities", tiny_model_path, "--reduced", "2:3", "--full-from", "2", "--out", out)
    assert made.returncode == 0, made.stderr
    shown = run("qualities", out)
    assert shown.returncode == 0 and shown.stdout.splitlines() == [
        "  1:   3 stages, shrunk by 2, rate weights x 1, effort 1, 0 refine steps",
        "  2:   2 stages, full size, rate weights x 1, effort 1, 0 refine steps  (default)",
        "  3:   3 stages, full size, rate weights x 1, effort 1, 0 refine steps"]
    new = load_model(out)
    assert new.decodes[0] == tiny_model.fingerprint
    old_file = codec.compress(synthetic_image(), tiny_model, 3)
    assert np.array_equal(np.asarray(codec.decompress(old_file, new)), np.asarray(codec.decompress(old_file, tiny_model)))
    again = run("qualities", tiny_model_path, "--reduced", "2:3", "--out", out)
    assert again.returncode == 1 and "exists" in again.stderr
    usage = run("qualities", tiny_model_path, "--reduced", "2:3")
    assert usage.returncode == 2 and "need --out" in usage.stderr


def test_the_ladder_is_described_in_one_line(reduced_model: CodecModel, tiny_model: CodecModel) -> None:
    assert ladder.describe(reduced_model) == "qualities 1-2: image shrunk by 2, 1.5 (3, 2 stages); 3-4: 2-3 stages"
    assert ladder.describe(tiny_model) == "qualities 1-3: that many stages"


def test_perceptual_codes_its_five_lowest_qualities_shrunk_and_keeps_its_default_level(kodak_crop: Image.Image) -> None:
    """`perceptual` (short id 20, vqcodec 0.19.0; its ladder is id 17's, vqcodec 0.16.0) codes reduced qualities
    2:2, 2:3, 2:4, 1.5:4, 1.5:6 under its full-size ones from 4 stages (chosen on BSDS500 val, its card): the
    default is 5 stages at full size, quality 7, and each of the lowest qualities spends fewer bytes than the
    next on the same image."""
    perceptual = load_model("perceptual")
    levels = codec.quality_levels(perceptual)
    assert [(lv.stages, lv.shrink) for lv in levels[:6]] == [(2, 2.0), (3, 2.0), (4, 2.0), (4, 1.5), (6, 1.5),
                                                             (4, 1.0)]
    assert len(levels) == 12 and codec.default_quality(perceptual) == 7
    assert (levels[6].stages, levels[6].shrink, levels[6].scale) == (5, 1.0, 1.0)
    sizes = [len(codec.compress(kodak_crop, perceptual, q, refine_steps=0, effort=1)) for q in (1, 2, 3)]
    assert sizes[0] < sizes[1] < sizes[2]
    header = container.read_header(codec.compress(kodak_crop, perceptual, 5, refine_steps=0, effort=1))
    assert header.stages == 6 and header.reduced == codec.coded_size(*kodak_crop.size, 1.5)
