"""The quantizer: nearest neighbour, straight-through gradients, EMA updates, residual stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import pytest

from vqcodec.quantizer import ResidualVQ, VectorQuantizer, code_scores, nearest_code, smallest


def test_nearest_code_picks_l2_nearest_row() -> None:
    codebook = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    x = torch.tensor([[0.1, -0.1], [0.9, 0.2], [0.2, 0.8], [4.0, 6.0], [0.5, 0.0]])
    assert nearest_code(x, codebook).tolist() == [0, 1, 2, 3, 0]


def test_nearest_code_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(1)
    x, codebook = torch.randn(200, 8, generator=g), torch.randn(32, 8, generator=g)
    brute = torch.cdist(x, codebook).argmin(1)
    assert torch.equal(nearest_code(x, codebook), brute)


def test_code_scores_are_squared_distances_less_the_row_norm() -> None:
    g = torch.Generator().manual_seed(2)
    x, codebook = torch.randn(50, 8, generator=g), torch.randn(16, 8, generator=g)
    per_code, per_row = torch.rand(16, generator=g), torch.rand(50, 16, generator=g)
    distances = torch.cdist(x, codebook).pow(2) - x.pow(2).sum(1, keepdim=True)
    assert torch.allclose(code_scores(x, codebook), distances, atol=1e-4)
    assert torch.allclose(code_scores(x, codebook, per_code), distances + per_code, atol=1e-4)
    assert torch.allclose(code_scores(x, codebook, per_row), distances + per_row, atol=1e-4)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_smallest_returns_the_k_smallest_in_order(k: int) -> None:
    g = torch.Generator().manual_seed(k)
    scores = torch.randint(0, 6, (300, 12), generator=g).float()  # many ties
    expected = torch.sort(scores, dim=1, stable=True)
    picked = smallest(scores.clone(), k)
    assert torch.equal(scores.gather(1, picked), expected.values[:, :k])
    if k <= 2:  # the argmin path: ties go to the lowest index, like nearest_code
        assert torch.equal(picked, expected.indices[:, :k])


def test_straight_through_gradient_is_identity() -> None:
    vq = VectorQuantizer(16, 4).eval()
    x = torch.randn(10, 4, requires_grad=True)
    out = vq(x)
    weights = torch.randn(10, 4)
    (out.quantized * weights).sum().backward()
    assert torch.allclose(x.grad, weights)
    assert torch.allclose(out.quantized, vq.codebook[out.indices])


def test_commitment_loss_is_beta_times_mse() -> None:
    vq = VectorQuantizer(16, 4, beta=0.25).eval()
    x = torch.randn(10, 4)
    out = vq(x)
    assert torch.isclose(out.commitment_loss, 0.25 * F.mse_loss(x, vq.codebook[out.indices]))


def test_ema_update_with_laplace_smoothing() -> None:
    decay, eps = 0.9, 1e-5
    vq = VectorQuantizer(3, 2, decay=decay, eps=eps)
    vq.set_codebook(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0]]))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 11.0]])
    vq.train()(x)
    counts = torch.tensor([2.0, 1.0, 0.0])
    size = decay * torch.ones(3) + (1 - decay) * counts
    sums = decay * torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0]])
    sums += (1 - decay) * torch.tensor([[1.0, 1.0], [9.0, 11.0], [0.0, 0.0]])
    n = size.sum()
    expected = sums / ((size + eps) / (n + 3 * eps) * n)[:, None]
    assert torch.allclose(vq.cluster_size, size)
    assert torch.allclose(vq.codebook, expected, atol=1e-6)


def test_eval_mode_leaves_codebook_alone() -> None:
    vq = VectorQuantizer(8, 2).eval()
    before = vq.codebook.clone()
    vq(torch.randn(20, 2))
    assert torch.equal(vq.codebook, before)


def test_dead_codes_are_restarted_from_inputs() -> None:
    vq = VectorQuantizer(4, 2, dead_threshold=0.5)
    vq.cluster_size.copy_(torch.tensor([1.0, 0.0, 1.0, 0.1]))
    x = torch.full((5, 2), 7.0)
    assert vq.restart_dead_codes(x) == 2
    assert torch.allclose(vq.codebook[[1, 3]], torch.full((2, 2), 7.0), atol=0.01)
    assert (vq.cluster_size >= 0.5).all()


def test_residual_stages_refine_and_prefixes_decode() -> None:
    torch.manual_seed(0)
    rvq = ResidualVQ(3, 32, 4).eval()
    x = torch.randn(64, 4)
    for stage in rvq.stages:  # seed each stage from the residuals so that stages really refine
        stage.set_codebook(x[torch.randperm(64)[:32]] * 0.5)
    indices = rvq.encode(x)
    assert indices.shape == (3, 64)
    errors = [F.mse_loss(rvq.decode(indices[: s + 1]), x).item() for s in range(3)]
    assert torch.equal(rvq.encode(x, 2), indices[:2])
    out = rvq(x)
    assert torch.equal(out.indices, indices)
    assert torch.allclose(out.quantized, rvq.decode(indices), atol=1e-6)
    assert errors[2] <= errors[1] <= errors[0]


def test_rate_penalty_moves_choices_to_cheaper_codes() -> None:
    codebook = torch.tensor([[0.0], [1.0]])
    x = torch.tensor([[0.6], [0.9]])
    assert nearest_code(x, codebook).tolist() == [1, 1]
    assert nearest_code(x, codebook, torch.tensor([0.0, 0.3])).tolist() == [0, 1]
