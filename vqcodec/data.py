"""Training data: a folder of photos turned into random, flipped crops.

Every sample is a pure function of (seed, global sample index), so a run resumed
at step k sees exactly the crops the uninterrupted run would have seen, whatever
the number of DataLoader workers or ranks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Sampler

from vqcodec.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
CACHE_LIMIT_BYTES = 1 << 30


def find_images(root: str | Path) -> list[Path]:
    """Image files below `root`, recursively, sorted; a clear error when there are none."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{root}: no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def read_rgb(path: Path) -> np.ndarray:
    """Decode a file fully into an (H, W, 3) uint8 array (raises on a damaged file)."""
    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


@dataclass
class ScanReport:
    """What a scan of a training folder found."""

    usable: list[Path] = field(default_factory=list)
    unreadable: list[Path] = field(default_factory=list)
    smaller_than_crop: int = 0


class CropDataset(Dataset[torch.Tensor]):
    """Random `crop` x `crop` crops with random horizontal flips, as float tensors in [0, 1].

    Files are decoded once at start: unreadable ones are skipped with a warning,
    images smaller than the crop are edge-padded and counted. Decoded images are
    kept in memory when they fit in `CACHE_LIMIT_BYTES`, else decoded again per sample.
    """

    def __init__(self, root: str | Path, crop: int = 256, seed: int = 0) -> None:
        self.crop = crop
        self.seed = seed
        self.report = ScanReport()
        cache: list[np.ndarray] = []
        total = 0
        for path in find_images(root):
            try:
                pixels = read_rgb(path)
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
                log.warning("skipping unreadable image %s (%s)", path, exc)
                self.report.unreadable.append(path)
                continue
            self.report.usable.append(path)
            if min(pixels.shape[:2]) < crop:
                self.report.smaller_than_crop += 1
            total += pixels.nbytes
            if total <= CACHE_LIMIT_BYTES:
                cache.append(pixels)
        if not self.report.usable:
            raise DataError(f"{root}: none of the {len(self.report.unreadable)} image files could be read")
        self.files = self.report.usable
        self.cache = cache if len(cache) == len(self.files) else None

    def __len__(self) -> int:
        return len(self.files)

    def pixels(self, i: int) -> np.ndarray:
        """Image `i`'s (H, W, 3) uint8 pixels, from memory when they fit there."""
        return self.cache[i] if self.cache is not None else read_rgb(self.files[i])

    def __getitem__(self, global_index: int) -> torch.Tensor:
        n = len(self.files)
        epoch, pos = divmod(int(global_index), n)
        order = np.random.default_rng([self.seed, epoch]).permutation(n)
        rng = np.random.default_rng([self.seed, epoch, pos, 1])
        pixels = self.pixels(int(order[pos]))
        h, w = pixels.shape[:2]
        if h < self.crop or w < self.crop:
            pad_h, pad_w = max(0, self.crop - h), max(0, self.crop - w)
            pixels = np.pad(pixels, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            h, w = pixels.shape[:2]
        top = int(rng.integers(0, h - self.crop + 1))
        left = int(rng.integers(0, w - self.crop + 1))
        patch = pixels[top : top + self.crop, left : left + self.crop]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return to_tensor(patch)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(3, H, W) float tensor in [0, 1] from (H, W, 3) uint8 pixels; copies, so any numpy view will do."""
    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1).float().div_(255.0)


class StepBatchSampler(Sampler[list[int]]):
    """Batches of global sample indices for steps `start`..`stop-1`, this rank's slice of each step."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int = 0, world: int = 1, offset: int = 0) -> None:
        self.start, self.stop = start, stop
        self.batch_size, self.rank, self.world, self.offset = batch_size, rank, world, offset

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        per_step = self.batch_size * self.world
        for step in range(self.start, self.stop):
            first = self.offset + step * per_step + self.rank * self.batch_size
            yield list(range(first, first + self.batch_size))
