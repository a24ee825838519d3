"""Tokens: index grids saved to .npz and decoded back, exactly as compress + decompress would."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vqcodec.cli.main import app
from vqcodec import codec, container
from vqcodec.errors import OutputError, VqzError
from vqcodec.tokens import TokensError, detokenize, load_tokens, model_for_tokens, save_tokens, tokenize
from vqcodec.zoo import CodecModel
from tests.conftest import synthetic_image as synthetic


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Three small files: RGB (not a multiple of the stride), grayscale, RGBA."""
    paths = []
    for i, (mode, size) in enumerate([("RGB", (61, 45)), ("L", (32, 40)), ("RGBA", (64, 48))]):
        path = tmp_path / f"img{i}.png"
        synthetic(mode, size, seed=i).save(path)
        paths.append(path)
    return paths


def test_tokens_equal_the_grids_compress_codes(images: list[Path], tiny_model: CodecModel) -> None:
    model = tiny_model
    tokens = tokenize(images, model, quality=3)
    assert (tokens.model_name, tokens.fingerprint, tokens.quality) == (model.name, model.fingerprint.hex(), 3)
    for path, t in zip(images, tokens.images):
        _, _, grids = codec.decompress_indices(codec.compress(path, model, 3), model)
        assert t.grids.dtype.kind == "u" and t.grids.shape == grids.shape
        assert np.array_equal(t.grids, grids)
        assert t.name == path.name


