"""Training data: folders scanned, bad files skipped, small images padded, sampling reproducible."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import noise_image
from vqcodec.data import CropDataset, StepBatchSampler, find_images
from vqcodec.errors import DataError


def make_folder(root: Path, n: int = 3, size: tuple[int, int] = (40, 36)) -> Path:
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        noise_image(*size, seed=i).save(root / ("sub" if i % 2 else ".") / f"img{i}.png")
    return root


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images"):
        CropDataset(tmp_path, crop=16)


def test_folder_of_text_files_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.md").write_text("# notes")
    with pytest.raises(DataError, match="no images"):
        CropDataset(tmp_path, crop=16)


def test_only_unreadable_images_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match="could be read"):
        CropDataset(tmp_path, crop=16)


def test_corrupt_jpeg_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_folder(tmp_path)
    good = tmp_path / "good.jpg"
    noise_image(40, 40).save(good, quality=90)
    (tmp_path / "corrupt.jpg").write_bytes(good.read_bytes()[:300])
    ds = CropDataset(tmp_path, crop=16)
    assert len(ds) == 4 and [p.name for p in ds.report.unreadable] == ["corrupt.jpg"]
    assert "corrupt.jpg" in caplog.text
    assert ds[0].shape == (3, 16, 16)


def test_recursive_and_small_images_are_padded(tmp_path: Path) -> None:
    make_folder(tmp_path, n=3, size=(20, 12))
    assert len(find_images(tmp_path)) == 3
    ds = CropDataset(tmp_path, crop=32)
    assert ds.report.smaller_than_crop == 3
    x = ds[5]
    assert x.shape == (3, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_samples_depend_only_on_seed_and_index(tmp_path: Path) -> None:
    make_folder(tmp_path)
    a, b = CropDataset(tmp_path, crop=16, seed=1), CropDataset(tmp_path, crop=16, seed=1)
    assert all(torch.equal(a[i], b[i]) for i in (0, 7, 123))
    assert not torch.equal(a[7], CropDataset(tmp_path, crop=16, seed=2)[7])


def test_step_sampler_splits_steps_between_ranks() -> None:
    r0 = list(StepBatchSampler(2, 4, batch_size=3, rank=0, world=2))
    r1 = list(StepBatchSampler(2, 4, batch_size=3, rank=1, world=2))
    assert r0 == [[12, 13, 14], [18, 19, 20]] and r1 == [[15, 16, 17], [21, 22, 23]]
