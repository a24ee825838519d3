"""The codec API: image modes, sizes, determinism, qualities and model identity."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import noise_image
from vqcodec import codec, container
from vqcodec.errors import ArgumentError, ImageError, VqcodecError, VqzError
from vqcodec.images import PrecisionWarning


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (33, 17), (8, 8), (9, 1)])
def test_any_size_round_trips(tiny_model, size: tuple[int, int]) -> None:
    out = codec.decompress(codec.compress(noise_image(*size), tiny_model, 2), tiny_model)
    assert out.size == size and out.mode == "RGB"


def test_same_input_gives_identical_bytes(default_model, kodak_crop) -> None:
    assert codec.compress(kodak_crop, default_model, 3) == codec.compress(kodak_crop.copy(), default_model, 3)


@pytest.mark.parametrize("quality", [5, 12])
def test_bfloat16_arithmetic_codes_as_well_and_decodes_the_same_pixels(default_model, quality: int) -> None:
    """The bfloat16 networks and code search (where a CPU has bfloat16) against the float32 ones on a Kodak crop
    of 384x256: the same rate and PSNR within rounding, and one file decoded both ways within 0.02 dB."""
    import dataclasses

    from tests.conftest import KODAK

    with Image.open(KODAK / "kodim23.png") as im:
        image = im.convert("RGB").crop((128, 64, 512, 320))
    f32, bf16 = (dataclasses.replace(default_model, arithmetic=a) for a in ("float32", "bfloat16"))
    data32, data16 = codec.compress(image, f32, quality), codec.compress(image, bf16, quality)
    assert codec.compress(image, bf16, quality) == data16  # deterministic on one machine
    assert abs(len(data16) / len(data32) - 1) < 0.02
    assert abs(psnr(image, codec.decompress(data16, bf16)) - psnr(image, codec.decompress(data32, f32))) < 0.05
    assert abs(psnr(image, codec.decompress(data32, bf16)) - psnr(image, codec.decompress(data32, f32))) < 0.02
    assert not np.array_equal(np.asarray(codec.decompress(data32, bf16)), np.asarray(codec.decompress(data32, f32)))


def test_default_model_reconstructs_a_photo(default_model, kodak_crop) -> None:
    top = default_model.config.num_stages
    low = codec.decompress(codec.compress(kodak_crop, default_model, 1))
    high_bytes = codec.compress(kodak_crop, default_model, top)
    high = codec.decompress(high_bytes)
    assert psnr(kodak_crop, high) > 22.0
    assert psnr(kodak_crop, high) > psnr(kodak_crop, low)
    assert codec.info(high_bytes).bpp < 2.0


def test_lower_quality_decodes_from_a_full_file(default_model, kodak_crop) -> None:
    # Greedy coding (effort 0) fixes each stage before the next, so a prefix of a full file is exactly
    # the file of that quality; searching efforts choose early stages for the full depth instead.
    # A prefix of k stages is the full-size quality that keeps k stages (`decompress`'s quality counts stages).
    # Latent refinement (by default from 16 stages) codes other latents than the encoder's, so it is off here;
    # the prefix of a refined file still decodes, to the refined latents' first stages.
    levels = codec.quality_levels(default_model)

    def keeping(stages: int) -> int:
        return levels.index((stages, 1.0, 1.0)) + 1

    full = codec.compress(kodak_crop, default_model, keeping(default_model.config.num_stages), effort=0,
                          refine_steps=0)
    for k in (3, 5):
        from_prefix = codec.decompress(full, quality=k)
        direct = codec.decompress(codec.compress(kodak_crop, default_model, keeping(k), effort=0))
        assert np.array_equal(np.asarray(from_prefix), np.asarray(direct))
    refined = codec.compress(kodak_crop, default_model, keeping(default_model.config.num_stages), effort=0)
    assert refined != full and codec.decompress(refined, quality=5).size == kodak_crop.size
    with pytest.raises(VqzError, match="qualities 1.."):
        codec.decompress(codec.compress(kodak_crop, default_model, keeping(3)), quality=4)


def test_quality_is_validated(tiny_model) -> None:
    with pytest.raises(ArgumentError, match="quality must be an integer 1..3"):
        codec.compress(noise_image(4, 4), tiny_model, 4)


def test_grayscale_stays_grayscale(tiny_model) -> None:
    out = codec.decompress(codec.compress(noise_image(12, 10, "L"), tiny_model), tiny_model)
    assert out.mode == "L" and out.size == (12, 10)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_kept_losslessly(tiny_model, mode: str) -> None:
    im = noise_image(21, 13, mode, seed=3)
    out = codec.decompress(codec.compress(im, tiny_model), tiny_model)
    assert out.mode == mode
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(im.getchannel("A")))


def test_palette_with_transparency_becomes_rgba(tiny_model) -> None:
    im = noise_image(8, 8, "RGB").convert("P")
    im.info["transparency"] = 0
    assert codec.decompress(codec.compress(im, tiny_model), tiny_model).mode == "RGBA"


def test_sixteen_bit_input_is_reduced_with_a_warning(tiny_model) -> None:
    im = Image.fromarray(np.full((6, 5), 40000, dtype=np.uint16))
    with pytest.warns(PrecisionWarning):
        data = codec.compress(im, tiny_model)
    assert codec.decompress(data, tiny_model).mode == "L"


def test_exif_orientation_is_applied(tiny_model) -> None:
    im = noise_image(20, 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif)
    buf.seek(0)
    out = codec.decompress(codec.compress(Image.open(buf), tiny_model), tiny_model)
    assert out.size == (10, 20)


def test_oversized_input_is_refused_before_decoding(tiny_model) -> None:
    with pytest.raises(ImageError, match="over the limit"):
        codec.compress(noise_image(100, 100), tiny_model, max_pixels=5000)


def test_file_from_another_model_is_refused(tiny_model, default_model) -> None:
    data = codec.compress(noise_image(16, 16), tiny_model)
    with pytest.raises(VqzError, match="not installed"):
        codec.decompress(data)
    with pytest.raises(VqzError, match="not by the given model"):
        codec.decompress(data, default_model)


def test_damaged_alpha_is_a_vqz_error(tiny_model) -> None:
    f = container.unpack(codec.compress(noise_image(8, 8, "RGBA"), tiny_model))
    bad_alpha = zlib.compress(b"\x00" * 10)
    header = f.header.__class__(**{**f.header.__dict__, "alpha_length": len(bad_alpha)})
    with pytest.raises(VqzError, match="alpha"):
        codec.decompress(container.pack(container.VqzFile(header, f.streams, bad_alpha)), tiny_model)


@pytest.mark.parametrize("name", ["kodim05.png", "kodim19.png"])
def test_target_bpp_lands_within_five_percent(default_model, name: str) -> None:
    from tests.conftest import KODAK
    from vqcodec.images import open_image, prepare

    prepared = prepare(open_image(KODAK / name))
    height, width = prepared.rgb.shape[:2]
    latents = codec.embed(default_model, prepared.rgb)
    grid = codec.grid_shape(default_model, width, height)

    def bpp(q: int, weight: float) -> float:
        indices = codec.quantize(default_model, latents, grid, q, weight)
        return 8 * len(codec._pack(default_model, prepared, indices, (width, height))) / (width * height)

    full = [q for q, level in enumerate(codec.quality_levels(default_model), start=1) if level.shrink == 1]
    for q in (full[0], full[2]):  # targets inside the rates each full-size quality can reach, whatever the model
        target = (bpp(q, 1e4) + bpp(q, 0.0)) / 2
        got = codec.info(codec.compress(KODAK / name, default_model, target_bpp=target)).bpp
        assert abs(got - target) <= 0.05 * target, (q, target, got)


def test_target_bpp_and_quality_exclude_each_other(tiny_model) -> None:
    with pytest.raises(ArgumentError, match="not both"):
        codec.compress(noise_image(8, 8), tiny_model, 2, target_bpp=0.5)


@pytest.mark.parametrize("kwargs", [
    {"quality": 2.5}, {"quality": "2"}, {"quality": 0}, {"quality": True}, {"target_bpp": -1.0},
    {"target_bpp": float("nan")}, {"target_bpp": float("inf")}, {"target_bpp": "0.5"},
    {"quality": 2, "target_bpp": 0.5}, {"max_pixels": 0}, {"max_pixels": 1.5},
])
def test_bad_compress_arguments_are_vqcodec_errors(tiny_model, kwargs: dict) -> None:
    with pytest.raises(ArgumentError) as caught:
        codec.compress(noise_image(8, 8), tiny_model, **kwargs)
    assert isinstance(caught.value, VqcodecError) and isinstance(caught.value, ValueError)


def test_bad_decompress_arguments_are_vqcodec_errors(tiny_model, tmp_path) -> None:
    data = codec.compress(noise_image(8, 8), tiny_model, 2)
    with pytest.raises(ArgumentError, match="quality"):
        codec.decompress(data, tiny_model, quality=1.5)
    with pytest.raises(ArgumentError, match="bytes, a path or a binary file"):
        codec.decompress(12345, tiny_model)
    text = tmp_path / "t.txt"
    text.write_text("hello")
    with open(text) as f, pytest.raises(ArgumentError, match="binary"):
        codec.decompress(f, tiny_model)


def test_decompress_and_info_accept_bytes_paths_and_binary_files(tiny_model, tmp_path) -> None:
    data = codec.compress(noise_image(12, 9), tiny_model, 2)
    path = tmp_path / "x.vqz"
    path.write_bytes(data)
    expected = np.asarray(codec.decompress(data, tiny_model))
    with open(path, "rb") as f:
        sources = [bytearray(data), memoryview(data), str(path), path, io.BytesIO(data), f]
        for source in sources:
            assert np.array_equal(np.asarray(codec.decompress(source, tiny_model)), expected), type(source)
    assert codec.info(path).size == codec.info(io.BytesIO(data)).size == len(data)
    with pytest.raises(VqzError, match="no such file"):
        codec.decompress(tmp_path / "missing.vqz", tiny_model)


def test_compress_accepts_paths_bytes_and_binary_files(tiny_model, tmp_path) -> None:
    path = tmp_path / "x.png"
    noise_image(12, 9).save(path)
    expected = codec.compress(noise_image(12, 9), tiny_model, 2)
    with open(path, "rb") as f:
        for source in (str(path), path, f, io.BytesIO(path.read_bytes()), path.read_bytes()):
            assert codec.compress(source, tiny_model, 2) == expected, type(source)
    with pytest.raises(ArgumentError, match="PIL image, a path"):
        codec.compress(12345, tiny_model)


def _deep_images(tmp_path) -> dict[str, tuple]:
    rng = np.random.default_rng(7)
    pgm = tmp_path / "deep.pgm"  # 16-bit PGM, opened by Pillow as mode I, values 0..127 of 65535
    low = rng.integers(0, 128, (6, 5)).astype(">u2")
    pgm.write_bytes(b"P5\n5 6\n65535\n" + low.tobytes())
    wide = rng.integers(0, 1 << 20, (6, 5)).astype(np.int32)  # 32-bit values beyond 16 bits
    Image.fromarray(wide, "I").save(tmp_path / "wide.tif")
    unit = rng.random((6, 5)).astype(np.float32)  # float image in [0, 1]
    Image.fromarray(unit, "F").save(tmp_path / "unit.tif")
    return {
        "deep.pgm": ("I", low.astype(np.float64) * 255 / 65535),
        "wide.tif": ("I", (wide - wide.min()) * 255.0 / (wide.max() - wide.min())),
        "unit.tif": ("F", unit.astype(np.float64) * 255),
    }


@pytest.mark.parametrize("name", ["deep.pgm", "wide.tif", "unit.tif"])
def test_deep_modes_map_their_real_range_to_8_bits(tmp_path, name: str) -> None:
    from vqcodec.images import load_image

    mode, expected = _deep_images(tmp_path)[name]
    with pytest.warns(PrecisionWarning) as caught:
        prepared = load_image(tmp_path / name)
    message = str(caught[0].message)
    assert str(tmp_path / name) in message and f"mode {mode}" in message and "16-bit" not in message
    assert prepared.mode == "L"
    assert np.abs(prepared.rgb[..., 0] - expected).max() <= 0.5 + 1e-9


def test_float_image_with_nan_is_refused(tmp_path) -> None:
    from vqcodec.images import load_image

    arr = np.zeros((4, 4), np.float32)
    arr[1, 1] = np.nan
    Image.fromarray(arr, "F").save(tmp_path / "nan.tif")
    with pytest.raises(ImageError, match="nan.tif.*not finite"):
        load_image(tmp_path / "nan.tif")


def test_animated_gif_keeps_its_first_frame_with_a_warning_and_closes_its_file(tiny_model, tmp_path) -> None:
    import gc
    import warnings

    from vqcodec.images import FrameWarning

    frames = [noise_image(10, 8, seed=i).convert("P") for i in range(3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = codec.compress(path, tiny_model, 1)
        gc.collect()
    kinds = [w.category for w in caught]
    assert ResourceWarning not in kinds, [str(w.message) for w in caught]
    assert kinds == [FrameWarning]
    assert str(path) in str(caught[0].message) and "first frame" in str(caught[0].message)
    assert codec.info(data).header.width == 10


@pytest.mark.parametrize("target", [0.001, 50.0])
def test_target_bpp_out_of_reach_warns_what_was_reached(tiny_model, target: float) -> None:
    from vqcodec.rate import RateWarning

    with pytest.warns(RateWarning, match=f"target {target:g} bpp is out of reach") as caught:
        data = codec.compress(noise_image(16, 16), tiny_model, target_bpp=target)
    assert f"reached {codec.info(data).bpp:.4f} bpp" in str(caught[0].message)
