"""The console script, run as a user runs it: outputs, summaries, and clean failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
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
    h = container.read_header(crop_vqz.read_bytes())
    assert result.returncode == 0 and "bpp" in result.stdout and f"{h.stages} stage{'s' * (h.stages != 1)}," in result.stdout
    assert f"format {h.version}" in result.stdout
    assert (f"coded at {h.coded_width}x{h.coded_height}" in result.stdout) == (h.reduced is not None)


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
    assert result.returncode != 0 and "-o" in result.stderr and "--force" not in result.stderr  # not ours
    assert target.read_bytes() == b"precious"
    assert run("compress", crop_png, "-o", target, "--force").returncode == 0
    assert target.read_bytes()[:4] == b"\x89VQZ"
    result = run("compress", crop_png, "-o", target)
    assert result.returncode != 0 and "--force" in result.stderr  # a .vqz file: ours to replace


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


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_decompress_never_lands_on_or_advises_forcing_over_the_original(crop_png: Path, crop_vqz: Path) -> None:
    original = crop_png.read_bytes()
    decoded = crop_vqz.with_name("crop.decoded.png")
    try:
        result = run("decompress", crop_vqz)
        assert result.returncode == 0, result.stderr
        assert decoded.exists() and crop_png.read_bytes() == original
        again = one_error_line(run("decompress", crop_vqz))  # our own output: --force is the remedy
        assert str(decoded) in again and "--force" in again
        foreign = one_error_line(run("decompress", crop_vqz, "-o", crop_png))
        assert str(crop_png) in foreign and "-o" in foreign and "--force" not in foreign
        assert crop_png.read_bytes() == original
    finally:
        decoded.unlink(missing_ok=True)


def test_wrong_kind_of_input_is_named(crop_png: Path, crop_vqz: Path) -> None:
    line = one_error_line(run("compress", crop_vqz))
    assert "already a .vqz" in line and "own input" not in line
    line = one_error_line(run("decompress", crop_png))
    assert f"{crop_png}: not a .vqz file" in line and "own input" not in line


def test_info_walks_folders(crop_vqz: Path, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.vqz").write_bytes(crop_vqz.read_bytes())
    (tmp_path / "notes.txt").write_text("not a vqz")
    result = run("info", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("bpp") == 1 and str(tmp_path / "sub" / "x.vqz") in result.stdout


def test_bpp_and_output_paths(crop_png: Path, tmp_path: Path) -> None:
    result = run("compress", crop_png, "-q", "1", "-o", tmp_path / "out.png")
    assert result.returncode == 0, result.stderr
    true_bpp = 8 * (tmp_path / "out.png").stat().st_size / (128 * 96)
    assert f"{true_bpp:.4f} bpp" in result.stdout
    result = run("compress", crop_png, "-q", "1", "-o", f"{tmp_path / 'newdir'}/")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "newdir" / "crop.vqz").is_file()
    line = one_error_line(run("compress", crop_png, tmp_path / "out.png", "-o", tmp_path / "single.vqz"))
    assert "folder" in line and not (tmp_path / "single.vqz").exists()


def test_colliding_batch_outputs_are_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    noise_image(16, 16).save(tmp_path / "s" / "a.png")
    noise_image(16, 16, seed=1).save(tmp_path / "s" / "a.webp", lossless=True)
    line = one_error_line(run("compress", tmp_path / "s", "-o", tmp_path / "o", "--force", "-j", "2"))
    assert "a.png" in line and "a.webp" in line
    assert not (tmp_path / "o").exists()


def test_warnings_are_one_line_and_batches_print_no_blank_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)).save(deep)
    noise_image(16, 16).save(tmp_path / "b.png")
    result = run("compress", deep, tmp_path / "b.png", "-q", "1", "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [result.stderr.rstrip("\n")]
    assert result.stderr.startswith(f"warning: {deep}: mode I;16 image reduced to 8 bits")


@pytest.mark.parametrize("target", ["0.001", "50"])
def test_target_bpp_out_of_reach_says_what_was_reached(crop_png: Path, tmp_path: Path, target: str) -> None:
    result = run("compress", crop_png, "--target-bpp", target, "-o", tmp_path / "t.vqz")
    assert result.returncode == 0, result.stderr
    reached = 8 * (tmp_path / "t.vqz").stat().st_size / (128 * 96)
    [line] = result.stderr.splitlines()
    assert line.startswith("warning: ") and f"target {float(target):g} bpp" in line and f"{reached:.4f} bpp" in line


def test_warnings_outside_batches_are_one_line_too(tmp_path: Path) -> None:
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)).save(deep)
    result = run("tokens", deep, "-o", tmp_path / "t.npz")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"warning: {deep}: mode I;16 image reduced to 8 bits per sample "
                                          "(0..65535 mapped to 0..255)"]


def test_info_lists_where_each_quality_ends_and_truncate_copies_it(crop_vqz: Path, tmp_path: Path) -> None:
    data = crop_vqz.read_bytes()
    ends = container.info(data).quality_ends
    result = run("info", crop_vqz)
    assert result.returncode == 0 and f"quality ends at bytes {list(ends)}" in result.stdout
    assert "model default (" in result.stdout
    small = tmp_path / "q1.vqz"
    result = run("truncate", crop_vqz, "-q", "1", "-o", small)
    assert result.returncode == 0, result.stderr
    shorter_header = container.header_length(data) - container.header_length(small.read_bytes())
    assert small.read_bytes() == codec.truncate(data, 1)
    assert len(small.read_bytes()) == ends[0] - shorter_header + container.CRC_BYTES - container.TAG_BYTES
    stages = container.read_header(data).stages
    again = run("truncate", crop_vqz, "-q", str(stages + 1), "-o", tmp_path / "over.vqz")
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and f"qualities 1..{stages}" in again.stderr
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
    assert sorted(p.name for p in (tmp_path / "dec").rglob("*.png")) == [f"im{i}.decoded.png" for i in range(5)]
    empty = run("compress", src / "im0.png", "-o", tmp_path / "x.vqz", *model, "--shard", "1/2")
    assert empty.returncode == 0 and "no files" in empty.stdout and not (tmp_path / "x.vqz").exists()
    bad = run("compress", src, "-o", tmp_path / "bad", *model, "--shard", "3/3")
    assert bad.returncode == 2 and "0 <= K < N" in bad.stderr and not (tmp_path / "bad").exists()
