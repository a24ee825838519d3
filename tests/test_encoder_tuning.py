"""A model's encoder tuned for its decoder (`vqcodec train --init M --encoder-only`, no --encoder-channels): only
the encoder changes, the new model reads M's files, the encoder learns, and a resumed run continues the same one."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import TINY, synthetic_image
from tests.test_cli import run
from tests.test_decoder_tuning import config as decoder_config
from tests.test_decoder_tuning import folder, start_path, stop_and_resume  # noqa: F401 (fixtures)
from vqcodec import codec
from vqcodec.data import find_images, read_rgb
from vqcodec.errors import DataError
from vqcodec.train import TrainConfig, pca_init, train
from vqcodec.zoo import load_model, save_model


TUNED = replace(TINY, name="tuned")
"""The tuned model's config as the runs ask for it: only the name differs from the start model's."""


def config(folder: Path, out: Path, init: Path, **kw: object) -> TrainConfig:
    """The decoder-only tests' tiny run, tuning the encoder instead."""
    return decoder_config(folder, out, init, **{"decoder_only": False, "encoder_only": True, **kw})


@pytest.fixture(scope="module")
def tuned_path(folder: Path, start_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = config(folder, tmp_path_factory.mktemp("tuned") / "tuned.safetensors", start_path, model=TUNED)
    train(cfg)
    return cfg.out


def test_only_the_encoder_changes(start_path: Path, tuned_path: Path) -> None:
    start, tuned = load_model(start_path), load_model(tuned_path)
    assert tuned.config.name == "tuned" and tuned.config.channels == start.config.channels
    before, after = start.net.state_dict(), tuned.net.state_dict()
    changed = [key for key in before if not torch.equal(before[key], after[key])]
    assert changed and all(key.startswith("encoder.") for key in changed), changed
    assert not any("running_" in key for key in changed), changed  # BatchNorm statistics stay the start model's
    assert np.array_equal(start.prior.counts, tuned.prior.counts)
    assert np.array_equal(start.rate_weights, tuned.rate_weights)
    assert tuned.decodes == (start.fingerprint,)


def test_the_tuned_model_reads_the_start_models_files_with_the_same_pixels(start_path: Path,
                                                                           tuned_path: Path) -> None:
    start, tuned = load_model(start_path), load_model(tuned_path)
    image = synthetic_image(size=(40, 32))
    for quality in (1, 3, 5):
        old = codec.compress(image, start, quality)
        assert codec.decompress(old, tuned).tobytes() == codec.decompress(old, start).tobytes()
        assert codec.decompress(codec.compress(image, tuned, quality), tuned).size == image.size


def test_the_run_logs_the_start_models_validation_and_its_own(start_path: Path, tuned_path: Path) -> None:
    records = [json.loads(line) for line in tuned_path.with_suffix(".jsonl").read_text().splitlines()]
    first = records[0]
    assert first["mode"] == "encoder-tuning" and first["init_fingerprint"] == load_model(start_path).fingerprint.hex()
    qualities = len(codec.quality_levels(load_model(start_path)))
    assert len(first["start"]["val_psnr"]) == qualities
    assert len(records[-2]["val_psnr"]) == qualities and records[-1]["event"] == "done"
    steps = [r for r in records if "mse" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4] and all(1 <= r["stages"] <= 3 for r in steps)


def test_the_encoder_learns_latents_its_decoder_reproduces(folder: Path, start_path: Path, tmp_path: Path) -> None:
    """A model whose linear transforms are the photos' principal components (`train.pca_init`), its encoder's
    then scaled down: the tuned encoder's latents decode closer to the photos, through the quantizer and
    without it."""
    start = load_model(start_path)
    net = copy.deepcopy(start.net)  # load_model's models are shared
    photos = torch.stack([torch.tensor(read_rgb(p)).permute(2, 0, 1).float() / 255 for p in find_images(folder)])
    pca_init(net, iter([photos]), 1, torch.device("cpu"))
    with torch.no_grad():
        net.encoder.linear.weight.mul_(0.5)
    weak = tmp_path / "weak.safetensors"
    save_model(net, start.prior, weak, start.rate_weights)
    cfg = config(folder, tmp_path / "long.safetensors", weak, steps=60, lr=1e-2, val=None, checkpoint_every=60)
    train(cfg)

    def errors(path: Path) -> tuple[float, float]:
        model = load_model(path).net
        with torch.no_grad():
            z = model.embed(photos)
            recon, _ = model(photos, TINY.num_stages)
            return float(F.mse_loss(model.reconstruct(z), photos)), float(F.mse_loss(recon, photos))

    (plain_before, coded_before), (plain_after, coded_after) = errors(weak), errors(cfg.out)
    assert plain_after < 0.7 * plain_before and coded_after < coded_before, (plain_before, plain_after,
                                                                              coded_before, coded_after)


def test_a_resumed_run_matches_an_uninterrupted_one(folder: Path, start_path: Path, tuned_path: Path,
                                                     tmp_path: Path) -> None:
    cfg = config(folder, tmp_path / "m.safetensors", start_path, model=TUNED)
    stop_and_resume(cfg, config(folder, cfg.out, start_path, resume=cfg.checkpoint, model=TUNED), tuned_path)
    with pytest.raises(DataError, match="another model"):
        train(config(folder, cfg.out, tuned_path, resume=cfg.checkpoint))


def test_refusals(folder: Path, start_path: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "m.safetensors")
    common = ("train", "--data", str(folder), "--out", out)
    for args, words, code in [(("--encoder-only",), "--init", 2),
                              (("--init", str(start_path), "--encoder-only", "--priced"), "--priced", 2),
                              (("--init", str(start_path), "--encoder-only", "--loss", "ms-ssim", "--crop", "192"),
                               "give --loss mse", 1)]:
        done = run(*common, *args)
        assert done.returncode == code and words in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
