"""Training pairs for a decoder fine-tune, from codes computed once: windows of whole coded images.

A decoder fine-tune (`vqcodec.decoder_tuning`) learns the latents `compress` writes. Coding each step's
crops anew takes most of a step on a CPU: at the top qualities of `default` (up to 26 stages, beam
search) about 0.5 of 1.2 s. Here each training image is coded whole, once, at a few `compress`
qualities, as `compress` codes it (whole images, not crops, so the codes near a crop's edge are the
ones a file holds), and each step takes windows of those index grids with the pixels they stand for.

A window carries a margin of cells around its crop: the decoder's output near a window's edge sees
zero padding where a decoded file has neighbours, so only the crop inside the margin is scored.
There are no flips: a mirrored image codes to other indices, not mirrored ones.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from vqcodec.errors import DataError
from vqcodec.model import VQVAE

MARGIN_CELLS = 2
"""Cells of context around each scored crop: the decoder's receptive field reaches about two cells (three
3x3 convolutions at the coarsest scale and the 16x16 lapped synthesis)."""

Coder = Callable[[torch.Tensor, int], torch.Tensor]
"""(image (1, 3, H, W) in [0, 1], quality) -> its index grids (S, H / stride, W / stride)."""


class CodedWindows(Dataset):
    """Windows of training images coded once each at `per_image` qualities drawn from `qualities`.

    Item `global_index` is a pair: the window's quantized latents (D, c + 2m, c + 2m) for c = crop / stride
    cells and m = `MARGIN_CELLS`, and the crop's pixels (3, crop, crop) in [0, 1], the window without its
    margin. The `batch_size` items of a step (global indices step * batch_size onwards, as
    `data.StepBatchSampler` gives them) share one quality, drawn per step, like the steps that code their
    crops: the loss is the log of the batch's MSE, and in a batch of mixed qualities the low ones, whose
    errors are several times larger, would outweigh the top (on the first 16 BSDS500 val images, a wide top
    decoder trained so for 4,000 steps lost 0.16 dB at quality 28 and 0.05 at 16).
    """

    def __init__(self, images: list[np.ndarray], net: VQVAE, coder: Coder, qualities: list[int], per_image: int,
                 crop: int, batch_size: int, seed: int, on_image: Callable[[int, int], None] | None = None) -> None:
        stride = net.config.stride
        if crop % stride:
            raise DataError(f"--crop {crop} must be a multiple of the model's stride ({stride}) for --cached-codes")
        if not 1 <= per_image <= len(qualities):
            raise DataError(f"--cached-codes must be 1..{len(qualities)} (the qualities trained), got {per_image}")
        self.cells, self.stride, self.batch_size, self.seed = crop // stride, stride, batch_size, seed
        side = (self.cells + 2 * MARGIN_CELLS) * stride
        small = [i for i, img in enumerate(images) if min(img.shape[:2]) < side]
        if small:
            raise DataError(f"{len(small)} training images are smaller than {side}x{side} pixels (the crop and "
                            f"its margin of {MARGIN_CELLS * stride}); use a smaller --crop or leave --cached-codes out")
        self.quantizer = copy.deepcopy(net.quantizer).cpu().eval()
        self.items: list[tuple[int, int, torch.Tensor]] = []
        """(image, quality, index grids (S, h, w)) of each coding."""
        self.pixels: list[np.ndarray] = []
        for i, img in enumerate(images):
            h, w = img.shape[0] // stride * stride, img.shape[1] // stride * stride
            pixels = np.array(img[:h, :w])
            x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float().div_(255.0)
            picked = np.random.default_rng([seed, i, 5]).choice(qualities, per_image, replace=False)
            for q in sorted(int(q) for q in picked):
                self.items.append((len(self.pixels), q, coder(x, q).to(torch.int16).cpu()))
            self.pixels.append(pixels)
            if on_image is not None:
                on_image(i + 1, len(images))
        self.by_quality: dict[int, list[int]] = {}
        for k, (_, q, _) in enumerate(self.items):
            self.by_quality.setdefault(q, []).append(k)
        self.qualities = sorted(self.by_quality)

    def __len__(self) -> int:
        return len(self.items)

    def window_of(self, global_index: int) -> tuple[int, int, int]:
        """The item (an index into `items`) and the window's top and left cell of sample `global_index`."""
        step, pos = divmod(int(global_index), self.batch_size)
        quality = self.qualities[int(np.random.default_rng([self.seed, step, 3]).integers(len(self.qualities)))]
        rng = np.random.default_rng([self.seed, step, pos, 1])
        choices = self.by_quality[quality]
        item = choices[int(rng.integers(len(choices)))]
        grids = self.items[item][2]
        span = self.cells + 2 * MARGIN_CELLS
        return item, int(rng.integers(0, grids.shape[1] - span + 1)), int(rng.integers(0, grids.shape[2] - span + 1))

    def __getitem__(self, global_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item, top, left = self.window_of(global_index)
        image, _, grids = self.items[item]
        span = self.cells + 2 * MARGIN_CELLS
        window = grids[:, top : top + span, left : left + span].long()
        with torch.no_grad():
            latents = self.quantizer.decode(window)
        s, m = self.stride, MARGIN_CELLS
        rows = slice((top + m) * s, (top + m + self.cells) * s)
        cols = slice((left + m) * s, (left + m + self.cells) * s)
        pixels = torch.from_numpy(np.array(self.pixels[image][rows, cols])).permute(2, 0, 1).float().div_(255.0)
        return latents.permute(2, 0, 1).contiguous(), pixels

    def scored(self, recon: torch.Tensor) -> torch.Tensor:
        """The crop of decoded windows (B, 3, H, W) that is scored: the window without its margin."""
        m = MARGIN_CELLS * self.stride
        return recon[:, :, m:-m, m:-m]
