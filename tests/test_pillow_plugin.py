"""The Pillow plugin, exercised through Pillow's public API only (plus vqcodec to make and check files)."""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, UnidentifiedImageError
from typer.testing import CliRunner

import vqcodec
from vqcodec.cli.main import app
from vqcodec import codec, container
from tests.conftest import synthetic_image as synthetic


@pytest.fixture(scope="module")
def rgb_vqz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plugin") / "small.vqz"
    path.write_bytes(codec.compress(synthetic(), quality=3))
    return path


def test_registered_like_a_pillow_format() -> None:
    assert Image.registered_extensions()[".vqz"] == "VQZ"


def test_open_reads_header_then_decodes_same_pixels_as_decompress(rgb_vqz: Path) -> None:
    data = rgb_vqz.read_bytes()
    with Image.open(rgb_vqz) as im:
        assert im.format == "VQZ"
        assert im.size == (64, 48) and im.mode == "RGB"
        assert im.info == {"model": "default", "model_id": vqcodec.load_model().fingerprint[:4].hex(), "quality": 3}
        pixels = np.asarray(im)
    assert np.array_equal(pixels, np.asarray(codec.decompress(data)))


def test_open_recognises_magic_bytes_whatever_the_name(rgb_vqz: Path) -> None:
    with Image.open(io.BytesIO(rgb_vqz.read_bytes())) as im:
        assert im.format == "VQZ"
    with Image.open(io.BytesIO(rgb_vqz.read_bytes()), formats=["VQZ"]) as im:
        assert im.size == (64, 48)


def test_open_matches_cli_decompress(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    synthetic(size=(40, 30), seed=3).save(src)
    runner = CliRunner()
    assert runner.invoke(app, ["compress", str(src), "-q", "2", "-o", str(tmp_path / "x.vqz")]).exit_code == 0
    assert runner.invoke(app, ["decompress", str(tmp_path / "x.vqz"), "-o", str(tmp_path / "x.png")]).exit_code == 0
    with Image.open(tmp_path / "x.vqz") as via_pillow, Image.open(tmp_path / "x.png") as via_cli:
        assert via_pillow.format == "VQZ"
        assert np.array_equal(np.asarray(via_pillow), np.asarray(via_cli))


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_save_encodes_like_compress_and_round_trips_mode(tmp_path: Path, mode: str) -> None:
    im = synthetic(mode)
    path = tmp_path / "out.vqz"
    im.save(path, quality=2)
    data = path.read_bytes()
    assert data == codec.compress(im, quality=2)
    assert codec.info(data).header.stages == codec.quality_levels(vqcodec.load_model())[1].stages
    with Image.open(path) as back:
        assert back.mode == mode
        if mode in ("LA", "RGBA"):
            assert np.array_equal(np.asarray(back.getchannel("A")), np.asarray(im.getchannel("A")))


def test_save_to_file_object_with_format_and_default_quality() -> None:
    im = synthetic()
    buf = io.BytesIO()
    im.save(buf, format="VQZ")
    assert buf.getvalue().startswith(container.MAGIC)
    assert buf.getvalue() == codec.compress(im)


def test_save_with_model_parameter(tmp_path: Path) -> None:
    model = vqcodec.load_model("default")
    im = synthetic()
    im.save(tmp_path / "m.vqz", model=model, quality=1)
    assert (tmp_path / "m.vqz").read_bytes() == codec.compress(im, model, 1)


def test_save_rejects_bad_quality_and_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quality must be"):
        synthetic().save(tmp_path / "bad.vqz", quality=99)
    assert not (tmp_path / "bad.vqz").exists()


def test_damaged_header_is_unidentified(rgb_vqz: Path) -> None:
    data = rgb_vqz.read_bytes()
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(data[:12]))
    bad_version = data[:4] + b"\x09" + data[5:]
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(bad_version))


