"""Decoder fine-tuning (`vqcodec train --decoder-only`): only the decoder learns, the streams stay the
start model's, and files of the start model decode with the tuned one."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import TINY, noise_image, synthetic_image, write_photos
from tests.test_cli import run
from vqcodec import codec, container, registry
from vqcodec.decoder_tuning import CompressCodes, quality_at
from vqcodec.entropy import FrequencyPrior
from vqcodec.errors import DataError, ModelError, VqzError
from vqcodec.model import VQVAE
from vqcodec.train import TrainConfig, train
from vqcodec.zoo import load_model, save_model

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos"), 4, (48, 40))


@pytest.fixture(scope="module")
def start_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model with rate weights, so `compress` prices codes and has qualities above its stage count."""
    torch.manual_seed(1)
    net = VQVAE(TINY).eval()
    for stage in net.quantizer.stages:
        stage.set_codebook(torch.randn(TINY.codebook_size, TINY.latent_dim) * 0.3)
    counts = np.arange(1, TINY.codebook_size + 1)[None].repeat(TINY.num_stages, 0) ** 2
    path = tmp_path_factory.mktemp("start") / "start.safetensors"
    save_model(net, FrequencyPrior(counts), path, np.array([0.0, 0.05, 0.05]))
    return path


def config(folder: Path, out: Path, init: Path, **kw: object) -> TrainConfig:
    base = dict(data=folder, val=folder, out=out, model=TINY, init=init, decoder_only=True, steps=4, batch_size=2,
                crop=16, val_every=4, val_images=2, checkpoint_every=2, workers=0, lr=1e-2)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def tuned_path(folder: Path, start_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = config(folder, tmp_path_factory.mktemp("tuned") / "tuned.safetensors", start_path)
    train(cfg)
    return cfg.out


def test_only_the_decoder_changes(start_path: Path, tuned_path: Path) -> None:
    start, tuned = load_model(start_path), load_model(tuned_path)
    before, after = start.net.state_dict(), tuned.net.state_dict()
    for key in before:
        same = torch.equal(before[key], after[key])
        # BatchNorm statistics stay too: the network is tuned in eval mode
        assert same != (key.startswith("decoder.") and key.endswith(("weight", "bias"))), key
    assert np.array_equal(start.prior.counts, tuned.prior.counts)
    assert np.array_equal(start.rate_weights, tuned.rate_weights)
    assert tuned.fingerprint != start.fingerprint and tuned.decodes == (start.fingerprint,)
    assert tuned.config == start.config  # TINY's name too; a run names its model with --name


def test_the_tuned_model_writes_the_same_streams_and_reads_the_start_models_files(start_path: Path,
                                                                                tuned_path: Path) -> None:
    start, tuned = load_model(start_path), load_model(tuned_path)
    image = synthetic_image(size=(40, 32))
    for quality in (1, 3, 5):
        old, new = codec.compress(image, start, quality), codec.compress(image, tuned, quality)
        assert container.unpack(old).streams == container.unpack(new).streams
        decoded = codec.decompress(old, tuned)
        assert decoded.size == image.size and decoded.tobytes() == codec.decompress(new, tuned).tobytes()
    # the lineage goes one way: the start model does not read the tuned model's files
    with pytest.raises(VqzError, match="not by the given model"):
        codec.decompress(codec.compress(image, tuned, 2), start)


def test_the_lineage_is_covered_by_the_fingerprint(tuned_path: Path, tmp_path: Path) -> None:
    raw = tuned_path.read_bytes()
    (n,) = np.frombuffer(raw[:8], dtype="<u8")
    header = json.loads(raw[8 : 8 + int(n)])
    lineage = header["__metadata__"]["decodes"]
    forged = lineage[:-1] + ("0" if lineage[-1] != "0" else "1")
    assert raw.count(lineage.encode()) == 1
    path = tmp_path / "forged.safetensors"
    path.write_bytes(raw.replace(lineage.encode(), forged.encode()))
    with pytest.raises(ModelError, match="does not match its fingerprint"):
        load_model(path)


def test_a_lineage_that_is_not_hex_is_refused(tuned_path: Path, tmp_path: Path) -> None:
    raw = tuned_path.read_bytes()
    lineage = load_model(tuned_path).decodes[0].hex().encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw.replace(lineage, b"z" * len(lineage)))
    with pytest.raises(ModelError, match="bad 'decodes' metadata"):
        load_model(path)
    with pytest.raises(ModelError, match="cannot read the model's fingerprint"):
        registry.stated_lineage(path)


