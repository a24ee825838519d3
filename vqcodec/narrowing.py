"""Narrower encoders and decoders started from wider ones: the channels that carry the most keep their weights.

The networks' time goes to their convolutions at the largest scales (`docs/benchmarks.md`), whose cost
grows with the product of their input and output widths. A network with fewer channels there runs faster
but must relearn what the wide one knew; starting it from the wide network's most important channels,
rather than from scratch, leaves it close to the wide one's function from the first step
(`vqcodec train --decoder-only --decoder-channels`, `vqcodec train --encoder-only --encoder-channels`).

Encoder and decoder are each a chain of groups of equal width: a top-level convolution opens a group (its
BatchNorm, ReLU and any residual blocks follow at that width) and the next top-level convolution reads it.
A channel's importance is its mean squared activation at the end of its group, on inputs the codec really
sees, times the squared norm of the weights that read it in the next convolution. Each group keeps its most
important channels, in their original order; the layers take the rows and columns of the kept channels.
The linear lapped path beside the chain is copied whole.
"""

from __future__ import annotations

import torch
from torch import nn

from vqcodec.model import Decoder, Encoder, ModelConfig, ResBlock

Chain = Encoder | Decoder


def is_conv(layer: nn.Module) -> bool:
    """Whether `layer` opens a group of a chain (a convolution or transposed convolution)."""
    return isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))


def _read_norms(conv: nn.Module) -> torch.Tensor:
    """Squared norm of the weights of `conv` that read each of its input channels."""
    dims = (1, 2, 3) if isinstance(conv, nn.ConvTranspose2d) else (0, 2, 3)
    return conv.weight.pow(2).sum(dim=dims)


@torch.no_grad()
def channel_importance(network: Chain, inputs: torch.Tensor) -> list[torch.Tensor]:
    """Per group of `network` (put in eval mode), first group first, each channel's mean squared activation at
    the group's end times the squared norm of the next convolution's weights that read it. `inputs` are what
    the chain reads: latents (B, D, h, w) for a decoder, centred images (B, 3, H, W) for an encoder."""
    network = network.eval()
    scores: list[torch.Tensor] = []
    x, opened = inputs, False
    for layer in network.net:
        if is_conv(layer):
            if opened:
                scores.append(x.pow(2).mean(dim=(0, 2, 3)) * _read_norms(layer))
            opened = True
        x = layer(x)
    return scores


def _keep(score: torch.Tensor, width: int) -> torch.Tensor:
    """Indices of the `width` largest scores, in ascending channel order."""
    if width > score.numel():
        raise ValueError(f"cannot widen a group from {score.numel()} to {width} channels")
    return torch.topk(score, width).indices.sort().values


@torch.no_grad()
def _narrow(wide: Chain, narrow: Chain, widths: list[int], inputs: torch.Tensor) -> Chain:
    """`narrow` (same layers as `wide`, groups of `widths`) with `wide`'s weights at its most important channels."""
    if len(narrow.net) != len(wide.net) or any(type(a) is not type(b) for a, b in zip(wide.net, narrow.net)):
        raise ValueError("the narrow network must have the wide one's layers (same scales and residual blocks)")
    keeps = [_keep(score, width) for score, width in zip(channel_importance(wide, inputs), widths)]
    group = -1
    rows = torch.arange(next(m for m in wide.net if is_conv(m)).in_channels)  # the channels the next layer reads
    for src, dst in zip(wide.net, narrow.net):
        if is_conv(src):
            group += 1
            cols = keeps[group] if group < len(keeps) else torch.arange(src.out_channels)
            _copy_conv(src, dst, rows, cols)
            rows = cols
        elif isinstance(src, nn.BatchNorm2d):
            _copy_batchnorm(src, dst, rows)
        elif isinstance(src, ResBlock):
            for inner_src, inner_dst in zip(src.body, dst.body):
                if isinstance(inner_src, nn.Conv2d):
                    _copy_conv(inner_src, inner_dst, rows, rows)
                elif isinstance(inner_src, nn.BatchNorm2d):
                    _copy_batchnorm(inner_src, inner_dst, rows)
    narrow.linear.load_state_dict(wide.linear.state_dict())
    return narrow.eval()


def narrow_decoder(wide: Decoder, config: ModelConfig, latents: torch.Tensor) -> Decoder:
    """A `Decoder(config)` in eval mode whose weights are `wide`'s at the channels `channel_importance` ranks
    highest on `latents` (B, D, h, w); `config` may narrow any of the decoder's widths but nothing else."""
    if wide.full_res is not None or config.full_res_channels:
        raise ValueError("a decoder with a full-resolution stage is not narrowed")
    return _narrow(wide, Decoder(config), list(reversed(config.decoder_widths)), latents)


def narrow_encoder(wide: Encoder, config: ModelConfig, images: torch.Tensor) -> Encoder:
    """An `Encoder(config)` in eval mode whose weights are `wide`'s at the channels `channel_importance` ranks
    highest on `images` (B, 3, H, W) in [0, 1]; `config.channels` may narrow any of the encoder's widths."""
    return _narrow(wide, Encoder(config), list(config.channels), images - 0.5)


def _copy_conv(src: nn.Module, dst: nn.Module, rows: torch.Tensor, cols: torch.Tensor) -> None:
    """dst's weights = src's at input channels `rows` and output channels `cols` (and its bias at `cols`)."""
    w = src.weight[rows][:, cols] if isinstance(src, nn.ConvTranspose2d) else src.weight[cols][:, rows]
    dst.weight.copy_(w)
    if src.bias is not None:
        dst.bias.copy_(src.bias[cols])


def _copy_batchnorm(src: nn.BatchNorm2d, dst: nn.BatchNorm2d, keep: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[keep])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