def test_damaged_payload_opens_but_load_raises_oserror(rgb_vqz: Path) -> None:
    data = bytearray(rgb_vqz.read_bytes())
    data[-6] ^= 0xFF
    with Image.open(io.BytesIO(bytes(data))) as im:
        assert im.size == (64, 48)
        with pytest.raises(OSError, match="damaged"):
            im.load()


def test_decoding_is_deferred_until_load(rgb_vqz: Path) -> None:
    f = container.unpack(rgb_vqz.read_bytes())
    data = container.pack(dataclasses.replace(f, header=dataclasses.replace(f.header, model_id=b"\0\0\0\0")))
    with Image.open(io.BytesIO(data)) as im:
        assert (im.size, im.mode, im.info["model"]) == ((64, 48), "RGB", "00000000")
        with pytest.raises(OSError, match="not installed"):
            im.load()


def test_verify_checks_every_checksum_without_decoding(rgb_vqz: Path) -> None:
    """Issue 13 item 14: verify() catches damage in the payload, as Pillow's PNG plugin checks its CRCs."""
    data = rgb_vqz.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        im.verify()
    for where in (-6, len(data) // 2):
        damaged = bytearray(data)
        damaged[where] ^= 0x01
        with Image.open(io.BytesIO(bytes(damaged))) as im:
            with pytest.raises(SyntaxError, match="damaged"):
                im.verify()
    with Image.open(io.BytesIO(data[:-3])) as im:
        with pytest.raises(SyntaxError, match="truncated"):
            im.verify()


def test_truncated_file_loads_only_as_pillow_allows(rgb_vqz: Path) -> None:
    data = rgb_vqz.read_bytes()
    cut = data[: codec.info(data).quality_ends[1] + 5]
    with Image.open(io.BytesIO(cut)) as im:
        with pytest.raises(OSError, match="truncated"):
            im.load()
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with Image.open(io.BytesIO(cut)) as im:
            pixels = np.asarray(im)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    assert np.array_equal(pixels, np.asarray(codec.decompress(data, quality=2)))


def test_huge_claimed_size_is_refused_at_open_from_the_header(rgb_vqz: Path) -> None:
    """Issue 13 item 1: a small file claiming more than Image.MAX_IMAGE_PIXELS is refused before decoding."""
    f = container.unpack(rgb_vqz.read_bytes())
    big = container.pack(dataclasses.replace(f, header=dataclasses.replace(f.header, width=16384, height=16384)))
    start = time.perf_counter()
    with pytest.raises(Image.DecompressionBombError, match="16384x16384 .*MAX_IMAGE_PIXELS"):
        Image.open(io.BytesIO(big))
    assert time.perf_counter() - start < 0.01


def test_alpha_plane_in_an_rgb_file_is_refused() -> None:
    """Issue 13 item 5: an RGBA file whose header is rewritten to say RGB (valid checksum) is refused, not scrambled."""
    data = codec.compress(synthetic("RGBA"), quality=2)
    h = container.read_header(data)
    rgb_header = container.pack_header(dataclasses.replace(h, mode="RGB", alpha_length=0))
    forged = rgb_header + data[container.header_length(data):]
    with pytest.raises(vqcodec.VqzError):
        codec.decompress(forged)
    with pytest.raises(vqcodec.VqzError):
        codec.info(forged)
    with Image.open(io.BytesIO(forged)) as im:
        assert im.mode == "RGB"
        with pytest.raises(OSError):
            im.load()


def test_save_with_target_bpp_encodes_like_compress(tmp_path: Path) -> None:
    im = synthetic(size=(96, 64))
    im.save(tmp_path / "t.vqz", target_bpp=0.5)
    assert (tmp_path / "t.vqz").read_bytes() == codec.compress(im, target_bpp=0.5)


def test_other_formats_unaffected(tmp_path: Path) -> None:
    synthetic().save(tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as im:
        assert im.format == "PNG"
