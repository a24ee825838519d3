"""The decoder's inference form computes what the trained decoder computes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from vqcodec import inference
from vqcodec.errors import ArgumentError
from vqcodec.inference import (BFloat16Path, SubPixelConvTranspose, WinogradConv2d, fast_decoder, fast_encoder,
                               native_bfloat16)
from vqcodec.model import Decoder, Encoder, ModelConfig, ResBlock


@pytest.mark.parametrize("cin,cout,stride,padding,bias", [(64, 3, 8, 4, True), (16, 3, 2, 1, True), (8, 5, 2, 0, False),
                                                          (4, 2, 4, 2, True)])
def test_sub_pixel_form_equals_the_transposed_convolution(cin, cout, stride, padding, bias) -> None:
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(cin, cout, 2 * stride, stride=stride, padding=padding, bias=bias)
    x = torch.randn(2, cin, 7, 5)
    with torch.no_grad():
        expected = layer(x)
        got = SubPixelConvTranspose(layer)(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)


def test_other_transposed_convolutions_are_refused() -> None:
    with pytest.raises(ValueError):
        SubPixelConvTranspose(nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1))


def randomised(module: nn.Module) -> nn.Module:
    """`module` in eval mode with random weights and BatchNorm statistics, so that folding has work to do."""
    torch.manual_seed(0)
    for p in module.parameters():
        nn.init.normal_(p, std=0.2)
    for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.normal_(0.0, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
    return module.eval()


def no_batchnorm(module: nn.Module) -> bool:
    return not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())


def check_inference_form(trained: nn.Module, make_fast, x: torch.Tensor) -> nn.Module:  # noqa: ANN001
    """`make_fast(trained)`, after checking that it computes what `trained` does, without BatchNorm, and
    leaves `trained` as it was."""
    keys = sorted(trained.state_dict())
    fast = make_fast(trained)
    with torch.no_grad():
        assert torch.allclose(fast(x), trained(x), atol=1e-5)
    assert sorted(trained.state_dict()) == keys
    assert no_batchnorm(fast) and not no_batchnorm(trained)
    return fast


def test_fast_encoder_matches_the_encoder_from_8_bit_pixels_and_leaves_it_untouched() -> None:
    encoder = randomised(Encoder(ModelConfig(channels=(8, 8), res_blocks=1, latent_dim=4)))
    pixels = torch.randint(0, 256, (1, 3, 24, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    keys = sorted(encoder.state_dict())
    fast = fast_encoder(encoder, "float32")
    with torch.no_grad():
        assert torch.allclose(fast(pixels), encoder(pixels.float() / 255 - 0.5), atol=1e-5)
        # the layout numpy's (H, W, 3) images arrive in
        assert torch.allclose(fast(pixels.contiguous(memory_format=torch.channels_last)), fast(pixels))
    assert sorted(encoder.state_dict()) == keys and not no_batchnorm(encoder) and no_batchnorm(fast)
    assert any(isinstance(m, ResBlock) for m in fast.modules())
    if torch.backends.nnpack.is_available():
        assert sum(isinstance(m, WinogradConv2d) for m in fast.modules()) == 2


@pytest.mark.skipif(not torch.backends.nnpack.is_available(), reason="torch without NNPACK")
def test_winograd_convolution_matches_the_direct_one() -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(16, 24, 3, padding=1, bias=False)
    shift = torch.randn(24)
    x = torch.randn(1, 16, 13, 21).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = conv(x) + shift[:, None, None]
        got = WinogradConv2d(conv, shift)(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-4)


def test_fast_decoder_matches_the_decoder_and_leaves_it_untouched() -> None:
    decoder = randomised(Decoder(ModelConfig(channels=(8, 8), res_blocks=1, latent_dim=4)))
    fast = check_inference_form(decoder, lambda d: fast_decoder(d, "float32"), torch.randn(1, 4, 6, 9))
    assert isinstance(fast.linear, SubPixelConvTranspose) and isinstance(fast.net[-1], SubPixelConvTranspose)
    assert isinstance(decoder.linear, nn.ConvTranspose2d)


def test_fast_decoder_with_a_full_resolution_stage_matches_the_decoder() -> None:
    """The stage and the path before it each get their inference form; the last layer between them its own."""
    decoder = randomised(Decoder(ModelConfig(channels=(8, 8), res_blocks=1, latent_dim=4, full_res_channels=5)))
    z = torch.randn(1, 4, 6, 9)
    fast = check_inference_form(decoder, lambda d: fast_decoder(d, "float32"), z)
    assert isinstance(fast.net[-1], SubPixelConvTranspose) and no_batchnorm(fast.full_res)
    bfloat16 = fast_decoder(decoder, "bfloat16")
    assert isinstance(bfloat16.net[0], BFloat16Path) and isinstance(bfloat16.full_res, BFloat16Path)
    with torch.no_grad():
        close_in_bfloat16(bfloat16(z), decoder(z))


def close_in_bfloat16(got: torch.Tensor, expected: torch.Tensor) -> None:
    """`got` is float32, within bfloat16's rounding of `expected` and not equal to it (it was computed in bfloat16)."""
    assert got.dtype == torch.float32 and got.shape == expected.shape
    scale = expected.abs().max().item()
    assert 0 < (got - expected).abs().max().item() < 0.03 * scale


