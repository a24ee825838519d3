"""Inference forms of a trained network: the same functions, computed faster on a CPU.

The decoder's two image-producing layers are transposed convolutions to 3 channels whose
kernel is twice their stride (the 16x16 lapped synthesis at stride 8, and the last 4x4 layer at
stride 2). A CPU runs those poorly: with 3 output channels there is little to vectorise over.
Each equals a 2x2 convolution to 3 x stride^2 channels followed by a pixel shuffle, which does
the same multiply-adds as one dense convolution (about 3.5 and 1.4 times faster here). The
results agree with the transposed convolutions to float rounding.

Every BatchNorm (in eval mode, a per-channel affine map) is folded into the convolution before it:
its scale multiplies that layer's output-channel weights, and its shift is an in-place add
(`ChannelShift`), which costs less than BatchNorm's own pass (slow in channels-last layout) and than a
bias inside the transposed convolutions. Outputs agree with the trained modules to float rounding
(about 1e-6).

The residual blocks' 3x3 convolutions run as NNPACK's Winograd convolutions where torch has NNPACK
(`WinogradConv2d`): torch only uses it itself for batches of 16 or more. A 128-channel 3x3 convolution
at 96x64 took 12 instead of 28 ms; the encoder 190 instead of 230 ms and the synthesis 220 instead of
258 ms on a 768x512 image (medians of 15 interleaved runs, one thread). Their outputs differ from the
direct convolution by about 1e-5 of their magnitude; the networks' outputs by about 1e-6.

On a CPU that computes bfloat16 natively (AMX, or AVX-512 BF16: `native_bfloat16`), each network's
convolutional path runs in bfloat16, channels-last (`BFloat16Path`), each convolution and the ReLU after it
as one oneDNN call, and each residual block's second convolution with its sum and ReLU (`ConvReLU`,
`FusedResBlock`): the activation is applied to the float32 accumulator, and the separate passes over the
activations are gone. oneDNN's bfloat16 convolutions accumulate in float32 and round only their outputs. The
decoder's linear path, which carries most of the image, stays float32, so that what reaches the pixels from
the bfloat16 path is the small correction the nonlinear layers add to the linear transform. The encoder
(`PixelEncoder`) takes the 8-bit pixels themselves as k - 127.5, which bfloat16 holds exactly, and the first
layers' weights divided by 255, so that its linear analysis runs in bfloat16 too (its input is exact; only
its weights and output are rounded). On an AMX core (Xeon, one thread, 768x512): encoder 94 -> 19 ms,
decoder 136 -> 28 ms (vqcodec 0.9.0, before the fused activations). Decoded PSNR moved by at most 0.0004 dB
on a Kodak image at qualities 5-28, the encoder's latents by about 0.1% of their spread. Elsewhere the
float32 forms above are used; `VQCODEC_PRECISION=float32` asks for them everywhere (the same pixels on every
machine).

The trained modules stay untouched (training, prior fitting and model files use them); a
`CodecModel` builds its `analysis` and `synthesis` from them once, at first use.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from vqcodec.model import Decoder, Encoder, ResBlock

NARROW_CHANNELS = 3
"""Transposed convolutions with at most this many output channels are rewritten (the wide ones run
well as they are: measured slower as sub-pixel convolutions)."""


class SubPixelConvTranspose(nn.Module):
    """`ConvTranspose2d(kernel=2s, stride=s, padding=p)` as a 2x2 convolution to s*s phases, a pixel
    shuffle and a crop of p on every side.

    With y = Y*s + u: out[o, Y*s + u, X*s + v] = sum over c, a, b in {0, 1} of
    in[c, Y - a, X - b] * W[c, o, a*s + u, b*s + v], a 2x2 convolution over the input padded by one
    cell, whose output channel (o, u, v) is shuffled to pixel (u, v) of block (Y, X).
    """

    def __init__(self, layer: nn.ConvTranspose2d) -> None:
        super().__init__()
        s, p = layer.stride[0], layer.padding[0]
        if layer.kernel_size != (2 * s, 2 * s) or layer.stride != (s, s) or layer.padding != (p, p) \
                or layer.output_padding != (0, 0) or layer.groups != 1 or layer.dilation != (1, 1):
            raise ValueError("only square transposed convolutions with kernel = 2 x stride are rewritten")
        cin, cout = layer.in_channels, layer.out_channels
        w = layer.weight.detach().reshape(cin, cout, 2, s, 2, s).flip(2).flip(4)  # c, o, 1-a, u, 1-b, v
        self.register_buffer("weight", w.permute(1, 3, 5, 0, 2, 4).reshape(cout * s * s, cin, 2, 2).contiguous())
        bias = None if layer.bias is None else layer.bias.detach().repeat_interleave(s * s)
        self.register_buffer("bias", bias)
        self.stride, self.crop = s, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pixel_shuffle(F.conv2d(F.pad(x, (1, 1, 1, 1)), self.weight, self.bias), self.stride)
        c = self.crop
        return y[:, :, c : y.shape[2] - c, c : y.shape[3] - c] if c else y


def _rewrite(layer: nn.Module) -> nn.Module:
    narrow = isinstance(layer, nn.ConvTranspose2d) and layer.out_channels <= NARROW_CHANNELS
    return SubPixelConvTranspose(layer) if narrow else layer


class ChannelShift(nn.Module):
    """Adds a constant per channel, in place: what is left of a BatchNorm once its scale is in the weights."""

    def __init__(self, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.add_(self.shift)


def _fuse_pairs(layers: nn.Sequential, fuse: Callable[[nn.Module, nn.Module], list[nn.Module] | None]) -> nn.Sequential:
    """`layers` (a copy: its modules are changed) with each neighbouring pair that `fuse(previous, layer)`
    merges replaced by what it returns, residual blocks' bodies included."""
    out: list[nn.Module] = []
    for layer in layers:
        fused = fuse(out[-1], layer) if out else None
        if fused is not None:
            out[-1:] = fused
            continue
        if isinstance(layer, ResBlock):
            layer.body = _fuse_pairs(layer.body, fuse)
        out.append(layer)
    return nn.Sequential(*out)


