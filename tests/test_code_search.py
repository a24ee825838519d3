"""The bfloat16 code search finds codes as good as the float32 beam search's, under the same prices."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vqcodec import code_search, codec, pricing
from vqcodec.entropy import FrequencyPrior
from vqcodec.quantizer import ResidualVQ
from vqcodec.zoo import CodecModel


def objective(quantizer: ResidualVQ, prior: pricing.PricedPrior, weights: np.ndarray, x: torch.Tensor,
              indices: torch.Tensor) -> torch.Tensor:
    """Per row: squared error left after the codes + the weighted bits of each code after the one before it,
    what both searches minimise."""
    error = (x - quantizer.decode(indices)).pow(2).sum(1)
    price = pricing.penalty(prior, weights)
    for s in range(1, indices.shape[0]):
        p = price(s, indices[s - 1]) if price is not None else None
        if p is not None:
            error = error + (p[torch.arange(x.shape[0]), indices[s]] if p.dim() == 2 else p[indices[s]])
    return error


def compare(quantizer: ResidualVQ, prior: pricing.PricedPrior, weights: np.ndarray, x: torch.Tensor,
            beam: int) -> tuple[float, float]:
    """(share of codes both searches pick alike, mean objective of the bfloat16 search's codes over the float32
    search's)."""
    tables = code_search.stage_tables(quantizer, prior, weights, code_search.search_columns(quantizer))
    fast = code_search.search(tables, x, beam)
    exact = quantizer.encode(x, len(weights), pricing.penalty(prior, weights), beam)
    assert fast.shape == exact.shape and fast.dtype == torch.long
    ratio = objective(quantizer, prior, weights, x, fast).mean() / objective(quantizer, prior, weights, x, exact).mean()
    return float((fast == exact).float().mean()), float(ratio)


@pytest.mark.parametrize("quality,beam", [(3, 1), (5, 2), (8, 4)])
def test_search_matches_the_float32_search_on_the_shipped_model(default_model: CodecModel, kodak_crop,
                                                                quality: int, beam: int) -> None:  # noqa: ANN001
    rgb = np.asarray(kodak_crop.convert("RGB"))
    latents = codec.embed(dataclasses.replace(default_model, arithmetic="float32"), rgb)
    stages, scale, _ = codec.quality_levels(default_model)[quality - 1]
    weights = default_model.rate_weights[:stages] * scale
    same, ratio = compare(default_model.net.quantizer, default_model.prior, weights, latents, beam)
    assert same > 0.8
    assert ratio < 1.002


def test_search_with_a_prior_without_context_and_unpriced_stages() -> None:
    torch.manual_seed(3)
    quantizer = ResidualVQ(4, 64, 8)
    for stage in quantizer.stages:
        stage.codebook.normal_(0.0, 0.3)
    prior = FrequencyPrior(np.random.default_rng(0).integers(1, 50, size=(4, 64)))
    x = torch.randn(500, 8) * 0.5
    for weights in (np.zeros(4), np.array([0.0, 0.05, 0.0, 0.02])):
        for beam in (1, 3):
            same, ratio = compare(quantizer, prior, weights, x, beam)
            assert same > 0.8 and ratio < 1.002


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1e4, allow_nan=False, width=32), min_size=2, max_size=40),
       st.integers(min_value=1, max_value=2))
def test_smallest_orders_non_negative_bfloat16_by_its_bits(values: list[float], k: int) -> None:
    scores = torch.tensor(values).to(torch.bfloat16)
    picks = code_search._smallest(scores.view(torch.int16).numpy()[None].copy(), k)[0]
    order = np.argsort(scores.float().numpy(), kind="stable")  # ties to the lowest index, as argmin
    assert list(picks) == list(order[:k])
