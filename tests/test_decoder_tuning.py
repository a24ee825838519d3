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
from vqcodec.bench.metrics import psnr
from vqcodec.decoder_tuning import CompressCodes, quality_at
from vqcodec.entropy import FrequencyPrior
from vqcodec.errors import ModelError, VqzError
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
    synthetic_image(size=(200, 180)).save(big / "a.png")
    cfg = config(big, tmp_path / "p.safetensors", start_path, loss="ms-ssim", crop=168, steps=2, val_every=2,
                 val_images=1)
    train(cfg)
    records = [json.loads(line) for line in cfg.log.read_text().splitlines()]
    assert records[0]["objective"] == "ms-ssim" and records[0]["mode"] == "decoder-only"
    val = [r for r in records if "val_msssim" in r][-1]
    assert len(val["val_msssim"]) == len(val["val_psnr"]) == 5 and all(0 < s <= 1 for s in val["val_msssim"])
    assert all(r["loss"] < 0 for r in records if "loss" in r)  # log(1 - MS-SSIM)
    assert load_model(cfg.out).config.distortion == "ms-ssim"  # so compress refines its latents for MS-SSIM
    assert load_model(start_path).config.distortion == "mse"


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
    (dict(loss="ms-ssim", crop=128), "--crop 161 or more"),
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


@pytest.mark.parametrize("short_id", [1, 2])
def test_files_of_the_first_defaults_decode_with_perceptual(short_id: int) -> None:
    """Short ids 1 and 2 name the first `default`s (before its decoder was fine-tuned, and after); today's
    `default` was retrained with other codebooks, but `perceptual` (a decoder fine-tune of id 2) reads them,
    with their prior (`CodecModel.decodes_prior`, its own was counted again)."""
    first, perceptual = container.SHIPPED_MODELS[short_id], load_model("perceptual")
    assert first in perceptual.decodes and registry.find_shipped(first) == ["perceptual"]
    assert first not in load_model("default").decodes
    data = (GOLDEN / "perceptual-id14-q4.vqz").read_bytes()
    assert codec.decompress(named(data, first)).tobytes() == codec.decompress(data).tobytes()


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


PSNR_013 = {4: 35.683, 8: 37.977}
"""PSNR (dB) against `kodak_crop` of `tests/golden/perceptual-id14-q{4,8}.vqz` as vqcodec 0.13.0 decoded them."""


@pytest.mark.parametrize("quality", [4, 8])
def test_files_of_perceptual_ids_3_to_14_decode_with_today_s(kodak_crop, quality: int) -> None:
    """Short id 7 is short id 3 saved without the codebooks' EMA sums (training state), 12 is id 7 with quality
    1 coding the image shrunk (`vqcodec qualities`), 14 is id 12 declared an MS-SSIM model, 15 is id 14 with its
    prior counted again under lighter rate weights (`fit-prior --keep-reading`) and its networks stored as
    float16, 16 is id 15 with qualities 1-4 coding the image shrunk (`vqcodec qualities`), and today's (17) is id 16
    with qualities 1-5 coding it shrunk. Ids 15-17 write other streams, and read theirs with id 14's prior, which
    they carry: a file
    that vqcodec 0.13.0 wrote of `kodak_crop` (`tests/golden`) decodes to 0.13.0's PSNR within float16's
    rounding (a wrong prior gives noise or an error), and the same streams naming ids 3, 7 and 12 to the same
    pixels."""
    perceptual = load_model("perceptual")
    assert perceptual.fingerprint == container.SHIPPED_MODELS[17] and perceptual.config.distortion == "ms-ssim"
    assert perceptual.decodes[:6] == tuple(container.SHIPPED_MODELS[i] for i in (16, 15, 14, 12, 7, 3))
    data = (GOLDEN / f"perceptual-id14-q{quality}.vqz").read_bytes()
    assert container.read_header(data).model_id == container.SHIPPED_MODELS[14]
    now = codec.decompress(data)
    assert psnr(np.asarray(kodak_crop), np.asarray(now)) == pytest.approx(PSNR_013[quality], abs=0.01)
    for short_id in (3, 7, 12):
        assert registry.find_shipped(container.SHIPPED_MODELS[short_id]) == ["perceptual"]
        assert codec.decompress(named(data, container.SHIPPED_MODELS[short_id])).tobytes() == now.tobytes()
    assert codec.decompress(codec.compress(now, perceptual, quality)).size == now.size