@torch.no_grad()
def _merge(conv: nn.Module, bn: nn.Module) -> list[nn.Module] | None:
    """A (transposed) convolution followed by a BatchNorm (eval mode) as the convolution with output
    channel o's weights scaled by gamma_o / sqrt(var_o + eps), then a shift by (bias_o - mean_o) * that
    + beta_o; None for any other pair.

    The shift stays a separate in-place add rather than the convolution's bias: on a CPU core the
    transposed convolutions ran their bias 20 ms slower than the add (96 to 64 channels at 384x256)."""
    if not (isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d)):
        return None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shape = (-1, 1, 1, 1) if isinstance(conv, nn.Conv2d) else (1, -1, 1, 1)  # where the output channels are
    conv.weight.mul_(scale.reshape(shape))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.bias = None
    return [conv, ChannelShift((bias - bn.running_mean) * scale + bn.bias)]


class WinogradConv2d(nn.Module):
    """A 3x3, stride-1 convolution plus a per-channel shift (its bias), computed by NNPACK's Winograd
    algorithm on a CPU (the direct convolution elsewhere). NNPACK's thread pool takes torch's thread
    count at its first use."""

    def __init__(self, conv: nn.Conv2d, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", conv.weight.detach().clone())
        self.register_buffer("bias", shift.detach().reshape(-1).clone())
        self.padding = list(conv.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return F.conv2d(x, self.weight, self.bias, padding=self.padding)
        return torch._nnpack_spatial_convolution(x.contiguous(), self.weight, self.bias, self.padding)


def _winograd(conv: nn.Module, shift: nn.Module) -> list[nn.Module] | None:
    """A 3x3, stride-1 convolution and the shift after it as one `WinogradConv2d`; None for any other pair."""
    able = (isinstance(conv, nn.Conv2d) and isinstance(shift, ChannelShift) and conv.kernel_size == (3, 3)
            and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1 and conv.bias is None
            and isinstance(conv.padding, tuple))
    return [WinogradConv2d(conv, shift.shift)] if able else None


@torch.no_grad()
def _into_bias(conv: nn.Module, shift: nn.Module) -> list[nn.Module] | None:
    """A (transposed) convolution without bias and the shift after it as the convolution with the shift as
    its bias; None for any other pair. (For the bfloat16 forms: oneDNN adds a bias there at no cost, where
    the separate add is a pass over the activations.)"""
    if not (isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(shift, ChannelShift)
            and conv.bias is None):
        return None
    conv.bias = nn.Parameter(shift.shift.reshape(-1).clone(), requires_grad=False)
    return [conv]


def fold_batchnorm(layers: nn.Sequential) -> nn.Sequential:
    """`layers` (already a copy: its modules are changed) with each BatchNorm folded into the
    convolution before it, residual blocks' bodies included."""
    return _fuse_pairs(layers, _merge)


def use_winograd(layers: nn.Sequential) -> nn.Sequential:
    """`layers` (BatchNorms already folded) with each 3x3 convolution and the shift after it as a
    `WinogradConv2d`, inside residual blocks too; unchanged where torch has no NNPACK."""
    return _fuse_pairs(layers, _winograd) if torch.backends.nnpack.is_available() else layers


PRECISIONS = ("auto", "float32", "bfloat16")
"""Values of the `VQCODEC_PRECISION` environment variable: the inference forms' arithmetic (`precision`)."""


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AMX tiles or AVX-512 BF16); elsewhere
    oneDNN emulates them, many times slower than float32."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


@cache
def precision() -> str:
    """The arithmetic of the inference forms' convolutional paths: "bfloat16" on a CPU that has it natively,
    else "float32"; the `VQCODEC_PRECISION` environment variable ("float32", "bfloat16" or "auto") decides
    instead when set. Read once per process."""
    asked = os.environ.get("VQCODEC_PRECISION", "auto").strip().lower() or "auto"
    if asked not in PRECISIONS:
        from vqcodec.errors import ArgumentError

        raise ArgumentError(f"VQCODEC_PRECISION must be one of {', '.join(PRECISIONS)}, got {asked!r}")
    if asked == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return asked


def fusable() -> bool:
    """Whether torch has oneDNN's convolutions with a fused activation (`torch.ops.mkldnn`, used by torch's
    own compiler on CPUs)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def _geometry(conv: nn.Conv2d | nn.ConvTranspose2d) -> dict[str, list[int] | int]:
    return {"padding": list(conv.padding), "stride": list(conv.stride), "dilation": list(conv.dilation),
            "groups": conv.groups}


class ConvReLU(nn.Module):
    """A (transposed) convolution with a bias and the ReLU after it, as one oneDNN call: the ReLU is applied
    to the accumulator, which saves a pass over the output (0.6-0.8 ms of 2-5 ms for the encoder's strided
    layers at 768x512, one thread, bfloat16)."""

    def __init__(self, conv: nn.Conv2d | nn.ConvTranspose2d) -> None:
        super().__init__()
        self.register_buffer("weight", conv.weight.detach().clone())
        self.register_buffer("bias", conv.bias.detach().clone())
        self.geometry = _geometry(conv)
        self.output_padding = list(conv.output_padding) if isinstance(conv, nn.ConvTranspose2d) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        if self.output_padding is None:
            return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, g["padding"], g["stride"],
                                                           g["dilation"], g["groups"], "relu", [], "")
        return torch.ops.mkldnn._convolution_transpose_pointwise(
            x, self.weight, self.bias, g["padding"], self.output_padding, g["stride"], g["dilation"], g["groups"],
            "relu", [], "")


class FusedResBlock(nn.Module):
    """A residual block (conv-ReLU-conv, plus the input, then ReLU) whose second convolution adds the input
    and applies the ReLU in the same oneDNN call."""

    def __init__(self, first: ConvReLU, second: nn.Conv2d) -> None:
        super().__init__()
        self.first = first
        self.register_buffer("weight", second.weight.detach().clone())
        self.register_buffer("bias", second.bias.detach().clone())
        self.geometry = _geometry(second)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        return torch.ops.mkldnn._convolution_pointwise.binary(
            self.first(x), x, self.weight, self.bias, g["padding"], g["stride"], g["dilation"], g["groups"], "add",
            1.0, "relu", [], "")


def _plain(conv: nn.Module) -> bool:
    """Whether `conv` is a (transposed) convolution with a bias and numeric padding, as oneDNN's fused calls take."""
    return (isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and conv.bias is not None
            and isinstance(conv.padding, tuple) and getattr(conv, "padding_mode", "zeros") == "zeros")


def _conv_relu(conv: nn.Module, relu: nn.Module) -> list[nn.Module] | None:
    """A convolution with a bias and the ReLU after it as one `ConvReLU`; None for any other pair."""
    return [ConvReLU(conv)] if _plain(conv) and isinstance(relu, nn.ReLU) else None


def _fused_block(layer: nn.Module) -> nn.Module:
    """A residual block whose body is [`ConvReLU`, convolution with a bias] as a `FusedResBlock`; any other
    layer as it is."""
    body = list(layer.body) if isinstance(layer, ResBlock) else []
    if len(body) == 2 and isinstance(body[0], ConvReLU) and _plain(body[1]) and isinstance(body[1], nn.Conv2d):
        return FusedResBlock(body[0], body[1])
    return layer


class BFloat16Path(nn.Module):
    """`layers` computed in bfloat16, channels-last: the input is cast on the way in, the output back to
    float32 on the way out."""

    def __init__(self, layers: nn.Sequential) -> None:
        super().__init__()
        self.layers = layers.to(torch.bfloat16).to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.bfloat16, memory_format=torch.channels_last)
        return self.layers(x).float()


