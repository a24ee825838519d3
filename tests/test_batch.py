"""Batch mode and data safety: folders, parallel jobs, failures that do not stop the rest, no partial files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import KODAK, noise_image
from vqcodec import batch, codec
from vqcodec.errors import OutputError
from vqcodec.safe_io import write_atomic

VQCODEC = str(Path(sys.executable).with_name("vqcodec"))


def test_kodak_folder_with_one_corrupt_file(tmp_path: Path) -> None:
    src = tmp_path / "kodak"
    shutil.copytree(KODAK, src)
    (src / "corrupt.png").write_bytes((KODAK / "kodim01.png").read_bytes()[:2000])
    result = subprocess.run([VQCODEC, "compress", str(src), "-o", str(tmp_path / "out"), "--jobs", "2", "-q", "1"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert len(list((tmp_path / "out").rglob("*.vqz"))) == 24
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "corrupt.png" in errors[0]
    assert "25 files, 1 failed" in result.stdout

    single = tmp_path / "single.png"
    assert subprocess.run([VQCODEC, "decompress", str(tmp_path / "out" / "kodim05.vqz"), "-o", str(single)],
                          capture_output=True).returncode == 0
    assert subprocess.run([VQCODEC, "decompress", str(tmp_path / "out"), "-o", str(tmp_path / "dec"), "-j", "2"],
                          capture_output=True).returncode == 0
    assert np.array_equal(np.asarray(Image.open(single)), np.asarray(Image.open(tmp_path / "dec" / "kodim05.decoded.png")))


def test_plan_keeps_folder_structure(tmp_path: Path) -> None:
    (tmp_path / "in" / "a" / "b").mkdir(parents=True)
    for rel in ("x.png", "a/y.jpg", "a/b/z.webp", "a/notes.txt"):
        (tmp_path / "in" / rel).write_bytes(b"")
    tasks = batch.plan([tmp_path / "in"], tmp_path / "out", ".vqz", batch.is_image)
    assert sorted(str(t.dst.relative_to(tmp_path / "out")) for t in tasks) == ["a/b/z.vqz", "a/y.vqz", "x.vqz"]
    beside = batch.plan([tmp_path / "in"], None, ".vqz", batch.is_image)
    assert all(t.dst == t.src.with_suffix(".vqz") for t in beside)


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    def write_then_interrupt(f) -> None:
        f.write(b"half of a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "out.vqz", write_then_interrupt)
    assert list(tmp_path.iterdir()) == []


def test_never_overwrites_without_force(tmp_path: Path) -> None:
    target = tmp_path / "keep.vqz"
    target.write_bytes(b"keep")
    with pytest.raises(OutputError, match="already exists"):
        write_atomic(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"keep"
    write_atomic(target, lambda f: f.write(b"new"), overwrite=True)
    assert target.read_bytes() == b"new"


def test_never_writes_over_its_own_input(tmp_path: Path) -> None:
    src = tmp_path / "img.png"
    noise_image(8, 8).save(src)
    with pytest.raises(OutputError, match="own input"):
        write_atomic(src, lambda f: f.write(b"x"), overwrite=True, inputs=[src])


def test_folder_walks_take_every_format_pillow_reads(tmp_path: Path) -> None:
    for name in ("a.png", "b.gif", "c.pgm", "d.tga", "E.PNG", "f.jpeg", "g.vqz", "notes.txt", "h.pdf"):
        (tmp_path / "in" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"")
    tasks = batch.plan([tmp_path / "in"], tmp_path / "out", ".vqz", batch.is_image)
    assert sorted(t.src.name for t in tasks) == ["E.PNG", "a.png", "b.gif", "c.pgm", "d.tga", "f.jpeg"]


def _touch(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def test_colliding_outputs_are_refused_when_planning(tmp_path: Path) -> None:
    _touch(tmp_path / "s" / "a.png", tmp_path / "s" / "a.webp", tmp_path / "s" / "b.png")
    with pytest.raises(OutputError, match=r"s/a\.png and .*s/a\.webp would both be written to .*o/a\.vqz"):
        batch.plan([tmp_path / "s"], str(tmp_path / "o"), ".vqz", batch.is_image)
    _touch(tmp_path / "d1" / "x.png", tmp_path / "d2" / "x.png")
    with pytest.raises(OutputError, match=r"d1/x\.png and .*d2/x\.png would both"):
        batch.plan([tmp_path / "d1" / "x.png", tmp_path / "d2" / "x.png"], str(tmp_path / "out") + "/", ".vqz",
                   batch.is_image)
    with pytest.raises(OutputError, match="would both"):  # beside their sources, too
        batch.plan([tmp_path / "s" / "a.png", tmp_path / "s" / "a.webp"], None, ".vqz", batch.is_image)
    twice = batch.plan([tmp_path / "s" / "b.png", tmp_path / "s" / "b.png"], None, ".vqz", batch.is_image)
    assert [t.dst.name for t in twice] == ["b.vqz"]


def test_trailing_slash_means_a_folder_and_many_inputs_need_one(tmp_path: Path) -> None:
    _touch(tmp_path / "a.png", tmp_path / "b.png")
    [task] = batch.plan([tmp_path / "a.png"], str(tmp_path / "newdir") + "/", ".vqz", batch.is_image)
    assert task.dst == tmp_path / "newdir" / "a.vqz"
    [task] = batch.plan([tmp_path / "a.png"], str(tmp_path / "named"), ".vqz", batch.is_image)
    assert task.dst == tmp_path / "named"
    with pytest.raises(OutputError, match="single.vqz: several inputs need -o to be a folder"):
        batch.plan([tmp_path / "a.png", tmp_path / "b.png"], str(tmp_path / "single.vqz"), ".vqz", batch.is_image)
    assert not (tmp_path / "single.vqz").exists()
    with pytest.raises(OutputError, match="several inputs need -o to be a folder"):  # any image file name
        batch.plan([tmp_path / "a.png", tmp_path / "b.png"], str(tmp_path / "x.png"), ".decoded.tiff", batch.is_vqz)
    tasks = batch.plan([tmp_path / "a.png", tmp_path / "b.png"], str(tmp_path / "v1.2"), ".vqz", batch.is_image)
    assert [t.dst for t in tasks] == [tmp_path / "v1.2" / "a.vqz", tmp_path / "v1.2" / "b.vqz"]


def test_decoded_names_cannot_be_the_original(tmp_path: Path) -> None:
    _touch(tmp_path / "in" / "kodim19.vqz", tmp_path / "in" / "kodim19.png")
    [beside] = batch.plan([tmp_path / "in" / "kodim19.vqz"], None, ".decoded.png", batch.is_vqz)
    assert beside.dst == tmp_path / "in" / "kodim19.decoded.png"
    [walked] = batch.plan([tmp_path / "in"], None, ".decoded.png", batch.is_vqz)
    assert walked.dst == beside.dst


def test_unwritable_output_is_refused_before_encoding(tmp_path: Path, tiny_model, monkeypatch) -> None:
    src = tmp_path / "img.png"
    noise_image(8, 8).save(src)
    (tmp_path / "file.txt").write_text("not a folder")
    monkeypatch.setattr(codec, "compress", lambda *a, **k: pytest.fail("encoded before checking the output"))
    dst = tmp_path / "file.txt" / "sub" / "img.vqz"
    with pytest.raises(OutputError, match=f"{dst}: cannot write into .*file.txt.*not a folder"):
        batch.compress_task(batch.Task(src, dst), tiny_model, batch.Settings())


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_output_folder_is_refused_before_encoding(tmp_path: Path, tiny_model, monkeypatch) -> None:
    src = tmp_path / "img.png"
    noise_image(8, 8).save(src)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    monkeypatch.setattr(codec, "compress", lambda *a, **k: pytest.fail("encoded before checking the output"))
    with pytest.raises(OutputError, match=f"{locked / 'img.vqz'}: cannot write into"):
        batch.compress_task(batch.Task(src, locked / "img.vqz"), tiny_model, batch.Settings())


def test_bpp_comes_from_the_compressed_size_whatever_the_names(tmp_path: Path, tiny_model) -> None:
    src = tmp_path / "img.png"
    noise_image(40, 30).save(src)
    o = batch.compress_task(batch.Task(src, tmp_path / "out.png"), tiny_model, batch.Settings())
    assert o.bytes_out == (tmp_path / "out.png").stat().st_size
    assert o.bpp == pytest.approx(8 * o.bytes_out / (40 * 30))
    d = batch.decompress_task(batch.Task(tmp_path / "out.png", tmp_path / "back.vqz"), tiny_model, batch.Settings())
    assert d.bpp == pytest.approx(o.bpp)


def test_threads_set_the_networks_threads_and_zero_is_a_usage_error(tmp_path: Path, tiny_model_path: Path) -> None:
    import torch

    src = tmp_path / "a.png"
    noise_image(32, 24).save(src)
    before = torch.get_num_threads()
    try:
        tasks = batch.plan([src], None, ".vqz", lambda p: True)
        outcomes = list(batch.run("compress", tasks, batch.Settings(model=str(tiny_model_path)), threads=1))
        assert outcomes[0].error is None and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    done = subprocess.run([VQCODEC, "compress", str(src), "--threads", "0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
