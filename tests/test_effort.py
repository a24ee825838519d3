"""Encoder effort: beam search over residual stages, the levels of `compress(effort=...)`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vqcodec
from vqcodec import codec, pricing
from vqcodec.effort import DEFAULT_EFFORTS, EFFORT_BEAMS, check_effort, default_effort, describe_default, effort_for
from vqcodec.errors import ArgumentError
from vqcodec.model import DISTORTIONS
from vqcodec.quantizer import ResidualVQ

from tests.conftest import synthetic_image


def trained_like_rvq(seed: int = 0) -> ResidualVQ:
    """A residual VQ whose stages shrink like a trained one's."""
    torch.manual_seed(seed)
    rvq = ResidualVQ(4, 32, 8)
    for s, stage in enumerate(rvq.stages):
        stage.codebook.copy_(torch.randn(32, 8) * 0.6 ** s)
    return rvq


def test_beam_of_one_is_greedy() -> None:
    rvq = trained_like_rvq()
    x = torch.randn(500, 8)
    assert torch.equal(rvq.beam_encode(x, 4, 1), rvq.encode(x, 4))


def test_wider_beams_lower_the_error() -> None:
    rvq = trained_like_rvq()
    x = torch.randn(2000, 8)
    errors = [float((x - rvq.decode(rvq.beam_encode(x, 4, b))).pow(2).sum()) for b in (1, 4, 16)]
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize(("codes", "beam"), [(2, 2), (6, 6)])
def test_a_beam_as_wide_as_the_codebook_finds_the_best_pair(codes: int, beam: int) -> None:
    torch.manual_seed(3)
    rvq = ResidualVQ(2, codes, 4)
    for s, stage in enumerate(rvq.stages):
        stage.codebook.copy_(torch.randn(codes, 4) * 0.5 ** s)
    x = torch.randn(400, 4)
    pairs = torch.cartesian_prod(torch.arange(codes), torch.arange(codes))  # (codes^2, 2)
    sums = rvq.stages[0].codebook[pairs[:, 0]] + rvq.stages[1].codebook[pairs[:, 1]]
    best = pairs[torch.cdist(x, sums).argmin(1)].t()
    assert torch.equal(rvq.beam_encode(x, 2, beam), best)


def test_beam_search_with_penalties_spends_fewer_penalised_codes() -> None:
    rvq = trained_like_rvq()
    x = torch.randn(2000, 8)
    prices = torch.zeros(32)
    prices[16:] = 1.0
    plain = rvq.beam_encode(x, 4, 4)
    priced = rvq.beam_encode(x, 4, 4, lambda stage, previous: prices)
    assert (priced >= 16).sum() < (plain >= 16).sum()


def test_beam_of_one_equals_greedy_for_a_single_stage() -> None:
    rvq = trained_like_rvq()
    x = torch.randn(300, 8)
    assert torch.equal(rvq.beam_encode(x, 1, 8), rvq.encode(x, 1))


@pytest.mark.parametrize("effort", [-1, 5, 1.5, "2", True])
def test_bad_effort_is_refused(tiny_model, effort) -> None:
    with pytest.raises(ArgumentError):
        vqcodec.compress(synthetic_image(), model=tiny_model, effort=effort)


def search_objective(model, latents: torch.Tensor, indices: np.ndarray) -> float:  # noqa: ANN001
    """What the encoder's search minimises at qualities 1..S: squared latent error plus each stage's rate
    weight times its codes' bits in context."""
    stages = indices.shape[0]
    flat = torch.from_numpy(indices.reshape(stages, -1).astype(np.int64))
    total = float((latents - model.net.quantizer.decode(flat)).pow(2).sum())
    price = pricing.penalty(model.prior, model.rate_weights[:stages])
    for s in range(1, stages):
        p = price(s, flat[s - 1]) if price is not None else None
        if p is not None:
            total += float((p[flat[s]] if p.dim() == 1 else p.gather(1, flat[s][:, None])).sum())
    return total


def test_every_effort_decodes_and_a_wider_search_finds_a_better_objective(default_model, kodak_crop) -> None:
    """Beam search lowers what it minimises (latent error + priced bits), not the pixel error as such:
    a wider beam may trade a little pixel error for fewer bits."""
    rgb = np.asarray(kodak_crop)
    for effort in range(len(EFFORT_BEAMS)):
        data = vqcodec.compress(kodak_crop, model=default_model, quality=4, effort=effort)
        assert vqcodec.decompress(data, model=default_model).size == kodak_crop.size
    latents = codec.embed(default_model, rgb)
    grid = codec.grid_shape(default_model, *kodak_crop.size)
    objectives = [search_objective(default_model, latents, codec.quantize(default_model, latents, grid, 4, effort=e))
                  for e in (0, len(EFFORT_BEAMS) - 1)]
    assert objectives[1] < objectives[0]
    unstated = codec.quantize(default_model, latents, grid, 4)
    assert np.array_equal(codec.quantize(default_model, latents, grid, 4, effort=default_effort(4)), unstated)


def test_the_default_effort_rises_with_the_stages_a_quality_codes() -> None:
    mse = DEFAULT_EFFORTS["mse"]
    levels = [default_effort(stages) for stages in range(1, 40)]
    assert levels == sorted(levels)
    assert default_effort(1) == mse[0][1]
    for fewest, level in mse[1:]:
        assert default_effort(fewest) == level and default_effort(fewest - 1) < level
        assert f"{level} (a beam of {EFFORT_BEAMS[level]}) from {fewest}" in describe_default()
    assert check_effort(None) is None


def test_an_ms_ssim_model_searches_widest_but_at_its_default_quality() -> None:
    """`perceptual` (5 stages by default) searches at level 3 there, and at level 4 elsewhere."""
    assert set(DEFAULT_EFFORTS) == set(DISTORTIONS)
    levels = [default_effort(stages, "ms-ssim") for stages in range(1, 30)]
    assert levels[4] == 3 > default_effort(5)
    assert set(levels[:4] + levels[5:]) == {len(EFFORT_BEAMS) - 1}
    assert describe_default("ms-ssim") == ("level 4 (a beam of 16) up to 4 stages, 3 (a beam of 8) at 5, "
                                           "4 (a beam of 16) from 6")
    assert effort_for(None, 4, "ms-ssim") == 4 and effort_for(0, 4, "ms-ssim") == 0
    with pytest.raises(ArgumentError, match="no default effort for distortion 'lpips'"):
        default_effort(3, "lpips")


def test_compress_searches_a_deep_quality_at_its_default_effort(default_model, kodak_crop) -> None:
    """Unstated, a quality's effort is the default for its stage count; decoding is the same at any effort."""
    quality = next(q for q, level in enumerate(codec.quality_levels(default_model), start=1)
                   if default_effort(level.stages) > default_effort(1) and level.shrink == 1)
    stages = codec.quality_levels(default_model)[quality - 1].stages
    unstated = vqcodec.compress(kodak_crop, model=default_model, quality=quality)
    assert unstated == vqcodec.compress(kodak_crop, model=default_model, quality=quality, effort=default_effort(stages))
    assert unstated != vqcodec.compress(kodak_crop, model=default_model, quality=quality, effort=default_effort(1))
    assert vqcodec.decompress(unstated, model=default_model).size == kodak_crop.size