def _fast_path(layers: nn.Sequential, arithmetic: str | None,
               rewrite: Callable[[nn.Module], nn.Module] = lambda layer: layer) -> nn.Module:
    """A network's convolutional path (a copy) with its BatchNorms folded and `rewrite` applied to each layer:
    in bfloat16 with the shifts as biases when `arithmetic` (default: `precision()`) says so, else with its
    3x3 convolutions as Winograd convolutions."""
    folded = fold_batchnorm(layers)
    if (arithmetic or precision()) == "bfloat16":
        path = nn.Sequential(*map(rewrite, _fuse_pairs(folded, _into_bias)))
        if fusable():
            path = nn.Sequential(*map(_fused_block, _fuse_pairs(path, _conv_relu)))
        return BFloat16Path(path)
    return nn.Sequential(*map(rewrite, use_winograd(folded)))


PIXEL_CENTRE = 127.5
"""What the encoder subtracts from 8-bit pixels (it takes pixels / 255 - 0.5)."""


class PixelEncoder(nn.Module):
    """An encoder's inference form that takes 8-bit pixels (B, 3, H, W), uint8 in any memory layout, and
    gives the trained encoder's latents for pixels / 255 - 0.5, in float32.

    In float32 the pixels are scaled and centred as the encoder was trained on them. In bfloat16 they enter
    as k - 127.5, which bfloat16 holds exactly for every 8-bit k (half-integers up to 127.5 need 8 significant
    bits), with the 1/255 moved into the weights of the linear analysis and of the first convolution: one
    pass turns the pixels into the input, where the scaled float32 image took four (convert, centre, lay
    out, cast), and the linear analysis runs in bfloat16 as well (7.2 -> 2.6 ms at 768x512 here)."""

    def __init__(self, encoder: Encoder, arithmetic: str | None = None) -> None:
        super().__init__()
        fast = copy.deepcopy(encoder).eval().requires_grad_(False)
        self.bfloat16 = (arithmetic or precision()) == "bfloat16"
        if self.bfloat16:
            first = next(m for m in fast.net if isinstance(m, nn.Conv2d))
            with torch.no_grad():
                for layer in (fast.linear, first):
                    layer.weight.div_(2 * PIXEL_CENTRE)
            fast.linear = fast.linear.to(torch.bfloat16).to(memory_format=torch.channels_last)
        fast.net = _fast_path(fast.net, arithmetic)
        self.encoder = fast

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if not self.bfloat16:
            return self.encoder(pixels.float().div_(2 * PIXEL_CENTRE).sub_(0.5))
        x = pixels.to(torch.bfloat16, memory_format=torch.channels_last).sub_(PIXEL_CENTRE)
        return self.encoder.net(x).add_(self.encoder.linear(x))


