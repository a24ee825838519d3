"""Wider decoders started from narrower ones with the same function.

A decoder fine-tuned to convergence at its width gains no more from training (`default`'s second decoder:
+0.006 dB on the first 16 BSDS500 val images after 2,250 more steps). A wider one can learn more, but
training it from scratch would throw away what the narrow one knows. Here each of the decoder's groups of
equal width (a convolution, its BatchNorm and ReLU, and any residual blocks after it) keeps the narrow
decoder's channels first, with their weights, and gains new channels after them. The new channels read
every channel of the group before, with freshly initialised weights, but the next convolution reads them
with zero weights: until training moves those, they add nothing, and the wide decoder's output equals the
narrow one's exactly. The counterpart of `vqcodec.narrowing`, which goes the other way.
"""

from __future__ import annotations

import torch
from torch import nn

from vqcodec.model import Decoder, ModelConfig, ResBlock
from vqcodec.narrowing import is_conv


def _widen_conv(src: nn.Module, dst: nn.Module) -> None:
    """dst's weights at src's input and output channels = src's; dst's new inputs feed none of src's outputs."""
    n_in, n_out = src.in_channels, src.out_channels
    if isinstance(src, nn.ConvTranspose2d):
        dst.weight[:n_in, :n_out] = src.weight
        dst.weight[n_in:, :n_out] = 0.0
    else:
        dst.weight[:n_out, :n_in] = src.weight
        dst.weight[:n_out, n_in:] = 0.0
    if src.bias is not None:
        dst.bias[:n_out] = src.bias


def _widen_batchnorm(src: nn.BatchNorm2d, dst: nn.BatchNorm2d) -> None:
    """src's statistics and affine map at its channels; a new channel passes through unchanged."""
    n = src.num_features
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name)[:n] = getattr(src, name)
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


@torch.no_grad()
def widen_decoder(narrow: Decoder, config: ModelConfig, seed: int = 0) -> Decoder:
    """A `Decoder(config)` in eval mode computing exactly what `narrow` computes, with `narrow`'s weights at its
    channels; `config.decoder_widths` may widen any of its widths (none may shrink) but change nothing else.
    New channels' incoming weights are initialised as PyTorch does (seeded by `seed`)."""
    if narrow.full_res is not None:
        raise ValueError("a decoder with a full-resolution stage is not widened")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        wide = Decoder(config)
    if len(wide.net) != len(narrow.net) or any(type(a) is not type(b) for a, b in zip(narrow.net, wide.net)):
        raise ValueError("the wide decoder must have the narrow one's layers (same scales and residual blocks)")
    for src, dst in zip(narrow.net, wide.net):
        if is_conv(src):
            if dst.out_channels < src.out_channels:
                raise ValueError(f"cannot narrow a group from {src.out_channels} to {dst.out_channels} channels")
            _widen_conv(src, dst)
        elif isinstance(src, nn.BatchNorm2d):
            _widen_batchnorm(src, dst)
        elif isinstance(src, ResBlock):
            for inner_src, inner_dst in zip(src.body, dst.body):
                if isinstance(inner_src, nn.Conv2d):
                    _widen_conv(inner_src, inner_dst)
                elif isinstance(inner_src, nn.BatchNorm2d):
                    _widen_batchnorm(inner_src, inner_dst)
    wide.linear.load_state_dict(narrow.linear.state_dict())
    return wide.eval()
