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
from vqcodec.latent_refinement import (DEFAULT_REFINEMENT, MAX_STEPS, check_steps, default_steps, describe_default,
                                       refine, steps_for)
from vqcodec.model import _from_rows


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
    first = DEFAULT_REFINEMENT[1][0]
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


def test_refinement_works_inside_inference_mode(tiny_model) -> None:
    """Callers may compress under `torch.inference_mode()`; the steps still get their gradients."""
    image = synthetic_image()
    with torch.inference_mode():
        data = vqcodec.compress(image, tiny_model, 3, refine_steps=2)
    assert data == vqcodec.compress(image, tiny_model, 3, refine_steps=2)
    assert data != vqcodec.compress(image, tiny_model, 3, refine_steps=0)


def test_the_schedule() -> None:
    assert DEFAULT_REFINEMENT[0] == (1, 0)
    counts = [default_steps(stages) for stages in range(1, 40)]
    assert counts == sorted(counts)
    for fewest, steps in DEFAULT_REFINEMENT[1:]:
        assert default_steps(fewest) == steps and default_steps(fewest - 1) < steps
    assert steps_for(None, 30) == default_steps(30) and steps_for(0, 30) == 0 and steps_for(5, 1) == 5
    text = describe_default()
    assert text.startswith(f"none below {DEFAULT_REFINEMENT[1][0]} stages")
    assert all(f"{steps} steps from {fewest} stages" in text for fewest, steps in DEFAULT_REFINEMENT[1:])


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
    assert text.count("\n| ") == 3 and " dB | " in text
    assert "- | -" in report(plain_only)
