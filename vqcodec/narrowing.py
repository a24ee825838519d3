"""A narrower decoder started from a wider one: the channels that carry the most keep their weights.

The decoder's time goes to its transposed convolutions at the two largest scales (`docs/benchmarks.md`),
whose cost grows with the product of their input and output widths. A decoder with fewer channels there
decodes faster but must relearn what the wide one knew; starting it from the wide decoder's most
important channels, rather than from scratch, leaves it close to the wide decoder's function from the
first step (`vqcodec train --decoder-only --decoder-channels`).

The decoder is a chain of groups of equal width: the 1x1 input layer and the residual blocks, then each
transposed convolution with its BatchNorm and ReLU. A channel's importance is its mean squared activation
at the end of its group, on latents the codec really decodes, times the squared norm of the weights that
read it in the next layer. Each group keeps its most important channels, in their original order; the
layers take the rows and columns of the kept channels.
"""

from __future__ import annotations

import torch
from torch import nn

from vqcodec.model import Decoder, ModelConfig, ResBlock


@torch.no_grad()
def channel_importance(decoder: Decoder, latents: torch.Tensor) -> list[torch.Tensor]:
    """Per group of `decoder` (coarsest first, put in eval mode), each channel's mean squared activation at the
    group's end times the squared norm of the next layer's weights that read it."""
    decoder = decoder.eval()
    scores: list[torch.Tensor] = []
    x = latents
    for layer in decoder.net:
        if isinstance(layer, nn.ConvTranspose2d):
            energy = x.pow(2).mean(dim=(0, 2, 3))
            scores.append(energy * layer.weight.pow(2).sum(dim=(1, 2, 3)))
        x = layer(x)
    return scores


def _keep(score: torch.Tensor, width: int) -> torch.Tensor:
    """Indices of the `width` largest scores, in ascending channel order."""
    if width > score.numel():
        raise ValueError(f"cannot widen a decoder group from {score.numel()} to {width} channels")
    return torch.topk(score, width).indices.sort().values


@torch.no_grad()
def narrow_decoder(wide: Decoder, config: ModelConfig, latents: torch.Tensor) -> Decoder:
    """A `Decoder(config)` in eval mode whose weights are `wide`'s at the channels `channel_importance` ranks
    highest on `latents` (B, D, h, w); `config` may narrow any of the decoder's widths but nothing else."""
    narrow = Decoder(config)
    widths = list(reversed(config.decoder_widths))
    if len(narrow.net) != len(wide.net):
        raise ValueError("the narrow decoder must have the wide one's layers (same scales and residual blocks)")
    keeps = [_keep(score, width) for score, width in zip(channel_importance(wide, latents), widths)]
    group = 0
    rows = torch.arange(config.latent_dim)  # the input channels the current layer reads
    for src, dst in zip(wide.net, narrow.net):
        cols = keeps[group]
        if isinstance(src, nn.ConvTranspose2d):
            if group + 1 < len(keeps):
                group += 1
                cols = keeps[group]
            else:
                cols = torch.arange(src.out_channels)
            _copy_conv(src, dst, rows, cols, transposed=True)
            rows = cols
        elif isinstance(src, nn.Conv2d):
            _copy_conv(src, dst, rows, cols, transposed=False)
            rows = cols
        elif isinstance(src, nn.BatchNorm2d):
            _copy_batchnorm(src, dst, rows)
        elif isinstance(src, ResBlock):
            for inner_src, inner_dst in zip(src.body, dst.body):
                if isinstance(inner_src, nn.Conv2d):
                    _copy_conv(inner_src, inner_dst, rows, rows, transposed=False)
                elif isinstance(inner_src, nn.BatchNorm2d):
                    _copy_batchnorm(inner_src, inner_dst, rows)
    narrow.linear.load_state_dict(wide.linear.state_dict())
    return narrow.eval()


def _copy_conv(src: nn.Module, dst: nn.Module, rows: torch.Tensor, cols: torch.Tensor, transposed: bool) -> None:
    """dst's weights = src's at input channels `rows` and output channels `cols` (and its bias at `cols`)."""
    w = src.weight[rows][:, cols] if transposed else src.weight[cols][:, rows]
    dst.weight.copy_(w)
    if src.bias is not None:
        dst.bias.copy_(src.bias[cols])


def _copy_batchnorm(src: nn.BatchNorm2d, dst: nn.BatchNorm2d, keep: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[keep])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