@pytest.mark.parametrize("quality", [3, 5])  # full-size qualities: tokens are grids of the image itself
def test_save_load_detokenize_reproduces_decompress(tmp_path: Path, images: list[Path], quality: int,
                                                     default_model: CodecModel) -> None:
    model = default_model
    save_tokens(tokenize(images, model, quality), tmp_path / "t.npz")
    loaded = load_tokens(tmp_path / "t.npz")
    assert model_for_tokens(loaded) is model
    assert [t.mode for t in loaded.images] == ["RGB", "L", "RGBA"]
    for path, t in zip(images, loaded.images):
        expected = codec.decompress(codec.compress(path, model, quality), model)
        got = detokenize(t, model)
        assert (got.mode, got.size) == (expected.mode, expected.size)
        assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_npz_is_plain_numpy_and_names_its_model(tmp_path: Path, images: list[Path], tiny_model: CodecModel) -> None:
    save_tokens(tokenize(images[:1], tiny_model, quality=2), tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz", allow_pickle=False) as z:
        assert (str(z["model"]), str(z["fingerprint"])) == ("tiny", tiny_model.fingerprint.hex())
        assert z["tokens_0"].shape == (2, *codec.grid_shape(tiny_model, 61, 45))
        assert int(z["codebook_size"]) == tiny_model.config.codebook_size
        assert z["sizes"].tolist() == [[61, 45]]
    with pytest.raises(TokensError, match="not installed"):
        model_for_tokens(load_tokens(tmp_path / "t.npz"))
    assert model_for_tokens(load_tokens(tmp_path / "t.npz"), tiny_model) is tiny_model


def test_save_refuses_to_overwrite(tmp_path: Path, images: list[Path], tiny_model: CodecModel) -> None:
    tokens = tokenize(images[:1], tiny_model, quality=1)
    save_tokens(tokens, tmp_path / "t.npz")
    with pytest.raises(OutputError, match="already exists"):
        save_tokens(tokens, tmp_path / "t.npz")
    save_tokens(tokens, tmp_path / "t.npz", overwrite=True)


def _rewrite(path: Path, **changes: np.ndarray) -> None:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(path, **arrays)


def test_load_rejects_damaged_files(tmp_path: Path, images: list[Path], tiny_model: CodecModel) -> None:
    path = tmp_path / "t.npz"
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(TokensError, match="not a tokens"):
        load_tokens(tmp_path / "junk.npz")
    with pytest.raises(TokensError, match="no such file"):
        load_tokens(tmp_path / "missing.npz")
    save_tokens(tokenize(images, tiny_model, quality=2), path)
    grid = codec.grid_shape(tiny_model, 61, 45)
    _rewrite(path, tokens_0=np.full((2, *grid), 16, dtype=np.uint8))
    with pytest.raises(TokensError, match="outside 0..15"):
        load_tokens(path)
    _rewrite(path, tokens_0=np.zeros((3, *grid), dtype=np.uint8))
    with pytest.raises(TokensError, match="shape"):
        load_tokens(path)
    _rewrite(path, tokens_0=np.zeros((2, *grid), dtype=np.uint8), modes=np.array(["RGB", "L", "RGB"]))
    with pytest.raises(TokensError, match="alpha"):
        load_tokens(path)


def test_detokenize_checks_model_and_grid(tmp_path: Path, images: list[Path], default_model: CodecModel) -> None:
    path = tmp_path / "t.npz"
    save_tokens(tokenize(images[:1], default_model, quality=3), path)
    _rewrite(path, fingerprint=np.array("00" * 32))
    with pytest.raises(TokensError, match="not by the given model"):
        model_for_tokens(load_tokens(path))
    _rewrite(path, model=np.array("not-installed"))
    with pytest.raises(TokensError, match="not installed"):
        model_for_tokens(load_tokens(path))
    save_tokens(tokenize(images[:1], default_model, quality=3), path, overwrite=True)
    _rewrite(path, sizes=np.array([[200, 45]]))
    with pytest.raises(TokensError, match="does not fit"):
        detokenize(load_tokens(path).images[0], default_model)


def test_cli_tokens_then_detokenize_equals_decompress(tmp_path: Path, images: list[Path]) -> None:
    runner = CliRunner()
    src = images[0]
    assert runner.invoke(app, ["compress", str(src), "-q", "3", "-o", str(tmp_path / "x.vqz")]).exit_code == 0
    assert runner.invoke(app, ["decompress", str(tmp_path / "x.vqz"), "-o", str(tmp_path / "x.png")]).exit_code == 0
    result = runner.invoke(app, ["tokens", str(src), "-q", "3", "--out", str(tmp_path / "t.npz")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["detokenize", str(tmp_path / "t.npz"), "-o", str(tmp_path / "y.png")])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "x.png") as a, Image.open(tmp_path / "y.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
    again = runner.invoke(app, ["detokenize", str(tmp_path / "t.npz"), "-o", str(tmp_path / "y.png")])
    assert isinstance(again.exception, OutputError)


def test_cli_with_model_file_and_clashing_names(tmp_path: Path, tiny_model_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        synthetic(size=(24, 16)).save(tmp_path / sub / "same.png")
    runner = CliRunner()
    inputs = [str(tmp_path / "a" / "same.png"), str(tmp_path / "b" / "same.png")]
    model = ["--model", str(tiny_model_path)]
    assert runner.invoke(app, ["tokens", *inputs, *model, "-q", "1", "-o", str(tmp_path / "t.npz")]).exit_code == 0
    result = runner.invoke(app, ["detokenize", str(tmp_path / "t.npz"), *model, "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["same-0.decoded.png", "same-1.decoded.png"]


def test_cli_tokens_rejects_bad_quality(tmp_path: Path, images: list[Path]) -> None:
    result = CliRunner().invoke(app, ["tokens", str(images[0]), "-q", "0", "-o", str(tmp_path / "t.npz")])
    assert result.exit_code == 2
    assert not (tmp_path / "t.npz").exists()


def test_tokenize_pil_images_are_named_by_position(tiny_model: CodecModel) -> None:
    tokens = tokenize([synthetic(), synthetic("L")], tiny_model, quality=1)
    assert [t.name for t in tokens.images] == ["image0", "image1"]
    got = detokenize(tokens.images[1], tiny_model)
    expected = codec.decompress(codec.compress(synthetic("L"), tiny_model, 1), tiny_model)
    assert got.mode == "L"
    assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_tokens_from_vqz_files_equal_tokens_from_their_images(tmp_path: Path, images: list[Path],
                                                              tiny_model: CodecModel) -> None:
    """Issue 17 point 4: grids read from .vqz files equal the images' grids at the files' quality.

    (A prefix of a higher-quality file equals the images' grids only under greedy coding, effort 0:
    the default effort searches the early stages for the file's full depth.)"""
    files = []
    for path in images:
        files.append(tmp_path / f"{path.stem}.vqz")
        files[-1].write_bytes(codec.compress(path, tiny_model, 2))
    from_images, from_files = tokenize(images, tiny_model, 2), tokenize(files, tiny_model, 2)
    for a, b in zip(from_images.images, from_files.images):
        assert np.array_equal(a.grids, b.grids) and a.grids.dtype == b.grids.dtype
        assert (a.width, a.height, a.mode) == (b.width, b.height, b.mode)
        assert (a.alpha is None and b.alpha is None) or np.array_equal(a.alpha, b.alpha)
    with pytest.raises(VqzError, match="qualities 1..2"):
        tokenize(files[:1], tiny_model, 3)
    with pytest.raises(VqzError, match="not by the given model"):
        tokenize(files[:1], "default", 3)  # the file was written by the tiny model


def test_tokens_of_vqz_files_default_to_every_stage_they_all_hold(tmp_path: Path, images: list[Path],
                                                                  tiny_model_path: Path) -> None:
    """Without -q, .vqz files of any quality give tokens of the stages all their headers announce,
    instead of failing because compress's default quality asks for more stages than a file holds;
    shards agree on it, so their union is still the unsharded run."""
    runner = CliRunner()
    folder = tmp_path / "files"
    folder.mkdir()
    files = []
    for path, q in zip(images, (3, 2, 3)):
        files.append(folder / f"{path.stem}.vqz")
        done = runner.invoke(app, ["compress", str(path), "--model", str(tiny_model_path), "-q", str(q), "-o", str(files[-1])])
        assert done.exit_code == 0, done.output
    model = ["--model", str(tiny_model_path)]
    result = runner.invoke(app, ["tokens", str(folder), *model, "-o", str(tmp_path / "t.npz")])
    assert result.exit_code == 0, result.output
    assert "2 stage(s)" in result.output
    whole = {t.name: t.grids for t in load_tokens(tmp_path / "t.npz").images}
    assert {g.shape[0] for g in whole.values()} == {2}
    merged = {}
    for k in range(3):  # shard 1 holds only the quality-2 file, the others only quality-3 files
        part = tmp_path / f"s{k}.npz"
        assert runner.invoke(app, ["tokens", str(folder), *model, "--shard", f"{k}/3", "-o", str(part)]).exit_code == 0
        merged.update({t.name: t.grids for t in load_tokens(part).images})
    assert merged.keys() == whole.keys() and all(np.array_equal(merged[n], whole[n]) for n in whole)
    cut = tmp_path / "cut.vqz"
    data = files[0].read_bytes()
    cut.write_bytes(data[: container.info(data).quality_ends[0]])  # announces 3 stages, holds 1
    with pytest.raises(VqzError, match="cut.vqz: truncated file, holds 1 complete stages of the 3 asked"):
        tokenize([cut, files[2]], tiny_model_path)
    assert tokenize([cut, files[1]], tiny_model_path, 1).quality == 1


def test_cli_tokens_on_a_folder_of_vqz_files_and_shards(tmp_path: Path, images: list[Path],
                                                        tiny_model_path: Path) -> None:
    runner = CliRunner()
    model = ["--model", str(tiny_model_path), "-q", "1"]
    folder = tmp_path / "files"
    folder.mkdir()
    for path in images:
        assert runner.invoke(app, ["compress", str(path), *model, "-o", str(folder / f"{path.stem}.vqz")]).exit_code == 0
    whole = runner.invoke(app, ["tokens", str(folder), *model, "-o", str(tmp_path / "all.npz")])
    assert whole.exit_code == 0, whole.output
    from_images = runner.invoke(app, ["tokens", *map(str, images), *model, "-o", str(tmp_path / "img.npz")])
    assert from_images.exit_code == 0, from_images.output
    merged = {}
    for k in range(2):
        result = runner.invoke(app, ["tokens", str(folder), *model, "--shard", f"{k}/2", "-o", str(tmp_path / f"s{k}.npz")])
        assert result.exit_code == 0, result.output
        merged.update({t.name: t.grids for t in load_tokens(tmp_path / f"s{k}.npz").images})
    whole_set, image_set = load_tokens(tmp_path / "all.npz"), load_tokens(tmp_path / "img.npz")
    assert sorted(merged) == sorted(t.name for t in whole_set.images) == [f"img{i}.vqz" for i in range(3)]
    for t, im in zip(whole_set.images, image_set.images):
        assert np.array_equal(merged[t.name], t.grids) and np.array_equal(t.grids, im.grids)


def test_detokenize_refuses_images_over_max_pixels_from_the_metadata(tmp_path: Path, images: list[Path],
                                                                    tiny_model: CodecModel) -> None:
    """Issue 13 item 1: a tokens file claiming a huge image is refused before its grids are read or decoded."""
    path = tmp_path / "t.npz"
    save_tokens(tokenize(images[:1], tiny_model, quality=1), path)
    _rewrite(path, sizes=np.array([[16384, 16384]]))
    start = time.perf_counter()
    with pytest.raises(TokensError, match="16384x16384 = 268435456 pixels, over the limit of 100000000.*max.pixels"):
        load_tokens(path)
    assert time.perf_counter() - start < 0.01
    t = tokenize(images[:1], tiny_model, quality=1).images[0]
    start = time.perf_counter()
    with pytest.raises(TokensError, match="61x45 = 2745 pixels, over the limit of 1000"):
        detokenize(t, tiny_model, max_pixels=1000)
    assert time.perf_counter() - start < 0.01
    result = CliRunner().invoke(app, ["detokenize", str(path), "--max-pixels", "10", "-o", str(tmp_path / "out.png")])
    assert isinstance(result.exception, TokensError) and not (tmp_path / "out.png").exists()


def test_strings_from_a_tokens_file_reach_no_terminal_raw(tmp_path: Path, images: list[Path],
                                                          tiny_model: CodecModel, tiny_model_path: Path) -> None:
    """Issue 13 item 6: escape sequences in a model or image name come out escaped, in messages and output."""
    path = tmp_path / "t.npz"
    save_tokens(tokenize(images[:1], tiny_model, quality=1), path)
    _rewrite(path, model=np.array("evil\x1b]0;owned\x07"), names=np.array(["a\x1b[2J.png"]))
    with pytest.raises(TokensError) as caught:
        model_for_tokens(load_tokens(path))
    assert "\x1b" not in str(caught.value) and "evil\\x1b]0;owned\\x07" in str(caught.value)
    result = CliRunner().invoke(app, ["detokenize", str(path), "--model", "default", "-o", str(tmp_path / "o")])
    assert result.exit_code != 0 and "\x1b" not in str(result.exception)
    _rewrite(path, model=np.array("tiny"))
    out = tmp_path / "o"
    out.mkdir()
    result = CliRunner().invoke(app, ["detokenize", str(path), "-o", str(out), "--model", str(tiny_model_path)])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "a\\x1b[2J.png" in result.output
    assert all("\x1b" not in p.name for p in out.iterdir())
