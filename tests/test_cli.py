"""The console script, run as a user runs it: outputs, summaries, and clean failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import numpy as np
from PIL import Image

from tests.conftest import noise_image
from vqcodec import codec, container

VQCODEC = str(Path(sys.executable).with_name("vqcodec"))


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VQCODEC, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def crop_png(tmp_path_factory: pytest.TempPathFactory, kodak_crop: Image.Image) -> Path:
    path = tmp_path_factory.mktemp("img") / "crop.png"
    kodak_crop.save(path)
    return path


@pytest.fixture(scope="module")
def crop_vqz(crop_png: Path) -> Path:
    out = crop_png.with_suffix(".vqz")
    result = run("compress", crop_png, "-q", "2")
    assert result.returncode == 0, result.stderr
    assert out.exists() and "bpp" in result.stdout
    return out


def test_compress_then_decompress_then_info(crop_png: Path, crop_vqz: Path, tmp_path: Path) -> None:
    out = tmp_path / "back.png"
    result = run("decompress", crop_vqz, "-o", out)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as im:
        assert im.size == Image.open(crop_png).size and im.format == "PNG"
    result = run("info", crop_vqz)
    assert result.returncode == 0 and "bpp" in result.stdout and "quality 2" in result.stdout


@pytest.mark.parametrize(("size", "mode"), [((1, 1), "RGB"), ((17, 33), "RGB"), ((40, 30), "L"), ((24, 16), "RGBA")])
def test_odd_sizes_and_modes(tmp_path: Path, size: tuple[int, int], mode: str) -> None:
    src = tmp_path / "in.png"
    noise_image(*size, mode).save(src)
    assert run("compress", src, "-o", tmp_path / "x.vqz").returncode == 0
    assert run("decompress", tmp_path / "x.vqz", "-o", tmp_path / "out.png").returncode == 0
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == size and im.mode == mode


def test_several_inputs_into_a_folder(crop_png: Path, tmp_path: Path) -> None:
    second = tmp_path / "second.png"
    noise_image(20, 20).save(second)
    result = run("compress", crop_png, second, "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["crop.vqz", "second.vqz"]
    assert result.stdout.count(" bpp, ") == 2 and "2 files, 0 failed" in result.stdout


def damaged_inputs(vqz: bytes) -> dict[str, bytes]:
    flipped = bytearray(vqz)
    flipped[len(vqz) // 2] ^= 0x10
    return {
        "truncated": vqz[: container.info(vqz).quality_ends[0] - 1],  # no complete stage left
        "flipped": bytes(flipped),
        "empty": b"",
        "text": b"this is not a vqz file\n",
    }


@pytest.mark.parametrize("kind", ["truncated", "flipped", "empty", "text"])
def test_bad_inputs_fail_cleanly(crop_vqz: Path, tmp_path: Path, kind: str) -> None:
    bad = tmp_path / f"{kind}.vqz"
    bad.write_bytes(damaged_inputs(crop_vqz.read_bytes())[kind])
    result = run("decompress", bad)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [bad.name]


def test_missing_and_non_image_inputs_fail_cleanly(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    for args in (("compress", tmp_path / "missing.png"), ("compress", tmp_path / "notes.txt"),
                 ("info", tmp_path / "missing.vqz")):
        result = run(*args)
        assert result.returncode != 0 and result.stderr.count("\n") == 1 and "error:" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_existing_output_needs_force(crop_png: Path, tmp_path: Path) -> None:
    target = tmp_path / "taken.vqz"
    target.write_bytes(b"precious")
    result = run("compress", crop_png, "-o", target)
    assert result.returncode != 0 and "--force" in result.stderr
    assert target.read_bytes() == b"precious"
    assert run("compress", crop_png, "-o", target, "--force").returncode == 0
    assert target.read_bytes()[:4] == b"\x89VQZ"


def test_output_over_its_own_input_is_refused(crop_vqz: Path) -> None:
    before = crop_vqz.read_bytes()
    result = run("decompress", crop_vqz, "-o", crop_vqz, "--format", "png", "--force")
    assert result.returncode != 0 and "own input" in result.stderr
    assert crop_vqz.read_bytes() == before


def test_bad_quality_is_a_usage_error(crop_png: Path) -> None:
    result = run("compress", crop_png, "-q", "99")
    assert result.returncode == 2 and "quality" in result.stderr


def test_help_explains_every_command() -> None:
    for command in ("compress", "decompress", "info", "truncate", "train", "bench", "demo", "tokens", "detokenize"):
        result = run(command, "--help")
        assert result.returncode == 0 and "Example" in result.stdout


def test_info_lists_where_each_quality_ends_and_truncate_copies_it(crop_vqz: Path, tmp_path: Path) -> None:
    data = crop_vqz.read_bytes()
    ends = container.info(data).quality_ends
    result = run("info", crop_vqz)
    assert result.returncode == 0 and f"quality ends at bytes {list(ends)}" in result.stdout
    assert "model default (" in result.stdout
    small = tmp_path / "q1.vqz"
    result = run("truncate", crop_vqz, "-q", "1", "-o", small)
    assert result.returncode == 0, result.stderr
    assert small.read_bytes() == codec.truncate(data, 1) and len(small.read_bytes()) < ends[0]
    again = run("truncate", crop_vqz, "-q", "3", "-o", tmp_path / "q3.vqz")
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "qualities 1..2" in again.stderr
    assert run("truncate", crop_vqz, "-q", "1", "-o", small).returncode == 1  # exists: needs --force


def test_truncated_file_decodes_its_complete_stages_with_one_warning(crop_vqz: Path, tmp_path: Path) -> None:
    data = crop_vqz.read_bytes()
    cut = tmp_path / "cut.vqz"
    cut.write_bytes(data[: container.info(data).quality_ends[0] + 3])
    result = run("decompress", cut, "-o", tmp_path / "cut.png")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning:") and "truncated" in lines[0] and "quality 1" in lines[0]
    with Image.open(tmp_path / "cut.png") as im:
        assert np.array_equal(np.asarray(im), np.asarray(codec.decompress(data, quality=1)))
    info = run("info", cut)
    assert info.returncode == 0 and "truncated: complete up to quality 1" in info.stdout


def test_shards_together_do_what_one_run_does(tmp_path: Path, tiny_model_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(5):
        noise_image(12 + i, 9, seed=i).save(src / ("sub" if i % 2 else "") / f"im{i}.png")
    model = ["--model", str(tiny_model_path), "-q", "1"]
    assert run("compress", src, "-o", tmp_path / "all", *model).returncode == 0
    for k in range(3):
        result = run("compress", src, "-o", tmp_path / "sharded", *model, "--shard", f"{k}/3")
        assert result.returncode == 0, result.stderr
        assert result.stdout.count(" -> ") == len(range(k, 5, 3))
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in root.rglob("*.vqz")}
    assert files(tmp_path / "sharded") == files(tmp_path / "all") and len(files(tmp_path / "all")) == 5
    for k in range(2):
        assert run("decompress", tmp_path / "all", "-o", tmp_path / "dec", "--shard", f"{k}/2",
                   "--model", str(tiny_model_path)).returncode == 0
    assert sorted(p.name for p in (tmp_path / "dec").rglob("*.png")) == [f"im{i}.png" for i in range(5)]
    empty = run("compress", src / "im0.png", "-o", tmp_path / "x.vqz", *model, "--shard", "1/2")
    assert empty.returncode == 0 and "no files" in empty.stdout and not (tmp_path / "x.vqz").exists()
    bad = run("compress", src, "-o", tmp_path / "bad", *model, "--shard", "3/3")
    assert bad.returncode == 2 and "0 <= K < N" in bad.stderr and not (tmp_path / "bad").exists()
