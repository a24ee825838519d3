"""A second decoder for the top qualities (`ModelConfig.top_decoder_from`, `vqcodec train --decoder-only
--top-decoder-from Q`): it decodes files of Q or more stages, the first decoder those below, and training it
leaves the first decoder, the streams and the lineage as they were."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY, run_cli, synthetic_image
from tests.test_decoder_tuning import config, folder, start_path, tuned_path  # noqa: F401 (fixtures)
from vqcodec import codec, container
from vqcodec.errors import DataError
from vqcodec.model import VQVAE, ModelConfig
from vqcodec.train import train
from vqcodec.zoo import load_model

SPLIT = 2
"""TINY has 3 stages and, with rate weights, qualities 1-5: qualities 2-5 go to the top decoder."""


@pytest.fixture(scope="module")
def split_path(folder: Path, start_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    cfg = config(folder, tmp_path_factory.mktemp("split") / "split.safetensors", start_path,
                 top_decoder_from=SPLIT, steps=6)
    train(cfg)
    return cfg.out


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_config_field_is_checked_and_left_out_of_json_when_unused() -> None:
    assert "top_decoder_from" not in json.loads(TINY.to_json())
    split = replace(TINY, top_decoder_from=2)
    assert ModelConfig.from_json(split.to_json()) == split
    for bad in (1, TINY.num_stages + 1, -1):
        with pytest.raises(ValueError, match="top_decoder_from"):
            replace(TINY, top_decoder_from=bad)


def test_the_decoder_follows_the_stage_count() -> None:
    net = VQVAE(replace(TINY, top_decoder_from=SPLIT)).eval()
    assert net.decoder_for(1) is net.decoder
    assert all(net.decoder_for(s) is net.top_decoder for s in range(SPLIT, TINY.num_stages + 1))
    assert not hasattr(VQVAE(TINY), "top_decoder")


def test_only_the_top_decoder_learns_and_only_on_its_qualities(start_path: Path, split_path: Path) -> None:  # noqa: F811
    start, split = load_model(start_path), load_model(split_path)
    assert split.config == replace(start.config, top_decoder_from=SPLIT)
    assert split.decodes == (start.fingerprint,)
    before, after = start.net.state_dict(), split.net.state_dict()
    for key in before:
        assert torch.equal(before[key], after[key]), key  # the first decoder included
    assert not _same(split.net.top_decoder, start.net.decoder)
    log = [json.loads(line) for line in split_path.with_suffix(".jsonl").read_text().splitlines()]
    assert log[0]["top_decoder_from"] == SPLIT
    trained = [r["quality"] for r in log if "loss" in r]
    assert len(trained) == 6 and min(trained) >= SPLIT
    assert len([r for r in log if "val_psnr" in r][-1]["val_psnr"]) == 5  # validation covers every quality


def test_files_decode_with_the_decoder_of_their_stage_count(start_path: Path, split_path: Path) -> None:  # noqa: F811
    start, split = load_model(start_path), load_model(split_path)
    image = synthetic_image(size=(40, 32))
    for quality in range(1, 6):
        data, before = codec.compress(image, split, quality), codec.compress(image, start, quality)
        assert container.unpack(data).streams == container.unpack(before).streams
        pixels = np.asarray(codec.decompress(data, split))
        assert np.array_equal(pixels, np.asarray(codec.decompress(before, split)))  # the start model's file too
        same_as_start = np.array_equal(pixels, np.asarray(codec.decompress(before, start)))
        assert same_as_start == (quality < SPLIT), quality


def test_the_fast_synthesis_matches_the_trained_top_decoder(split_path: Path) -> None:
    model = load_model(split_path)
    grids = torch.randint(0, TINY.codebook_size, (1, TINY.num_stages, 4, 5))
    with torch.no_grad():
        assert torch.allclose(model.decode(grids), model.net.decode(grids), atol=1e-5)
        assert not torch.allclose(model.decode(grids), model.net.decode(grids, model.synthesis), atol=1e-3)


def test_a_split_model_continues_only_with_its_own_split(folder: Path, split_path: Path,  # noqa: F811
                                                         tmp_path: Path) -> None:
    more = config(folder, tmp_path / "more.safetensors", split_path, top_decoder_from=SPLIT, steps=2)
    train(more)
    first, second = load_model(split_path), load_model(more.out)
    assert _same(first.net.decoder, second.net.decoder) and not _same(first.net.top_decoder, second.net.top_decoder)
    for other in (0, 3):
        with pytest.raises(DataError, match=f"--top-decoder-from {SPLIT}"):
            train(config(folder, tmp_path / "x.safetensors", split_path, top_decoder_from=other, steps=1))


def test_decoder_from_starts_the_trained_decoder_from_a_fine_tune(folder: Path, start_path: Path,  # noqa: F811
                                                                  tuned_path: Path, tmp_path: Path) -> None:
    cfg = config(folder, tmp_path / "from.safetensors", start_path, top_decoder_from=SPLIT, decoder_from=tuned_path,
                 lr=1e-12, steps=1)
    train(cfg)
    split, tuned, start = load_model(cfg.out), load_model(tuned_path), load_model(start_path)
    assert _same(split.net.decoder, start.net.decoder)
    for (key, a), b in zip(split.net.top_decoder.state_dict().items(), tuned.net.decoder.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), key
    # a model that does not read --init's streams cannot lend its decoder
    with pytest.raises(DataError, match="does not read"):
        train(config(folder, tmp_path / "y.safetensors", tuned_path, top_decoder_from=SPLIT,
                     decoder_from=start_path, steps=1))


@pytest.mark.parametrize("changes, message", [
    (dict(decoder_only=False, top_decoder_from=2), "for --decoder-only runs"),
    (dict(decoder_only=False, decoder_from=Path("m.safetensors")), "for --decoder-only runs"),
    (dict(top_decoder_from=1), "must be 2 or more"),
])
def test_config_refuses_a_split_it_cannot_train(folder: Path, start_path: Path, tmp_path: Path,  # noqa: F811
                                                changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(folder, tmp_path / "x.safetensors", **{"init": start_path, **changes})


def test_a_split_above_the_stage_count_is_one_line_on_the_cli(folder: Path, start_path: Path,  # noqa: F811
                                                              tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    result = run_cli("train", "--data", str(folder), "--init", str(start_path), "--decoder-only",
                     "--top-decoder-from", "4", "--steps", "1", "--out", str(out))
    assert result.returncode != 0 and "has 3 stages" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()
