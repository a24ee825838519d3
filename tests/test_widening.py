"""A wider top decoder started as the narrow one's function, trained on windows of codes computed once, and
network weights stored as float16."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from tests.conftest import TINY, synthetic_image
from tests.test_cli import run
from tests.test_decoder_tuning import config, folder, start_path  # noqa: F401 (fixtures)
from vqcodec import codec
from vqcodec.coded_windows import MARGIN_CELLS, CodedWindows
from vqcodec.model import VQVAE, Decoder, ModelConfig
from vqcodec.train import train
from vqcodec.widening import widen_decoder
from vqcodec.zoo import load_model, save_model

WIDE = (12, 16)
"""TINY's decoder widths are (8, 8), finest first."""


def _trained_like(decoder: Decoder, seed: int) -> Decoder:
    """`decoder` with random weights and BatchNorm statistics everywhere, the zeroed last layer included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in decoder.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if "running_var" in name
                        else torch.randn(t.shape, generator=g) * 0.3)
    return decoder.eval()


def test_a_widened_decoder_computes_what_the_narrow_one_did() -> None:
    narrow = _trained_like(Decoder(TINY), 0)
    wide = widen_decoder(narrow, replace(TINY, decoder_channels=WIDE))
    assert [m.out_channels for m in wide.net if isinstance(m, torch.nn.ConvTranspose2d)] == [12, 3]
    z = torch.randn(2, TINY.latent_dim, 5, 6)
    with torch.no_grad():
        assert torch.allclose(wide(z), narrow(z), atol=1e-5)
    # the new channels are live: the next layer's zero weights get a gradient, so training can use them
    wide.train().requires_grad_(True)
    wide(z).square().sum().backward()
    last = wide.net[-1].weight.grad
    assert last[8:].abs().sum() > 0


def test_widening_refuses_a_narrower_or_other_shaped_decoder() -> None:
    narrow = Decoder(replace(TINY, decoder_channels=WIDE))
    with pytest.raises(ValueError, match="cannot narrow"):
        widen_decoder(narrow, TINY)
    with pytest.raises(ValueError, match="same scales and residual blocks"):
        widen_decoder(Decoder(TINY), replace(TINY, res_blocks=2))


def test_top_decoder_widths_are_checked_and_left_out_of_json_when_unused() -> None:
    assert "top_decoder_channels" not in json.loads(replace(TINY, top_decoder_from=2).to_json())
    wide = replace(TINY, top_decoder_from=2, top_decoder_channels=WIDE)
    assert ModelConfig.from_json(wide.to_json()) == wide
    net = VQVAE(wide)
    assert net.top_decoder.net[0].out_channels == 16 and net.decoder.net[0].out_channels == 8
    with pytest.raises(ValueError, match="needs a second decoder"):
        replace(TINY, top_decoder_channels=WIDE)
    with pytest.raises(ValueError, match="one width per scale"):
        replace(TINY, top_decoder_from=2, top_decoder_channels=(12,))


def test_float16_weights_halve_the_network_and_decode_as_float32(start_path: Path, tmp_path: Path) -> None:  # noqa: F811
    start = load_model(start_path)
    half = replace(start.config, float16_weights=True)
    net = VQVAE(half)
    net.load_state_dict(start.net.state_dict())
    out = tmp_path / "half.safetensors"
    save_model(net, start.prior, out, start.rate_weights, decodes=(start.fingerprint,))
    with safe_open(str(out), framework="pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    params = {n for n, _ in net.named_parameters()}
    assert params and all(dtypes[k] == "F16" for k in params)
    assert all(dtypes[k] == "F32" for k in dtypes if "codebook" in k or "running_" in k)
    loaded = load_model(out)
    assert loaded.config.float16_weights and all(p.dtype == torch.float32 for p in loaded.net.parameters())
    image = synthetic_image(size=(40, 32))
    data = codec.compress(image, start, 2)
    a = np.asarray(codec.decompress(data, start), dtype=float)
    b = np.asarray(codec.decompress(data, loaded), dtype=float)
    assert np.abs(a - b).max() <= 2  # rounding of the weights moves a pixel by a level or two at most


def _windows(start_path: Path, crop: int = 16, seed: int = 3) -> tuple[CodedWindows, list[np.ndarray]]:  # noqa: F811
    from vqcodec.decoder_tuning import CompressCodes
    start = load_model(start_path)
    codes = CompressCodes(start, torch.device("cpu"))
    images = [np.asarray(synthetic_image(size=(44, 36), seed=s)) for s in range(2)]
    windows = CodedWindows(images, start.net, lambda x, q: codes.grids(start.net, x, q), [2, 3, 4], 2, crop, 3, seed)
    return windows, images


def test_coded_windows_pair_the_codes_with_the_pixels_they_stand_for(start_path: Path) -> None:  # noqa: F811
    windows, images = _windows(start_path)
    quantizer = load_model(start_path).net.quantizer
    assert len(windows) == 4  # 2 images x 2 qualities each
    s, m, cells = TINY.stride, MARGIN_CELLS, 16 // TINY.stride
    span = cells + 2 * m
    for i in range(6):
        latents, pixels = windows[i]
        assert latents.shape == (TINY.latent_dim, span, span) and pixels.shape == (3, 16, 16)
        crop = (pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        found = False
        for image, _, grids in windows.items:  # the window's latents are the codes at the crop's place, decoded
            full = quantizer.decode(grids.long()).permute(2, 0, 1)
            for r in range(grids.shape[1] - span + 1):
                for c in range(grids.shape[2] - span + 1):
                    found |= (np.array_equal(images[image][(r + m) * s:(r + m + cells) * s,
                                                           (c + m) * s:(c + m + cells) * s], crop)
                              and torch.equal(full[:, r:r + span, c:c + span], latents))
        assert found, i
    again, _ = _windows(start_path)
    assert all(torch.equal(a, b) for a, b in zip(windows[5], again[5]))


def test_the_windows_of_a_step_share_a_quality(start_path: Path) -> None:  # noqa: F811
    """The loss is the log of a batch's MSE: mixed qualities would let the low ones, with larger errors,
    outweigh the top."""
    windows, _ = _windows(start_path)  # 3 windows a step
    seen = set()
    for step in range(12):
        qualities = {windows.items[windows.window_of(step * 3 + k)[0]][1] for k in range(3)}
        assert len(qualities) == 1
        seen |= qualities
    assert len(seen) > 1  # the quality is drawn per step


def test_coded_windows_refuse_images_too_small_for_the_crop_and_margin(start_path: Path) -> None:  # noqa: F811
    from vqcodec.errors import DataError
    with pytest.raises(DataError, match="smaller than"):
        _windows(start_path, crop=32)
    with pytest.raises(DataError, match="multiple of the model's stride"):
        _windows(start_path, crop=18)


def test_a_wider_top_decoder_trained_on_cached_codes(folder: Path, start_path: Path,  # noqa: F811
                                                     tmp_path: Path) -> None:
    cfg = config(folder, tmp_path / "wide.safetensors", start_path, top_decoder_from=2,
                 top_decoder_channels=WIDE, cached_codes=2, steps=3, val_every=3,
                 model=replace(TINY, float16_weights=True))
    train(cfg)
    start, wide = load_model(start_path), load_model(cfg.out)
    assert wide.config == replace(start.config, top_decoder_from=2, top_decoder_channels=WIDE, float16_weights=True)
    assert wide.decodes == (start.fingerprint,)
    for key, value in start.net.state_dict().items():
        if key.startswith("decoder."):  # the first decoder stays the start's, up to float16 rounding
            assert torch.allclose(wide.net.state_dict()[key], value, rtol=1e-3, atol=1e-4), key
    records = [json.loads(line) for line in cfg.log.read_text().splitlines()]
    coded = [r for r in records if r.get("event") == "coded"]
    assert coded and coded[0]["windows_from"] == 2 * 4  # 4 photos x 2 qualities
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert records[0]["top_decoder_channels"] == list(WIDE) and records[0]["cached_codes"] == 2
    image = synthetic_image(size=(40, 32))
    data = codec.compress(image, start, 4)  # a start model's file decodes with the wide top decoder
    assert codec.decompress(data, wide).size == image.size


def test_a_resumed_cached_codes_run_matches_an_uninterrupted_one(folder: Path, start_path: Path,  # noqa: F811
                                                                tmp_path: Path) -> None:
    from tests.test_decoder_tuning import stop_and_resume
    kw = dict(top_decoder_from=2, top_decoder_channels=WIDE, cached_codes=1)
    whole = config(folder, tmp_path / "whole.safetensors", start_path, **kw)
    train(whole)
    cfg = config(folder, tmp_path / "m.safetensors", start_path, **kw)
    stop_and_resume(cfg, config(folder, cfg.out, start_path, resume=cfg.checkpoint, **kw), whole.out)


@pytest.mark.parametrize("changes, message", [
    (dict(decoder_only=False, cached_codes=2), "--cached-codes are for --decoder-only runs"),
    (dict(top_decoder_channels=WIDE), "give --top-decoder-from"),
    (dict(cached_codes=-1), "--cached-codes must be 0"),
])
def test_config_refuses_what_cannot_run(folder: Path, start_path: Path, tmp_path: Path,  # noqa: F811
                                        changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(folder, tmp_path / "x.safetensors", start_path, **changes)


def test_narrowing_a_top_decoder_is_one_line_on_the_cli(folder: Path, start_path: Path,  # noqa: F811
                                                        tmp_path: Path) -> None:
    result = run("train", "--data", folder, "--out", tmp_path / "m.safetensors", "--init", start_path,
                 "--decoder-only", "--top-decoder-from", "2", "--top-decoder-channels", "4,8", "--steps", "2",
                 "--crop", "16", "--workers", "0")
    assert result.returncode != 0 and "can only be widened" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "m.safetensors").exists()
