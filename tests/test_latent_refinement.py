"""Latent refinement: gradient steps on one image's latents before `compress` quantizes them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vqcodec
from tests.conftest import run_cli, synthetic_image
from vqcodec import codec
from vqcodec.errors import ArgumentError
from vqcodec.latent_refinement import (MAX_STEPS, SCHEDULES, check_steps, default_steps, describe_default, loss,
                                       refine, schedule, steps_for)
from vqcodec.model import DISTORTIONS, ModelConfig, _from_rows

MSE_STEPS = SCHEDULES["mse"].steps


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def decoder_error(model, rgb: np.ndarray, latents: torch.Tensor, stages: int) -> float:  # noqa: ANN001
    """Mean squared error of the decoder of `stages` stages on unquantized latents against the image."""
    h, w = codec.grid_shape(model, rgb.shape[1], rgb.shape[0])
    x = codec._to_tensor(rgb, model.config.stride)
    with torch.no_grad():
        y = model.net.decoder_for(stages)(_from_rows(latents, torch.Size((1, latents.shape[1], h, w)))) + 0.5
    return float(F.mse_loss(y, x))


def test_refinement_lowers_the_decoders_error_on_the_image(default_model, kodak_crop) -> None:
    rgb = np.asarray(kodak_crop)
    stages = default_model.config.num_stages
    latents = codec.embed(default_model, rgb)
    refined = codec.refine(default_model, rgb, latents, stages, 10)
    assert refined.shape == latents.shape and not torch.equal(refined, latents)
    before = decoder_error(default_model, rgb, latents, stages)
    assert decoder_error(default_model, rgb, refined, stages) < 0.97 * before
    assert torch.equal(codec.refine(default_model, rgb, latents, stages, 0), latents)


def test_a_refined_file_decodes_as_usual_and_is_better_at_the_top_quality(default_model, kodak_crop) -> None:
    """The format and the decoder do not change: the refined file is an ordinary file of the model, and at
    the top quality (the decoder's own error is half of what is left) its image is closer to the original."""
    rgb = np.asarray(kodak_crop)
    top = len(codec.quality_levels(default_model))
    plain = vqcodec.compress(kodak_crop, default_model, top, refine_steps=0)
    refined = vqcodec.compress(kodak_crop, default_model, top, refine_steps=10)
    assert plain != refined
    gains = [psnr(np.asarray(vqcodec.decompress(d, default_model)), rgb) for d in (plain, refined)]
    assert gains[1] > gains[0] + 0.2
    assert len(refined) < 1.15 * len(plain)
    assert vqcodec.compress(kodak_crop, default_model, top, refine_steps=10) == refined


def test_the_default_refines_the_qualities_of_many_stages_only(default_model, kodak_crop) -> None:
    levels = codec.quality_levels(default_model)
    first = MSE_STEPS[1][0]
    low = max(q for q, level in enumerate(levels, 1) if level.stages < first)
    high = min(q for q, level in enumerate(levels, 1) if level.stages >= first)
    assert vqcodec.compress(kodak_crop, default_model, low) == vqcodec.compress(kodak_crop, default_model, low,
                                                                                 refine_steps=0)
    steps = default_steps(levels[high - 1].stages)
    assert steps > 0
    assert vqcodec.compress(kodak_crop, default_model, high) == vqcodec.compress(kodak_crop, default_model, high,
                                                                                  refine_steps=steps)


def test_index_grids_are_the_ones_compress_writes(default_model, kodak_crop) -> None:
    """`encode_indices` refines as `compress` does, so tools built on the grids see the file's codes."""
    rgb = np.asarray(kodak_crop)
    top = len(codec.quality_levels(default_model))
    for steps in (None, 3):
        grids = codec.encode_indices(default_model, rgb, top, refine_steps=steps)
        data = vqcodec.compress(kodak_crop, default_model, top, refine_steps=steps)
        assert np.array_equal(codec.decompress_indices(data, default_model)[2], grids)


def test_tiles_refine_every_cell_once_with_the_pixels_under_it(tiny_model) -> None:
    """Tile by tile (a thin image with ragged edges, tiles of 4 cells): every cell moves, and a tile's result
    is its own window's refinement, halo included, cut to the cells it owns."""
    rgb = np.asarray(synthetic_image(size=(75, 21), seed=3))
    latents = codec.embed(tiny_model, rgb)
    stages = tiny_model.config.num_stages
    tiled = codec.refine(tiny_model, rgb, latents, stages, 2, tile=4)
    assert tiled.shape == latents.shape
    assert bool((tiled != latents).any(dim=1).all())
    whole = codec.refine(tiny_model, rgb, latents, stages, 2)
    h, w = codec.grid_shape(tiny_model, rgb.shape[1], rgb.shape[0])
    rows, cols, hrows, hcols = codec._tiles(h, w, 4)[0]
    s = tiny_model.config.stride
    window = latents.reshape(h, w, -1).permute(2, 0, 1)[None, :, hrows, hcols]
    pixels = codec._to_tensor(rgb[hrows.start * s : hrows.stop * s, hcols.start * s : hcols.stop * s], s)
    own = refine(tiny_model.net.decoder_for(stages), pixels, window, 2)[0, :, rows, cols]
    assert torch.equal(tiled.reshape(h, w, -1).permute(2, 0, 1)[:, rows, cols], own)
    assert whole.shape == tiled.shape


def test_the_loss_over_the_images_own_pixels_ignores_the_padding(tiny_model) -> None:
    """With `size`, what fills the grid beyond the image does not move the latents; without it, it does. An
    MS-SSIM model's schedule asks for the image's own pixels, an MSE model's for the padded grid (measured)."""
    rgb = np.asarray(synthetic_image(size=(37, 21), seed=4))  # 40 x 24 pixels of grid at stride 8
    latents = codec.embed(tiny_model, rgb)
    h, w = codec.grid_shape(tiny_model, rgb.shape[1], rgb.shape[0])
    grid = latents.reshape(h, w, -1).permute(2, 0, 1)[None]
    decoder = tiny_model.net.decoder_for(tiny_model.config.num_stages)
    pixels = codec._to_tensor(rgb, tiny_model.config.stride)
    other = pixels.clone()
    other[..., rgb.shape[0] :, :] = 1.0
    other[..., :, rgb.shape[1] :] = 0.0
    own = [refine(decoder, x, grid, 3, size=rgb.shape[:2]) for x in (pixels, other)]
    assert torch.equal(own[0], own[1]) and not torch.equal(own[0], grid)
    assert not torch.equal(refine(decoder, pixels, grid, 3), refine(decoder, other, grid, 3))
    assert SCHEDULES["ms-ssim"].own_pixels and not SCHEDULES["mse"].own_pixels


def test_refinement_works_inside_inference_mode(tiny_model) -> None:
    """Callers may compress under `torch.inference_mode()`; the steps still get their gradients."""
    image = synthetic_image()
    with torch.inference_mode():
        data = vqcodec.compress(image, tiny_model, 3, refine_steps=2)
    assert data == vqcodec.compress(image, tiny_model, 3, refine_steps=2)
    assert data != vqcodec.compress(image, tiny_model, 3, refine_steps=0)


def test_the_schedules() -> None:
    assert set(SCHEDULES) == set(DISTORTIONS)
    assert MSE_STEPS[0] == (1, 0)
    counts = [default_steps(stages) for stages in range(1, 40)]
    assert counts == sorted(counts)
    for fewest, steps in MSE_STEPS[1:]:
        assert default_steps(fewest) == steps and default_steps(fewest - 1) < steps
    assert steps_for(None, 30) == default_steps(30) and steps_for(0, 30) == 0 and steps_for(5, 1) == 5
    text = describe_default()
    assert text.startswith(f"none up to {MSE_STEPS[1][0] - 1} stages")
    assert all(f"{steps} steps from {fewest}" in text for fewest, steps in MSE_STEPS[1:])
    (_, low), (default, none), (first, steps) = SCHEDULES["ms-ssim"].steps
    assert none == 0 < steps == low and default + 1 == first < MSE_STEPS[1][0]
    assert [default_steps(k, "ms-ssim") for k in range(1, 30)] == [low] * (default - 1) + [0] + [steps] * (30 - first)
    assert describe_default("ms-ssim") == (f"{low} steps up to {default - 1} stages, none at {default}, "
                                           f"{steps} steps from {first}")
    assert steps_for(None, first, "ms-ssim") == steps and steps_for(0, first, "ms-ssim") == 0
    with pytest.raises(ArgumentError, match="no latent refinement for distortion 'lpips'"):
        schedule("lpips")


def test_a_model_says_which_distortion_its_decoder_minimises() -> None:
    """`ModelConfig.distortion`: "mse" is left out of the JSON (files written before it keep their fingerprints),
    another value round-trips, and an unknown one is refused."""
    import json

    mse = ModelConfig(num_stages=2)
    assert "distortion" not in json.loads(mse.to_json()) and ModelConfig.from_json(mse.to_json()).distortion == "mse"
    perceptual = ModelConfig(num_stages=2, distortion="ms-ssim")
    assert ModelConfig.from_json(perceptual.to_json()) == perceptual
    with pytest.raises(ValueError, match="distortion must be one of mse, ms-ssim"):
        ModelConfig(num_stages=2, distortion="ssim")
    assert vqcodec.load_model("default").config.distortion == "mse"
    assert vqcodec.load_model("perceptual").config.distortion == "ms-ssim"


@pytest.mark.parametrize(("side", "window"), [(200, 11), (161, 11), (160, 9), (100, 7), (40, 3), (32, None)])
def test_the_ms_ssim_loss_fits_its_window_to_the_tile(side: int, window: int | None) -> None:
    """Refinement runs tile by tile, and edge tiles or small images are narrower than MS-SSIM's five scales of an
    11-pixel window allow: the largest window that fits is used, and below 33 pixels the log mean squared error."""
    from pytorch_msssim import ms_ssim

    gen = torch.Generator().manual_seed(side)
    target = torch.rand(1, 3, side, side + 7, generator=gen)
    decoded = (target + 0.1 * torch.randn(1, 3, side, side + 7, generator=gen)).requires_grad_(True)
    value = loss("ms-ssim", decoded, target)
    (grad,) = torch.autograd.grad(value, [decoded])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with torch.no_grad():
        expected = (torch.log(F.mse_loss(decoded, target)) if window is None else
                    torch.log(1 - ms_ssim(decoded.clamp(0, 1), target, data_range=1.0, win_size=window)))
    assert torch.allclose(value.detach(), expected)
    assert torch.equal(loss("mse", decoded, target), F.mse_loss(decoded, target))


def test_an_ms_ssim_model_refines_for_ms_ssim(kodak_crop) -> None:
    """`perceptual`'s decoder was tuned for MS-SSIM: refinement lowers that loss of its output on the latents,
    and `compress` refines by default from fewer stages than for an MSE model, its default quality not."""
    perceptual = vqcodec.load_model("perceptual")
    rgb = np.asarray(kodak_crop)
    stages = perceptual.config.num_stages
    latents = codec.embed(perceptual, rgb)
    refined = codec.refine(perceptual, rgb, latents, stages, 10)
    h, w = codec.grid_shape(perceptual, rgb.shape[1], rgb.shape[0])
    x = codec._to_tensor(rgb, perceptual.config.stride)

    def error(z: torch.Tensor) -> float:
        with torch.no_grad():
            y = perceptual.net.decoder_for(stages)(_from_rows(z, torch.Size((1, z.shape[1], h, w)))) + 0.5
        return float(loss("ms-ssim", y, x))

    assert error(refined) < error(latents) - 0.05
    (_, low_steps), (unrefined, _), (first, steps) = SCHEDULES["ms-ssim"].steps
    levels = codec.quality_levels(perceptual)
    default = codec.default_quality(perceptual)
    assert levels[default - 1].stages == unrefined
    assert vqcodec.compress(kodak_crop, perceptual, default) == vqcodec.compress(kodak_crop, perceptual, default,
                                                                                  refine_steps=0)
    for quality, count in ((default - 1, low_steps), (default + 1, steps)):
        assert levels[quality - 1].stages != unrefined
        data = vqcodec.compress(kodak_crop, perceptual, quality)
        assert data == vqcodec.compress(kodak_crop, perceptual, quality, refine_steps=count)
        assert data != vqcodec.compress(kodak_crop, perceptual, quality, refine_steps=0)


@pytest.mark.parametrize("steps", [-1, MAX_STEPS + 1, 1.5, "2", True])
def test_bad_steps_are_refused(tiny_model, steps) -> None:  # noqa: ANN001
    with pytest.raises(ArgumentError, match="refine steps"):
        check_steps(steps)
    with pytest.raises(ArgumentError, match="refine steps"):
        vqcodec.compress(synthetic_image(), model=tiny_model, refine_steps=steps)


def test_the_command_line_passes_the_steps_on(tmp_path, tiny_model_path) -> None:  # noqa: ANN001
    src = tmp_path / "a.png"
    synthetic_image().save(src)
    out = tmp_path / "a.vqz"
    done = run_cli("compress", str(src), "-o", str(out), "--model", str(tiny_model_path), "-q", "3",
                   "--refine-steps", "2")
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == vqcodec.compress(src, str(tiny_model_path), 3, refine_steps=2)
    bad = run_cli("compress", str(src), "-o", str(tmp_path / "b.vqz"), "--refine-steps", "-1")
    assert bad.returncode == 2 and "refine-steps" in bad.stderr and "Traceback" not in bad.stderr
    assert "--refine-steps" in run_cli("compress", "--help").stdout


def test_the_refinement_benchmark_codes_each_quality_plain_and_refined(tmp_path, tiny_model_path) -> None:
    """`python -m vqcodec.bench.refinement`: a quality the steps leave alone is coded once; one they reach gets
    both points, and the table says what changed."""
    from vqcodec.bench.refinement import measure, report
    from tests.conftest import write_photos

    paths = sorted(write_photos(tmp_path / "photos", 2, (48, 40)).iterdir())
    points = measure(str(tiny_model_path), paths, [1, 2, 3], steps=2)
    assert all(plain[:2] != refined[:2] for plain, refined in points.values())
    plain_only = measure(str(tiny_model_path), paths, [1, 2, 3], steps=0)
    assert all(plain == refined for plain, refined in plain_only.values())
    assert [p[0][:2] for p in plain_only.values()] == [p[0][:2] for p in points.values()]
    text = report(points)
    assert text.count("\n| ") == 3 and " dB | " in text and "| PSNR (dB) |" in text
    assert "- | -" in report(plain_only)
    assert "| MS-SSIM (dB) |" in report(points, "MS-SSIM") and "MS-SSIM gain" in report(points, "MS-SSIM")


def test_wider_decoders_refine_in_smaller_tiles(default_model, monkeypatch, kodak_crop) -> None:
    """The backward pass keeps a tile's activations: a decoder wider than `REFINE_WIDTH` at its finest scale
    (`perceptual`, 64 channels) refines in tiles of about as many activations as `default`'s (32) whole tiles."""
    sizes = []
    real_tiles = codec._tiles
    monkeypatch.setattr(codec, "_tiles", lambda h, w, tile: sizes.append(tile) or real_tiles(h, w, tile))
    rgb = np.asarray(kodak_crop)
    perceptual = vqcodec.load_model("perceptual")
    refined = []
    for model in (default_model, perceptual):
        stages = model.config.num_stages
        widths = model.config.top_decoder_widths if model.config.top_decoder_from else model.config.decoder_widths
        latents = codec.embed(model, rgb)
        codec.refine(model, rgb, latents, stages, 1)
        refined.append(sizes[-1])
        assert refined[-1] == min(codec.TILE_CELLS, int(codec.TILE_CELLS * (codec.REFINE_WIDTH / widths[0]) ** 0.5))
    assert refined[0] == codec.TILE_CELLS and refined[1] < codec.TILE_CELLS