def test_bfloat16_decoder_keeps_the_linear_path_in_float32_and_stays_close() -> None:
    """The convolutional path runs in bfloat16 (shifts as biases, no BatchNorm), the linear one in float32."""
    decoder = randomised(Decoder(ModelConfig(channels=(8, 16), res_blocks=1, latent_dim=4)))
    fast = fast_decoder(decoder, "bfloat16")
    assert isinstance(fast.net, BFloat16Path) and no_batchnorm(fast)
    assert fast.linear.weight.dtype == torch.float32
    assert all(p.dtype == torch.bfloat16 for p in fast.net.parameters())
    z = torch.randn(1, 4, 6, 9)
    with torch.no_grad():
        close_in_bfloat16(fast(z), decoder(z))


def test_bfloat16_encoder_takes_8_bit_pixels_exactly_and_stays_close() -> None:
    """k - 127.5 is exact in bfloat16 for every 8-bit k; the encoder's output is the trained one's to bfloat16
    rounding."""
    ks = torch.arange(256, dtype=torch.float32)
    assert torch.equal((ks - inference.PIXEL_CENTRE).to(torch.bfloat16).float(), ks - inference.PIXEL_CENTRE)
    encoder = randomised(Encoder(ModelConfig(channels=(8, 16), res_blocks=1, latent_dim=4)))
    fast = fast_encoder(encoder, "bfloat16")
    assert isinstance(fast.encoder.net, BFloat16Path) and no_batchnorm(fast)
    assert all(p.dtype == torch.bfloat16 for p in fast.parameters())
    pixels = torch.randint(0, 256, (1, 3, 24, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        close_in_bfloat16(fast(pixels), encoder(pixels.float() / 255 - 0.5))


@pytest.mark.skipif(not inference.fusable(), reason="torch without oneDNN's fused convolutions")
def test_fused_activations_compute_the_unfused_layers() -> None:
    """Each convolution and its ReLU, and each residual block's sum and ReLU, become one oneDNN call computing
    what the layers do (to bfloat16 rounding: the sum is taken before the rounding)."""
    torch.manual_seed(2)
    block = randomised(ResBlock(16))
    encoder = randomised(Encoder(ModelConfig(channels=(8, 16), res_blocks=1, latent_dim=4)))
    path = inference._fast_path(copy.deepcopy(encoder.net), "bfloat16")  # it changes what it is given
    assert sum(isinstance(m, inference.ConvReLU) for m in path.modules()) == 3  # 2 strided, 1 in the block
    assert sum(isinstance(m, inference.FusedResBlock) for m in path.modules()) == 1
    assert not any(isinstance(m, (nn.ReLU, ResBlock)) for m in path.modules())
    fused = inference._fast_path(nn.Sequential(copy.deepcopy(block)), "bfloat16")
    x = torch.randn(1, 16, 12, 10)
    with torch.no_grad():
        close_in_bfloat16(fused(x), block(x))
    up = nn.Sequential(nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1), nn.ReLU()).eval()
    fused_up = inference._fast_path(copy.deepcopy(up), "bfloat16")
    assert isinstance(fused_up.layers[0], inference.ConvReLU)
    with torch.no_grad():
        close_in_bfloat16(fused_up(x), up(x))


def test_precision_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for asked, expected in (("float32", "float32"), ("bfloat16", "bfloat16"), ("BFloat16 ", "bfloat16"),
                            ("auto", "bfloat16" if native_bfloat16() else "float32"),
                            ("", "bfloat16" if native_bfloat16() else "float32")):
        monkeypatch.setenv("VQCODEC_PRECISION", asked)
        inference.precision.cache_clear()
        assert inference.precision() == expected
    monkeypatch.setenv("VQCODEC_PRECISION", "float16")
    inference.precision.cache_clear()
    with pytest.raises(ArgumentError, match="VQCODEC_PRECISION"):
        inference.precision()
    monkeypatch.delenv("VQCODEC_PRECISION")
    inference.precision.cache_clear()
