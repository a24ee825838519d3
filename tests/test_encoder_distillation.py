"""A narrower encoder distilled from a model's (`vqcodec train --encoder-only --encoder-channels`): only the
encoder changes, the new model reads the start model's files, and a resumed run continues the same student."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY, synthetic_image
from tests.test_cli import run
from tests.test_decoder_tuning import config as decoder_config
from tests.test_decoder_tuning import folder, start_path, stop_and_resume  # noqa: F401 (fixtures)
from vqcodec import codec
from vqcodec.errors import DataError
from vqcodec.train import TrainConfig, train
from vqcodec.zoo import load_model, save_model

NARROW = (4, 6)


def config(folder: Path, out: Path, init: Path, **kw: object) -> TrainConfig:
    """The decoder-only tests' tiny run, distilling an encoder of widths `NARROW` instead."""
    return decoder_config(folder, out, init, **{"decoder_only": False, "encoder_only": True,
                                                "encoder_channels": NARROW, **kw})


@pytest.fixture(scope="module")
def student_path(folder: Path, start_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = config(folder, tmp_path_factory.mktemp("student") / "student.safetensors", start_path)
    train(cfg)
    return cfg.out


def test_only_the_encoder_changes_and_narrows(start_path: Path, student_path: Path) -> None:
    start, student = load_model(start_path), load_model(student_path)
    assert student.config == replace(start.config, channels=NARROW, decoder_channels=start.config.decoder_widths)
    before, after = start.net.state_dict(), student.net.state_dict()
    for key in before:
        if not key.startswith("encoder."):
            assert torch.equal(before[key], after[key]), key
    assert sum(p.numel() for p in student.net.encoder.parameters()) < sum(p.numel() for p in start.net.encoder.parameters())
    assert np.array_equal(start.prior.counts, student.prior.counts)
    assert np.array_equal(start.rate_weights, student.rate_weights)
    assert student.decodes == (start.fingerprint,)


def test_the_student_reads_the_start_models_files_with_the_same_pixels(start_path: Path, student_path: Path) -> None:
    start, student = load_model(start_path), load_model(student_path)
    image = synthetic_image(size=(40, 32))
    for quality in (1, 3, 5):
        old = codec.compress(image, start, quality)
        assert codec.decompress(old, student).tobytes() == codec.decompress(old, start).tobytes()
        assert codec.decompress(codec.compress(image, student, quality), student).size == image.size


def test_the_run_logs_the_teacher_and_the_students_validation(start_path: Path, student_path: Path) -> None:
    records = [json.loads(line) for line in student_path.with_suffix(".jsonl").read_text().splitlines()]
    first = records[0]
    assert first["mode"] == "encoder-only" and first["encoder_channels"] == list(NARROW)
    qualities = len(codec.quality_levels(load_model(start_path)))
    assert len(first["teacher"]["val_psnr"]) == qualities
    assert len(records[-2]["val_psnr"]) == qualities and records[-1]["event"] == "done"


def test_the_student_learns_the_teachers_latents(folder: Path, start_path: Path, tmp_path: Path) -> None:
    """A teacher whose latents come from its convolutions, every channel of which carries something (the start
    model's last encoder layer starts at zero, so narrowing alone would copy it exactly): the student, which
    lacks some of those channels, starts off and closes in."""
    start = load_model(start_path)
    net = copy.deepcopy(start.net)  # load_model's models are shared
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in net.encoder.net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        net.encoder.linear.weight.mul_(0.01)
    teacher = tmp_path / "teacher.safetensors"
    save_model(net, start.prior, teacher, start.rate_weights)
    cfg = config(folder, tmp_path / "long.safetensors", teacher, steps=200, lr=3e-3, val=None, checkpoint_every=200)
    train(cfg)
    snr = [r["snr"] for r in map(json.loads, cfg.log.read_text().splitlines()) if "snr" in r]
    assert len(snr) == 200 and np.mean(snr[-20:]) > np.mean(snr[:20]) + 3.0, snr


def test_a_resumed_run_matches_an_uninterrupted_one(folder: Path, start_path: Path, student_path: Path,
                                                     tmp_path: Path) -> None:
    cfg = config(folder, tmp_path / "m.safetensors", start_path)
    stop_and_resume(cfg, config(folder, cfg.out, start_path, resume=cfg.checkpoint), student_path)
    # a checkpoint learns one teacher: resuming it against another model's encoder is refused
    with pytest.raises(DataError, match="another encoder"):
        train(config(folder, cfg.out, student_path, resume=cfg.checkpoint, encoder_channels=(2, 3)))


def test_a_fine_tune_of_the_student_keeps_its_encoder_widths(folder: Path, student_path: Path,
                                                              tmp_path: Path) -> None:
    """`--init` of a model with a narrow encoder trains that encoder without --encoder-channels."""
    cfg = TrainConfig(data=folder, out=tmp_path / "f.safetensors", model=TINY, init=student_path, steps=2,
                      batch_size=2, crop=16, checkpoint_every=2, workers=0, prior_views=1)
    train(cfg)
    assert load_model(cfg.out).config.channels == NARROW


def test_refusals(folder: Path, start_path: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "m.safetensors")
    common = ("train", "--data", str(folder), "--out", out)
    for args, words in [(("--init", str(start_path), "--decoder-only", "--encoder-channels", "4,4"), "decoder-only"),
                        (("--init", str(start_path), "--encoder-only", "--encoder-channels", "4,x"), "whole numbers"),
                        (("--encoder-only", "--encoder-channels", "4,4"), "--init"),
                        (("--init", str(start_path), "--encoder-only", "--encoder-channels", "4,4", "--priced"),
                         "--priced")]:
        done = run(*common, *args)
        assert done.returncode == 2 and words in done.stderr, (args, done.stderr)
    for widths, words in [("8,8", "own widths"), ("4,4,4", "one width per scale")]:
        done = run(*common, "--init", str(start_path), "--encoder-only", "--encoder-channels", widths)
        assert done.returncode != 0 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
