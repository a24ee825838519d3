"""A narrower decoder (`--decoder-channels`): its config, its start from a wide decoder's channels, and a
decoder-only run that trains one and still reads the start model's files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import synthetic_image
from tests.test_cli import run
from tests.test_decoder_tuning import config, folder, start_path  # noqa: F401 (fixtures)
from vqcodec import codec, container
from vqcodec.inference import fast_decoder
from vqcodec.model import Decoder, ModelConfig
from vqcodec.narrowing import channel_importance, narrow_decoder
from vqcodec.train import train
from vqcodec.zoo import load_model

WIDE = ModelConfig(channels=(6, 8, 10), res_blocks=1, latent_dim=4, codebook_size=16, num_stages=2)


def test_a_mirrored_config_writes_the_json_of_files_made_before_the_field() -> None:
    raw = json.loads(WIDE.to_json())
    assert "decoder_channels" not in raw and ModelConfig.from_json(WIDE.to_json()) == WIDE
    narrow = replace(WIDE, decoder_channels=(2, 4, 10))
    assert ModelConfig.from_json(narrow.to_json()) == narrow and narrow.decoder_widths == (2, 4, 10)
    assert WIDE.decoder_widths == WIDE.channels
    with pytest.raises(ValueError, match="one width per scale"):
        replace(WIDE, decoder_channels=(4, 8))
    with pytest.raises(ValueError, match="must be positive"):
        replace(WIDE, decoder_channels=(0, 8, 10))


def trained_like(decoder: Decoder, seed: int = 0) -> Decoder:
    """`decoder` with random weights everywhere (also the zero-started last layer) and BatchNorm statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in decoder.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        for m in decoder.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.abs_().add_(1.0)  # no channel is dead behind its ReLU
    return decoder.eval()


def test_keeping_every_channel_is_the_wide_decoder() -> None:
    wide = trained_like(Decoder(WIDE))
    z = torch.randn(2, 4, 3, 5)
    same = narrow_decoder(wide, WIDE, z)
    with torch.no_grad():
        assert torch.equal(same(z), wide(z))


def test_dropping_channels_that_carry_nothing_keeps_the_function() -> None:
    """Channels whose activations no later layer reads have zero importance: a narrower decoder without them
    computes exactly what the wide one does, also in its inference form."""
    wide = trained_like(Decoder(WIDE))
    ups = [m for m in wide.net if isinstance(m, nn.ConvTranspose2d)]
    with torch.no_grad():
        ups[1].weight[[0, 3, 5, 7]] = 0  # the first upsampling's outputs 0, 3, 5, 7 are never read
        ups[2].weight[[1, 2]] = 0  # nor the second's outputs 1 and 2
    z = torch.randn(2, 4, 3, 5)
    scores = channel_importance(wide, z)
    assert [s.numel() for s in scores] == [10, 8, 6]
    assert (scores[1][[0, 3, 5, 7]] == 0).all() and (scores[1][[1, 2, 4, 6]] > 0).all()
    narrow_cfg = replace(WIDE, decoder_channels=(4, 4, 10))
    narrow = narrow_decoder(wide, narrow_cfg, z)
    assert [m.out_channels for m in narrow.net if isinstance(m, nn.ConvTranspose2d)] == [4, 4, 3]
    with torch.no_grad():
        torch.testing.assert_close(narrow(z), wide(z), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fast_decoder(narrow)(z), wide(z), rtol=1e-4, atol=1e-5)


def test_a_decoder_cannot_be_widened_or_restructured() -> None:
    wide = trained_like(Decoder(WIDE))
    z = torch.randn(1, 4, 2, 2)
    with pytest.raises(ValueError, match="cannot widen"):
        narrow_decoder(wide, replace(WIDE, decoder_channels=(6, 9, 10)), z)
    with pytest.raises(ValueError, match="same scales and residual blocks"):
        narrow_decoder(wide, replace(WIDE, res_blocks=2), z)


def test_a_narrow_decoder_only_run_reads_the_start_models_files(folder: Path, start_path: Path,
                                                                 tmp_path: Path) -> None:
    start = load_model(start_path)
    widths = (4, 8)
    cfg = config(folder, tmp_path / "narrow.safetensors", start_path,
                 model=replace(start.config, decoder_channels=widths))
    train(cfg)
    narrow = load_model(cfg.out)
    assert narrow.config == replace(start.config, decoder_channels=widths)
    assert narrow.decodes == (start.fingerprint,)
    assert sum(p.numel() for p in narrow.net.decoder.parameters()) < sum(p.numel() for p in start.net.decoder.parameters())
    for key, value in start.net.state_dict().items():
        if not key.startswith("decoder."):
            assert torch.equal(value, narrow.net.state_dict()[key]), key
    image = synthetic_image(size=(40, 32))
    old = codec.compress(image, start, 3)
    assert container.unpack(old).streams == container.unpack(codec.compress(image, narrow, 3)).streams
    assert codec.decompress(old, narrow).size == image.size
    start_event = json.loads(cfg.log.read_text().splitlines()[0])
    assert start_event["decoder_channels"] == list(widths)


def test_cli_refuses_bad_decoder_channels(folder: Path, start_path: Path, tmp_path: Path) -> None:
    for bad in ("8,x", "4", "0,8,8"):
        done = run("train", "--data", str(folder), "--init", str(start_path), "--decoder-only",
                   "--decoder-channels", bad, "--out", str(tmp_path / "m.safetensors"))
        assert done.returncode == 2 and "decoder" in done.stderr.lower(), done.stderr