@pytest.mark.parametrize("effort", [None, 0])
def test_training_codes_are_the_codes_compress_writes(start_path: Path, effort: int | None) -> None:
    model = load_model(start_path)
    codes = CompressCodes(model, torch.device("cpu"), effort=effort)
    rgb = np.asarray(noise_image(32, 24))
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255)[None]
    assert len(codes.levels) == len(codec.quality_levels(model)) == 5
    for quality in range(1, 6):
        idx = codec.encode_indices(model, rgb, quality, effort=effort)
        expected = model.net.quantizer.decode(torch.from_numpy(idx).long()).permute(2, 0, 1)
        assert torch.allclose(codes.latents(model.net, x, quality)[0], expected, atol=1e-5), quality
    assert {quality_at(s, 0, 5) for s in range(200)} == {1, 2, 3, 4, 5}
    assert quality_at(7, 0, 5) == quality_at(7, 0, 5)


def stop_and_resume(cfg: TrainConfig, resumed: TrainConfig, uninterrupted: Path) -> None:
    """Run `cfg` to step 2 of 4, interrupt it, finish it with `resumed` (its checkpoint), and check that the
    model equals the `uninterrupted` run's and that the log has every step once."""

    def stop_at_2(metrics: dict) -> None:
        if metrics.get("step") == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=stop_at_2)
    train(resumed)
    for (key, a), b in zip(load_model(uninterrupted).net.state_dict().items(),
                           load_model(cfg.out).net.state_dict().values()):
        assert torch.equal(a, b), key
    steps = [r["step"] for r in map(json.loads, cfg.log.read_text().splitlines()) if "loss" in r]
    assert steps == [1, 2, 3, 4]


def test_a_resumed_run_matches_an_uninterrupted_one(folder: Path, start_path: Path, tuned_path: Path,
                                                     tmp_path: Path) -> None:
    cfg = config(folder, tmp_path / "m.safetensors", start_path)
    stop_and_resume(cfg, config(folder, cfg.out, start_path, resume=cfg.checkpoint), tuned_path)


