"""The demo: figures and summary from a couple of small images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vqcodec.cli.main import app
from vqcodec import codec
from vqcodec.demo import OUTPUTS, SUMMARY, Embedding, codebook_figure, default_qualities, run_demo
from vqcodec.errors import OutputError
from vqcodec.zoo import CodecModel


def synthetic(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    """A small RGB image with smooth gradients, an edge and some noise."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    rgb = np.stack([x * 255 / w, y * 255 / h, ((x // 16 + y // 12) % 2) * 200], axis=2)
    return Image.fromarray(np.clip(rgb + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8), "RGB")


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    synthetic((64, 48), 0).save(paths[0])
    synthetic((40, 32), 1).save(paths[1])
    return paths


def test_default_qualities_span_the_model(default_model: CodecModel, tiny_model: CodecModel) -> None:
    from vqcodec.codec import quality_levels

    for model in (default_model, tiny_model):
        qs = default_qualities(model)
        top = len(quality_levels(model))
        assert qs[0] == 1 and qs[-1] == top
        assert qs == sorted(set(qs))
        assert all(q == top or q & (q - 1) == 0 for q in qs)
    assert default_qualities(default_model) == [1, 2, 4, 8, 16, 28]


def test_run_demo_writes_figures_and_summary(tmp_path: Path, images: list[Path], tiny_model: CodecModel) -> None:
    model = tiny_model
    report = run_demo(images, tmp_path / "out", model, qualities=[2, 1])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(OUTPUTS)
    for path in report.files:
        if path.suffix == ".png":
            with Image.open(path) as im:
                assert im.format == "PNG" and im.width > 400 and im.height > 200
    first = report.images[0]
    assert [r.quality for r in first.reconstructions] == [1, 2]
    data = codec.compress(images[0], model, 2)
    assert first.reconstructions[1].bpp == pytest.approx(8 * len(data) / (64 * 48))
    assert np.array_equal(np.asarray(first.reconstructions[1].image), np.asarray(codec.decompress(data, model)))
    original = np.asarray(Image.open(images[0]), dtype=np.float64)
    mse = np.mean((original - np.asarray(first.reconstructions[1].image)) ** 2)
    assert first.reconstructions[1].psnr == pytest.approx(10 * np.log10(255**2 / mse))
    cells = sum(np.prod(codec.grid_shape(model, w, h)) for w, h in [(64, 48), (40, 32)])
    assert report.usage.shape == (2, model.config.codebook_size)
    assert report.usage.sum(axis=1).tolist() == [cells, cells]
    text = (tmp_path / "out" / SUMMARY).read_text()
    assert text == report.summary
    assert "a.png (64x48)" in text and "quality 2:" in text and "perplexity" in text
    assert "stage 2:" in text and "stage 3:" not in text


def test_run_demo_never_overwrites_without_flag(tmp_path: Path, images: list[Path], tiny_model: CodecModel) -> None:
    run_demo(images[:1], tmp_path, tiny_model, qualities=[1])
    before = (tmp_path / SUMMARY).stat().st_mtime_ns
    with pytest.raises(OutputError, match="already exists"):
        run_demo(images[:1], tmp_path, tiny_model, qualities=[1])
    assert (tmp_path / SUMMARY).stat().st_mtime_ns == before
    run_demo(images[:1], tmp_path, tiny_model, qualities=[1], overwrite=True)
    assert (tmp_path / SUMMARY).stat().st_mtime_ns != before


def test_run_demo_refuses_a_file_as_folder(tmp_path: Path, images: list[Path]) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        run_demo(images, tmp_path / "f", qualities=[1])


def test_tsne_embedding_draws_every_stage(default_model: CodecModel) -> None:
    model = default_model
    usage = np.ones((2, model.config.codebook_size), dtype=np.int64)
    fig = codebook_figure(model, usage, Embedding.tsne)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"stage 1: {model.config.codebook_size}/{model.config.codebook_size} codes used",
                      f"stage 2: {model.config.codebook_size}/{model.config.codebook_size} codes used"]
    assert fig.axes[0].get_xlabel() == "t-SNE 1"


def test_cli_demo_with_default_model(tmp_path: Path, images: list[Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["demo", *map(str, images), "-q", "1", "-q", "3", "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "perplexity" in result.output
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(OUTPUTS)
    bad = runner.invoke(app, ["demo", str(images[0]), "--embedding", "umap", "--out", str(tmp_path / "e")])
    assert bad.exit_code == 2 and not (tmp_path / "e").exists()