PSNR_014 = {4: 36.870, 8: 38.864}
"""PSNR (dB) against `kodak_crop` of `tests/golden/perceptual-id15-q{4,8}.vqz` as vqcodec 0.14.0 decoded them."""


@pytest.mark.parametrize("quality", [4, 8])
def test_files_of_perceptual_id_15_decode_with_today_s_and_with_a_model_made_from_it(kodak_crop, tmp_path: Path,
                                                                                    quality: int) -> None:
    """Id 15 carries id 14's prior for the older files and codes its own with its own prior; ids 16 and 17 (id 15
    with other reduced qualities, `vqcodec qualities`) keep both. A model made from today's that keeps its prior
    (`CodecModel.lineage`: a decoder fine-tune, more stages) must read the files of ids 17, 16 and 15 with that
    prior and id 14's with the carried one: here the same network saved as such a model decodes files that
    vqcodec 0.14.0 wrote with id 15 and 0.13.0 with id 14 to today's pixels."""
    perceptual = load_model("perceptual")
    ours = (GOLDEN / f"perceptual-id15-q{quality}.vqz").read_bytes()
    theirs = (GOLDEN / f"perceptual-id14-q{quality}.vqz").read_bytes()
    assert container.read_header(ours).model_id == container.SHIPPED_MODELS[15]
    now = codec.decompress(ours)
    assert psnr(np.asarray(kodak_crop), np.asarray(now)) == pytest.approx(PSNR_014[quality], abs=0.01)
    made = tmp_path / "made.safetensors"
    save_model(perceptual.net, perceptual.prior, made, perceptual.rate_weights, *perceptual.lineage)
    child = load_model(made)
    assert perceptual.decodes[:2] == (container.SHIPPED_MODELS[16], container.SHIPPED_MODELS[15])
    assert perceptual.own_prior_decodes == 2
    assert child.decodes[0] == perceptual.fingerprint and child.own_prior_decodes == 3
    assert codec.decompress(ours, child).tobytes() == now.tobytes()
    assert codec.decompress(theirs, child).tobytes() == codec.decompress(theirs).tobytes()


PSNR_015 = {1: 31.596, 8: 38.602}
"""PSNR (dB) against `kodak_crop` of `tests/golden/perceptual-id16-q{1,8}.vqz` as vqcodec 0.15.0 decoded them."""


@pytest.mark.parametrize("quality", [1, 8])
def test_files_of_perceptual_id_16_decode_with_today_s(kodak_crop, quality: int) -> None:
    """Id 17 is id 16 with one more quality shrunk below its others (`vqcodec qualities`): the same weights and
    prior, so it reads id 16's files with its own prior, a shrunk one (quality 1: 3 stages of the image shrunk by
    2) and a full-size one (quality 8: 7 stages), to the pixels vqcodec 0.15.0 decoded; and today's quality 2 codes
    what id 16's quality 1 coded (the same stages of the same shrunk image)."""
    data = (GOLDEN / f"perceptual-id16-q{quality}.vqz").read_bytes()
    assert container.read_header(data).model_id == container.SHIPPED_MODELS[16]
    now = codec.decompress(data)
    assert psnr(np.asarray(kodak_crop), np.asarray(now)) == pytest.approx(PSNR_015[quality], abs=0.01)
    if quality == 1:
        perceptual = load_model("perceptual")
        ours, theirs = (container.read_header(d) for d in (codec.compress(kodak_crop, perceptual, 2, effort=0), data))
        assert (ours.stages, ours.reduced) == (theirs.stages, theirs.reduced) == (3, (64, 48))