def test_ms_ssim_loss_and_the_validation_it_logs(folder: Path, start_path: Path, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    synthetic_image(size=(200, 192)).save(big / "a.png")
    cfg = config(big, tmp_path / "p.safetensors", start_path, loss="ms-ssim", crop=180, steps=2, val_every=2,
                 val_images=1)
    train(cfg)
    records = [json.loads(line) for line in cfg.log.read_text().splitlines()]
    assert records[0]["objective"] == "ms-ssim" and records[0]["mode"] == "decoder-only"
    val = [r for r in records if "val_msssim" in r][-1]
    assert len(val["val_msssim"]) == len(val["val_psnr"]) == 5 and all(0 < s <= 1 for s in val["val_msssim"])
    assert all(r["loss"] < 0 for r in records if "loss" in r)  # log(1 - MS-SSIM)
    assert load_model(cfg.out).config.distortion == "ms-ssim"  # so compress refines its latents for MS-SSIM
    assert load_model(start_path).config.distortion == "mse"


def test_a_full_resolution_stage_is_added_and_trained_on_the_start_models_codes(folder: Path, start_path: Path,
                                                                                  tmp_path: Path) -> None:
    cfg = config(folder, tmp_path / "f.safetensors", start_path, steps=2, model=replace(TINY, full_res_channels=3))
    train(cfg)
    start, tuned = load_model(start_path), load_model(cfg.out)
    assert tuned.config == replace(start.config, full_res_channels=3) and tuned.decodes == (start.fingerprint,)
    assert tuned.net.decoder.full_res[-1].weight.abs().sum() > 0  # it started at zero and learned
    image = synthetic_image(size=(40, 32))
    old, new = codec.compress(image, start, 3), codec.compress(image, tuned, 3)
    assert container.unpack(old).streams == container.unpack(new).streams
    assert codec.decompress(old, tuned).tobytes() == codec.decompress(new, tuned).tobytes()
    with pytest.raises(DataError, match="keeps --init's widths"):
        train(config(folder, tmp_path / "n.safetensors", start_path, steps=1,
                     model=replace(TINY, full_res_channels=3, decoder_channels=(4, 8))))


def test_other_rate_weights_are_stored_and_their_codes_still_decode(folder: Path, start_path: Path,
                                                                    tmp_path: Path) -> None:
    cfg = config(folder, tmp_path / "w.safetensors", start_path, rate_weights=(0.5,), steps=2,
                 model=replace(TINY, name="cheap"))
    train(cfg)
    start, tuned = load_model(start_path), load_model(cfg.out)
    assert tuned.name == "cheap" and tuned.config == replace(start.config, name="cheap")
    assert tuned.rate_weights.tolist() == [0.0, 0.5, 0.5] and tuned.decodes == (start.fingerprint,)
    assert np.array_equal(start.prior.counts, tuned.prior.counts)
    image = synthetic_image(size=(40, 32))
    cheap, usual = codec.compress(image, tuned, 3), codec.compress(image, start, 3)
    assert len(cheap) < len(usual)  # priced 10 times higher
    assert codec.decompress(cheap, tuned).size == image.size


@pytest.mark.parametrize("changes, message", [
    (dict(init=None), "give it with --init"),
    (dict(decoder_only=False, encoder_only=True, encoder_channels=(8,), loss="ms-ssim"), "not for --encoder-only"),
    (dict(loss="ms-ssim", crop=128), "--crop 177 or more"),
    (dict(loss="ms-ssim", crop=176), "--crop 177 or more"),
    (dict(loss="l1"), "--loss must be one of"),
    (dict(decoder_only=False, effort=0), "--effort is for --decoder-only runs"),
    (dict(effort=7), "effort must be an integer"),
])
def test_config_refuses_what_cannot_run(folder: Path, start_path: Path, tmp_path: Path, changes: dict,
                                        message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(folder, tmp_path / "x.safetensors", **{"init": start_path, **changes})


def test_cli_usage_errors_are_one_line(folder: Path, tmp_path: Path) -> None:
    for extra in (["--decoder-only"], ["--loss", "ms-ssim", "--crop", "128"], ["--effort", "0"]):
        result = run("train", "--data", folder, "--out", tmp_path / "m.safetensors", *extra)
        assert result.returncode == 2 and any(word in result.stderr for word in ("--init", "--decoder-only", "--crop"))
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "m.safetensors").exists()


def test_shipped_lookup_prefers_the_model_itself_then_default_then_the_nearest_fine_tune(
        monkeypatch: pytest.MonkeyPatch, start_path: Path, tuned_path: Path, tmp_path: Path) -> None:
    start, tuned = load_model(start_path), load_model(tuned_path)
    other = tmp_path / "other.safetensors"
    save_model(tuned.net, tuned.prior, other, tuned.rate_weights, decodes=(start.fingerprint,))
    # a second tune of the tuned model: it reads the start model's files too, one step further away
    grandchild = tmp_path / "grandchild.safetensors"
    save_model(tuned.net, tuned.prior, grandchild, tuned.rate_weights, decodes=(tuned.fingerprint, start.fingerprint))
    grand = load_model(grandchild)

    def shipped(models: dict[str, Path]) -> None:
        monkeypatch.setattr(registry, "shipped_models", lambda: models)

    shipped({"grandchild": grandchild, "tuned": tuned_path})
    assert registry.find_shipped(start.fingerprint) == ["tuned"]
    assert registry.find_shipped(tuned.fingerprint[:4]) == ["tuned"]
    assert registry.find_shipped(grand.fingerprint) == ["grandchild"]
    shipped({"grandchild": grandchild})
    assert registry.find_shipped(start.fingerprint) == ["grandchild"]
    shipped({"default": grandchild, "tuned": tuned_path})  # default, though further away, goes first
    assert registry.find_shipped(start.fingerprint) == ["default"]
    assert registry.find_shipped(tuned.fingerprint) == ["tuned"]  # the model itself goes before default
    shipped({"default": tuned_path, "other": other})
    assert registry.find_shipped(start.fingerprint) == ["default"]
    shipped({"one": tuned_path, "other": other})
    assert registry.find_shipped(start.fingerprint) == ["one", "other"]
    shipped({"start": start_path, "default": tuned_path})
    assert registry.find_shipped(start.fingerprint) == ["start"]
    assert registry.describe(start.fingerprint) == f"start ({start.fingerprint[:4].hex()})"
    shipped({"default": tuned_path})
    assert registry.describe(start.fingerprint) == f"{start.fingerprint[:4].hex()} (read by its descendant 'default')"


def named(data: bytes, model_id: bytes) -> bytes:
    """The same file naming another model (a file an earlier model would have written with these streams)."""
    f = container.unpack(data)
    return container.pack(container.VqzFile(replace(f.header, model_id=model_id), f.streams, f.alpha))


@pytest.mark.parametrize("short_id", [9, 10, 11])
def test_files_of_short_ids_9_to_11_decode_with_todays_default(kodak_crop, short_id: int) -> None:
    """Short id 10 is short id 9 with a narrower encoder distilled from its own (`train --encoder-only`), 11 is
    id 10 with six more stages (`add-stages`), and today's (13) is id 11 with its second decoder fine-tuned
    (`train --decoder-only`) and shrunk lowest qualities (`vqcodec qualities`): codebooks, prior tables and the
    first decoder are theirs, so their files decode with today's model, to the pixels its own streams give
    (quality 5: 5 stages of the image itself, the first decoder)."""
    previous, default = container.SHIPPED_MODELS[short_id], load_model("default")
    assert default.fingerprint == container.SHIPPED_MODELS[13]
    assert default.decodes[1:4] == (container.SHIPPED_MODELS[11], container.SHIPPED_MODELS[10], container.SHIPPED_MODELS[9])
    assert registry.find_shipped(previous) == ["default"]
    data = codec.compress(kodak_crop, default, 5)
    assert container.read_header(data).stages == 5 and container.read_header(data).reduced is None
    assert codec.decompress(named(data, previous)).tobytes() == codec.decompress(data).tobytes()


@pytest.mark.parametrize("short_id", [4, 5, 6, 8])
def test_files_of_a_retired_default_say_which_release_reads_them(kodak_crop, short_id: int) -> None:
    """Short ids 4, 5, 6 and 8 name `default`s of vqcodec 0.1.0 whose codebooks no shipped model has (today's
    was retrained): decompress names the release that reads them instead of failing on a model id alone."""
    retired = container.SHIPPED_MODELS[short_id]
    assert registry.find_shipped(retired) == []
    assert registry.describe(retired) == f"{retired[:4].hex()} (short id {short_id}, read by vqcodec 0.1.0)"
    data = codec.compress(kodak_crop, load_model("default"), 3)
    old = named(data, retired)
    with pytest.raises(VqzError, match=rf"\(short id {short_id}\), which this vqcodec no longer ships: "
                                       r"decompress it with vqcodec 0\.1\.0, or pass that model file with --model"):
        codec.decompress(old)


RETIRED_PERCEPTUAL = (1, 2, 3, 7, 12, 14, 15, 16, 17)
"""Short ids no shipped model reads since `perceptual` was trained end to end (vqcodec 0.17.0, short id 18; id 19
is its decoder tuned, today's, id 20, id 19's encoder tuned): its encoder and codebooks are new. 3-17 were
`perceptual`'s (decoder fine-tunes, priors counted again, other ladders of one network), 1 and 2 the first
`default`s, whose files the old `perceptual` read (a decoder fine-tune of id 2)."""


@pytest.mark.parametrize("short_id", RETIRED_PERCEPTUAL)
def test_files_of_the_perceptual_before_0_17_say_which_release_reads_them(short_id: int) -> None:
    """A file that vqcodec 0.13.0-0.15.0 wrote with `perceptual` (`tests/golden`), and the same streams naming
    any id of its lineage: decompress names vqcodec 0.16.0, the last release that reads them."""
    perceptual = load_model("perceptual")
    assert perceptual.fingerprint == container.SHIPPED_MODELS[20]
    assert perceptual.decodes == (container.SHIPPED_MODELS[19], container.SHIPPED_MODELS[18])
    retired = container.SHIPPED_MODELS[short_id]
    assert registry.find_shipped(retired) == []
    assert registry.describe(retired) == f"{retired[:4].hex()} (short id {short_id}, read by vqcodec 0.16.0)"
    golden = {14: "perceptual-id14-q4", 15: "perceptual-id15-q8", 16: "perceptual-id16-q1"}.get(short_id)
    data = (GOLDEN / f"{golden or 'perceptual-id16-q8'}.vqz").read_bytes()
    old = data if golden else named(data, retired)
    assert container.read_header(old).model_id == retired
    with pytest.raises(VqzError, match=rf"\(short id {short_id}\), which this vqcodec no longer ships: "
                                       r"decompress it with vqcodec 0\.16\.0, or pass that model file with --model"):
        codec.decompress(old)


@pytest.mark.parametrize("short_id", [18, 19])
@pytest.mark.parametrize("quality", [3, 8])
def test_files_of_the_perceptual_of_0_17_and_0_18_decode_with_todays(kodak_crop, short_id: int, quality: int) -> None:
    """Short ids 18 (vqcodec 0.17.0), 19 (0.18.0, its decoder tuned) and today's `perceptual` (short id 20, id 19's
    encoder tuned) share codebooks and prior, and 19 and 20 their decoder: a file 0.17.0 or 0.18.0 wrote
    (`tests/golden`, the kodak_crop at a shrunk and a full-size quality) decodes with today's decoder, as closely
    as today's own file of the same quality."""
    data = (GOLDEN / f"perceptual-id{short_id}-q{quality}.vqz").read_bytes()
    assert container.read_header(data).model_id == container.SHIPPED_MODELS[short_id]
    assert registry.find_shipped(container.SHIPPED_MODELS[short_id]) == ["perceptual"]
    source = np.asarray(kodak_crop, dtype=np.float64)

    def error(vqz: bytes) -> float:
        return float(np.mean((np.asarray(codec.decompress(vqz), dtype=np.float64) - source) ** 2))

    today = codec.compress(kodak_crop, load_model("perceptual"), quality)
    assert error(data) < 1.25 * error(today)


def test_a_model_made_from_perceptual_reads_its_files(kodak_crop, tmp_path: Path) -> None:
    """A model made from today's `perceptual` that keeps its prior (`CodecModel.lineage`: a decoder fine-tune,
    other qualities) reads the files `perceptual` writes, a shrunk quality and a full-size one, to the same pixels."""
    perceptual = load_model("perceptual")
    made = tmp_path / "made.safetensors"
    save_model(perceptual.net, perceptual.prior, made, perceptual.rate_weights, *perceptual.lineage)
    child = load_model(made)
    assert child.decodes == (perceptual.fingerprint, *perceptual.decodes)
    assert child.fingerprint != perceptual.fingerprint
    for quality in (1, 8):
        data = codec.compress(kodak_crop, perceptual, quality, refine_steps=0, effort=1)
        assert codec.decompress(data, child).tobytes() == codec.decompress(data).tobytes()