def fast_encoder(encoder: Encoder, arithmetic: str | None = None) -> PixelEncoder:
    """The inference form of `encoder` from 8-bit pixels (`PixelEncoder`; `encoder` is left as it is): its
    BatchNorms folded, its convolutional path in bfloat16 when `arithmetic` (default: `precision()`) says so,
    else with its 3x3 convolutions as Winograd convolutions."""
    return PixelEncoder(encoder, arithmetic)


def fast_decoder(decoder: Decoder, arithmetic: str | None = None) -> Decoder:
    """A copy of `decoder` (in eval mode, no gradients) with its BatchNorms folded, its narrow transposed
    convolutions rewritten, and its convolutional path in bfloat16 when `arithmetic` (default: `precision()`)
    says so, else with its 3x3 convolutions as Winograd convolutions. With a full-resolution stage the path
    up to the last half-resolution features is one such form, the stage another, and the last layer between
    them is rewritten alone (`Decoder.forward` takes the path apart there)."""
    fast = copy.deepcopy(decoder).eval().requires_grad_(False)
    fast.linear = _rewrite(fast.linear)
    if fast.full_res is None:
        fast.net = _fast_path(fast.net, arithmetic, _rewrite)
        return fast
    fast.net = nn.Sequential(_fast_path(fast.net[:-1], arithmetic), _rewrite(fast.net[-1]))
    fast.full_res = _fast_path(fast.full_res, arithmetic)
    return fast
