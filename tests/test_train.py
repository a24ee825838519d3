"""The trainer: the recipe end to end on tiny data, exact resume, gap-free logs, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import TINY, noise_image, synthetic_image
from vqcodec import codec, grid_shift
from vqcodec.train import TrainConfig, joint_distortion, load_checkpoint, train
from vqcodec.zoo import load_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for i in range(6):
        noise_image(48, 40, seed=i).save(root / f"p{i}.png")
    return root


def config(folder: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(data=folder, val=folder, out=out, model=TINY, steps=12, pretrain_steps=4, batch_size=2, crop=16,
                kmeans_batches=3, restart_every=3, val_every=6, val_images=2, checkpoint_every=3, workers=0)
    base.update(kw)
    return TrainConfig(**base)


def log_steps(path: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, path.read_text().splitlines()) if "loss" in r]


def test_recipe_writes_a_usable_model(folder: Path, tmp_path: Path) -> None:
    cfg = config(folder, tmp_path / "m.safetensors")
    train(cfg)
    model = load_model(cfg.out)
    assert model.prior.counts.shape[0] == TINY.num_stages and model.prior.counts.shape[-1] == TINY.codebook_size
    assert model.prior.counts.sum() > TINY.num_stages * TINY.codebook_size  # fitted on real indices
    out = codec.decompress(codec.compress(noise_image(30, 20), model, 2), model)
    assert out.size == (30, 20)
    records = [json.loads(line) for line in cfg.log.read_text().splitlines()]
    assert log_steps(cfg.log) == list(range(1, 13))
    assert any("val_psnr" in r for r in records) and records[-1]["event"] == "done"
    assert all("perplexity" in r and "codes_in_use" in r for r in records if r.get("stages"))


def test_interrupt_then_resume_matches_an_uninterrupted_run(folder: Path, tmp_path: Path) -> None:
    straight = config(folder, tmp_path / "a" / "m.safetensors")
    reference = train(straight)

    cfg = config(folder, tmp_path / "b" / "m.safetensors")

    def interrupt_at_8(metrics: dict) -> None:
        if metrics["step"] == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=interrupt_at_8)
    assert not cfg.out.exists() and cfg.checkpoint.exists()
    resumed = train(config(folder, cfg.out, resume=cfg.checkpoint))
    for (k, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert log_steps(cfg.log) == list(range(1, 13))


def test_crash_resumes_from_the_last_periodic_checkpoint_without_log_gaps(folder: Path, tmp_path: Path) -> None:
    cfg = config(folder, tmp_path / "m.safetensors")
    saved = tmp_path / "at6.ckpt"

    def crash_at_8(metrics: dict) -> None:
        if metrics["step"] == 6:
            shutil.copy(cfg.checkpoint, saved)
        if metrics["step"] == 8:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        train(cfg, on_step=crash_at_8)
    assert log_steps(cfg.log) == list(range(1, 9))
    train(config(folder, cfg.out, resume=saved))
    assert log_steps(cfg.log) == list(range(1, 13))


def test_cli_trains_a_model_compress_can_use(folder: Path, tmp_path: Path) -> None:
    vqcodec = str(Path(sys.executable).with_name("vqcodec"))
    out = tmp_path / "cli.safetensors"
    result = subprocess.run([vqcodec, "train", "--data", str(folder), "--steps", "6", "--pretrain-steps", "2",
                             "--batch-size", "2", "--crop", "32", "--stages", "2", "--codebook-size", "16",
                             "--latent-dim", "8", "--workers", "0", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    # Off a terminal (stdout is a pipe here), progress comes as plain lines: every phase, steps, the prior's images.
    lines = result.stdout.splitlines()
    steps = [line for line in lines if line.startswith("step ")]
    assert steps and steps[-1].startswith("step 6/6") and all(k in steps[-1] for k in ("loss", "psnr", "elapsed"))
    for phase in ("pretrain", "train", "prior"):
        assert any(line.startswith(f"phase {phase}") for line in lines), result.stdout
    assert any("1 view per image (auto" in line for line in lines), result.stdout
    assert any(line.startswith("prior image 6/6") for line in lines), result.stdout
    assert lines[-1].startswith(f"wrote {out}")
    img = tmp_path / "x.png"
    noise_image(33, 17).save(img)
    result = subprocess.run([vqcodec, "compress", str(img), "--model", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([vqcodec, "decompress", str(img.with_suffix(".vqz")), "--model", str(out),
                             "-o", str(tmp_path / "y.png")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_stop_sent_to_the_whole_process_group_writes_a_checkpoint(folder: Path, tmp_path: Path) -> None:
    """`pkill -f "vqcodec train"` or `kill -- -PGID` reaches the data workers too; they ignore it, and the
    trainer checkpoints and exits 130 instead of failing on a dead worker."""
    import os
    import signal
    import time

    vqcodec = str(Path(sys.executable).with_name("vqcodec"))
    out = tmp_path / "stopped.safetensors"
    proc = subprocess.Popen([vqcodec, "train", "--data", str(folder), "--steps", "100000", "--pretrain-steps", "2",
                             "--batch-size", "2", "--crop", "32", "--stages", "2", "--codebook-size", "16",
                             "--latent-dim", "8", "--workers", "1", "--checkpoint-every", "100000", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        for line in proc.stdout:  # the joint phase: the workers have been feeding crops for a while
            if line.startswith("phase train") or time.time() > deadline:
                break
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "checkpoint written" in stderr
    assert load_checkpoint(out.with_suffix(".ckpt"))["step"] >= 2


def test_cli_refuses_an_empty_folder(tmp_path: Path) -> None:
    vqcodec = str(Path(sys.executable).with_name("vqcodec"))
    result = subprocess.run([vqcodec, "train", "--data", str(tmp_path), "--steps", "4", "--pretrain-steps", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "no images" in result.stderr and "Traceback" not in result.stderr


def test_pretraining_defaults_to_a_tenth_of_the_steps(tmp_path: Path) -> None:
    assert TrainConfig(data=tmp_path, out=tmp_path / "m.safetensors", steps=200).pretrain_steps == 20
    with pytest.raises(ValueError, match="smaller than --steps"):
        TrainConfig(data=tmp_path, out=tmp_path / "m.safetensors", steps=10, pretrain_steps=10)


def test_pca_init_makes_the_untrained_model_a_block_transform() -> None:
    """With as many latent dimensions as block values, the initial model reconstructs exactly;
    with fewer, the kept components are orthonormal and the error is what PCA leaves."""
    from dataclasses import replace

    from vqcodec.model import VQVAE
    from vqcodec.train import pca_init

    torch.manual_seed(0)
    batches = [torch.rand(2, 3, 16, 24) for _ in range(3)]
    full = VQVAE(replace(TINY, channels=(8,), latent_dim=12)).eval()
    pca_init(full, iter(batches), 3, torch.device("cpu"))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(full(x, 0)[0], x, atol=1e-5)

    reduced = VQVAE(replace(TINY, channels=(8,), latent_dim=4)).eval()
    pca_init(reduced, iter(batches), 3, torch.device("cpu"))
    basis = reduced.encoder.linear.weight[:, :, 1:3, 1:3].reshape(4, -1)
    assert torch.allclose(basis @ basis.t(), torch.eye(4), atol=1e-5)
    with torch.no_grad():
        kept = F.mse_loss(reduced(x, 0)[0], x)
        assert 0 < kept < F.mse_loss(torch.full_like(x, float(x.mean())), x)


def test_fine_tuning_starts_from_the_model_file(folder: Path, tmp_path: Path, tiny_model_path: Path) -> None:
    """--init copies weights and codebooks, skips pretraining and k-means, and refuses another architecture."""
    from dataclasses import replace

    from vqcodec.errors import DataError
    from vqcodec.model import VQVAE
    from vqcodec.train import start_from_model

    net = VQVAE(replace(TINY, name="tuned", description="fine-tuned"))
    start_from_model(net, tiny_model_path)
    for (key, a), b in zip(load_model(tiny_model_path).net.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), key
    with pytest.raises(DataError, match=r"another architecture: codebook_size 16 \(asked: 8\)$"):
        start_from_model(VQVAE(replace(TINY, codebook_size=8)), tiny_model_path)
    # what a decoder is trained for is not architecture: the full recipe (MSE) may start from `perceptual`
    start_from_model(VQVAE(replace(TINY, distortion="ms-ssim")), tiny_model_path)

    cfg = config(folder, tmp_path / "tuned.safetensors", init=tiny_model_path, pretrain_steps=None, steps=4)
    assert cfg.pretrain_steps == 0
    train(cfg)
    records = [json.loads(line) for line in cfg.log.read_text().splitlines()]
    assert records[0]["init"] == str(tiny_model_path)
    assert [r["stages"] > 0 for r in records if "loss" in r] == [True] * 4
    assert load_model(cfg.out).fingerprint != load_model(tiny_model_path).fingerprint


def test_fine_tuning_a_narrow_decoder_keeps_its_widths(folder: Path, tmp_path: Path, tiny_model_path: Path) -> None:
    """`--init` of a model with a narrower decoder needs no `--decoder-channels` (the shipped `default` has one)."""
    from dataclasses import replace

    from vqcodec.model import VQVAE
    from vqcodec.zoo import save_model

    narrow = replace(TINY, decoder_channels=(4, 8))
    start = tmp_path / "narrow.safetensors"
    save_model(VQVAE(narrow).eval(), load_model(tiny_model_path).prior, start)
    cfg = config(folder, tmp_path / "tuned.safetensors", init=start, pretrain_steps=None, steps=2)
    train(cfg)
    assert load_model(cfg.out).config.decoder_channels == (4, 8)


def test_fine_tuning_keeps_the_default_quality_and_a_second_decoder(folder: Path, tmp_path: Path,
                                                                     tiny_model_path: Path) -> None:
    """The full recipe from a model with a default quality, a second decoder and reduced qualities (the shipped
    `default` has all three) keeps them; quantizer dropout trains each decoder on its own stage counts."""
    from dataclasses import replace

    from vqcodec.model import VQVAE
    from vqcodec.zoo import save_model

    split = replace(TINY, default_quality=2, top_decoder_from=2, reduced_qualities=((2.0, 2),), full_from=2)
    start = tmp_path / "split.safetensors"
    save_model(VQVAE(split).eval(), load_model(tiny_model_path).prior, start)
    cfg = config(folder, tmp_path / "tuned.safetensors", init=start, pretrain_steps=None, steps=6)
    train(cfg)
    before, after = load_model(start), load_model(cfg.out)
    assert after.config == replace(split, name=TINY.name)
    stages = [r["stages"] for r in map(json.loads, cfg.log.read_text().splitlines()) if "loss" in r]
    for decoder, used in (("decoder", min(stages) < 2), ("top_decoder", max(stages) >= 2)):
        changed = any(not torch.equal(a, b) for a, b in zip(getattr(before.net, decoder).parameters(),
                                                             getattr(after.net, decoder).parameters()))
        assert changed == used, (decoder, stages)


def test_priced_fine_tune_picks_codes_under_the_start_models_prices(folder: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """--priced: training prices every later stage's codes with the start model's prior and weights, and the
    new prior is counted under those weights over the rate-aware rounds."""
    import numpy as np

    from tests.test_pricing import context_prior
    from vqcodec import pricing
    from vqcodec.model import VQVAE
    from vqcodec.train import RATE_PRIOR_ROUNDS
    from vqcodec.zoo import save_model

    weights = pricing.stage_weights(TINY.num_stages, [0.02])
    start = tmp_path / "priced.safetensors"
    torch.manual_seed(0)
    save_model(VQVAE(TINY).eval(), context_prior(), start, weights)

    priced_stages: list[int] = []
    made = pricing.table_penalty

    def spy(*args: object, **kw: object) -> pricing.Penalty:
        price = made(*args, **kw)

        def record(stage: int, previous: torch.Tensor | None) -> torch.Tensor | None:
            out = price(stage, previous)
            if out is not None:
                priced_stages.append(stage)
            return out
        return record

    monkeypatch.setattr(pricing, "table_penalty", spy)
    cfg = config(folder, tmp_path / "tuned.safetensors", init=start, pretrain_steps=None, steps=4, priced=True,
                 prior_views=1)
    assert cfg.prior_rounds == RATE_PRIOR_ROUNDS
    train(cfg)
    assert set(priced_stages) == set(range(1, max(priced_stages) + 1)) and priced_stages
    assert np.array_equal(load_model(cfg.out).rate_weights, weights)
    prior_event = [r for r in map(json.loads, cfg.log.read_text().splitlines()) if r.get("event") == "prior"][0]
    assert prior_event["rounds"] == RATE_PRIOR_ROUNDS


def test_priced_validation_measures_the_priced_codes(folder: Path) -> None:
    """A priced run validates the codes it trains on: with every code but a zero one priced out of reach,
    the later stages add nothing, where nearest codes do."""
    from vqcodec.data import find_images, read_rgb
    from vqcodec.model import VQVAE
    from vqcodec.train import validate

    torch.manual_seed(0)
    net = VQVAE(TINY).eval()
    for stage in net.quantizer.stages[1:]:
        stage.codebook[0] = 0.0

    def price(stage: int, previous: torch.Tensor | None) -> torch.Tensor | None:
        if previous is None:
            return None
        out = torch.full((previous.shape[0], TINY.codebook_size), 1e6)
        out[:, 0] = 0.0
        return out

    images = [read_rgb(p) for p in find_images(folder)[:2]]
    priced, nearest = validate(net, images, torch.device("cpu"), price), validate(net, images, torch.device("cpu"))
    assert len(set(priced["val_psnr"])) == 1
    assert len(set(nearest["val_psnr"])) > 1


def test_priced_training_needs_a_start_model_with_prices(folder: Path, tmp_path: Path,
                                                         tiny_model_path: Path) -> None:
    from vqcodec.errors import DataError

    with pytest.raises(ValueError, match="--priced fine-tunes a model"):
        config(folder, tmp_path / "m.safetensors", priced=True)
    with pytest.raises(ValueError, match="--priced fine-tunes a model"):
        config(folder, tmp_path / "m.safetensors", priced=True, init=tiny_model_path, decoder_only=True)
    with pytest.raises(DataError, match="needs a model with rate weights"):
        train(config(folder, tmp_path / "m.safetensors", priced=True, init=tiny_model_path, pretrain_steps=None))


def test_prior_statistics_count_every_shifted_and_mirrored_view(folder: Path) -> None:
    from vqcodec.data import read_rgb
    from vqcodec.model import VQVAE
    from vqcodec.train import index_statistics, prior_views

    net = VQVAE(TINY).eval()
    path = folder / "p0.png"
    pixels = read_rgb(path)  # 40 rows, 48 columns
    views = list(prior_views(pixels, TINY.stride))
    per_axis = TINY.stride // 2
    assert len(views) == 2 * per_axis**2
    assert torch.equal(views[0][0], torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255)
    assert torch.equal(views[per_axis**2][0], views[0][0].flip(-1))
    shifted = views[1][0]  # dx = 2: the same pixels two columns on, cut to the stride
    assert shifted.shape[-1] == (48 - 2) // TINY.stride * TINY.stride
    assert torch.equal(shifted, views[0][0][:, :, 2 : 2 + shifted.shape[-1]])

    top, pairs = index_statistics(net, [path], torch.device("cpu"))
    grids = [(v.shape[-2] // TINY.stride, v.shape[-1] // TINY.stride) for v in views]
    assert top.sum() == sum(c for _, c in grids)
    assert pairs[0].sum() == sum((r - 1) * c for r, c in grids)
    assert all(pairs[s].sum() == sum(r * c for r, c in grids) for s in range(1, TINY.num_stages))


def test_prior_views_choices_and_the_automatic_choice_follows_run_length(folder: Path, tmp_path: Path) -> None:
    from vqcodec.data import read_rgb
    from vqcodec.train import auto_prior_views, prior_view_choices, prior_views

    assert prior_view_choices(8) == (1, 2, 8, 32, 128)
    pixels = read_rgb(folder / "p0.png")
    assert [len(list(prior_views(pixels, 8, v))) for v in (1, 2, 8, 32)] == [1, 2, 8, 32]
    assert torch.equal(next(prior_views(pixels, 8, 1))[0], torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255)
    # A short run pays for one view of each image, a long one for 32 (the shipped recipe), never more unless asked.
    bsds_pixels = 200 * 481 * 321
    assert auto_prior_views(8, bsds_pixels, steps=20, batch_size=8, crop=256) == 1
    assert auto_prior_views(8, bsds_pixels, steps=200, batch_size=8, crop=256) == 2
    assert auto_prior_views(8, bsds_pixels, steps=10000, batch_size=16, crop=128) == 32
    assert auto_prior_views(8, 1, steps=10**6, batch_size=16, crop=256) == 32
    with pytest.raises(ValueError, match="--prior-views"):
        config(folder, tmp_path / "m.safetensors", prior_views=3)


def test_the_prior_fit_reports_its_progress_and_the_log_says_how_many_views(folder: Path, tmp_path: Path) -> None:
    events = []
    cfg = config(folder, tmp_path / "m.safetensors", prior_views=2)
    train(cfg, on_step=lambda m: events.append(m) if "event" in m else None)
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases == ["pretrain", "kmeans", "train", "prior"]
    prior = [e for e in events if e["event"] == "prior"]
    assert [e["image"] for e in prior] == list(range(1, 7)) and all(e["images"] == 6 for e in prior)
    assert [e for e in events if e["event"] == "phase"][-1]["views"] == 2
    records = [json.loads(line) for line in cfg.log.read_text().splitlines()]
    assert any(r.get("event") == "prior" and r["views"] == 2 and r["views_chosen"] == "given" for r in records)


def test_bfloat16_steps_train_the_networks_and_keep_the_quantizer_float32(folder: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """--precision bfloat16: the encoder and decoder passes run under bfloat16 autocast, the quantizer sees
    float32 latents and the reconstruction is float32; the run writes a float32 model that compresses."""
    from vqcodec.quantizer import ResidualVQ

    seen: list[torch.dtype] = []
    forward = ResidualVQ.forward

    def spy(self, x, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(x.dtype)
        assert not torch.is_autocast_enabled("cpu")
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(ResidualVQ, "forward", spy)
    cfg = config(folder, tmp_path / "bf16.safetensors", precision="bfloat16")
    train(cfg)
    start = json.loads(cfg.log.read_text().splitlines()[0])
    assert start["precision"] == "bfloat16"
    assert seen and set(seen) == {torch.float32}
    model = load_model(cfg.out)
    assert all(p.dtype == torch.float32 for p in model.net.parameters())
    assert codec.decompress(codec.compress(noise_image(40, 32), model, 1), model).size == (40, 32)


def test_precision_is_checked(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--precision"):
        config(folder, tmp_path / "m.safetensors", precision="float16")


def test_the_recipe_trains_for_ms_ssim_and_the_model_declares_it(tmp_path: Path) -> None:
    """`--loss ms-ssim` in the whole recipe: pretraining and joint steps follow MS-SSIM, validation logs it at
    every quality, and the model declares it (so compress refines its latents for MS-SSIM)."""
    from dataclasses import replace

    big = tmp_path / "big"
    big.mkdir()
    for seed in (0, 1):
        synthetic_image(size=(200, 184), seed=seed).save(big / f"p{seed}.png")
    cfg = config(big, tmp_path / "p.safetensors", loss="ms-ssim", crop=184, steps=4, pretrain_steps=2,
                 kmeans_batches=2, val_every=4, val_images=1)
    train(cfg)
    records = [json.loads(line) for line in cfg.log.read_text().splitlines()]
    val = [r for r in records if "val_msssim" in r][-1]
    assert len(val["val_msssim"]) == len(val["val_psnr"]) == TINY.num_stages
    assert all(0 < v <= 1 for v in val["val_msssim"])
    assert len(val["val_msssim_phases"]) == TINY.num_stages and all(0 < v <= 1 for v in val["val_msssim_phases"])
    assert all(r["loss"] >= r["mse"] for r in records if "loss" in r)  # the term's value is the MSE
    assert load_model(cfg.out).config.distortion == "ms-ssim"
    assert load_model(cfg.out).config == replace(TINY, distortion="ms-ssim")


def test_the_joint_ms_ssim_term_is_the_mse_in_value_and_log_ms_ssim_in_direction() -> None:
    """The term scales 1 - MS-SSIM to the step's MSE: its value is the MSE, its gradient MSE times that of
    log(1 - MS-SSIM) on a window at a random offset to the code grid, so the MSE recipe's learning rate and
    commitment weight keep their scale and no alignment with the grid pays."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 184, 184)
    recon = (x + 0.05 * torch.randn_like(x)).requires_grad_(True)
    mse = F.mse_loss(recon, x)
    torch.manual_seed(7)
    term = joint_distortion("ms-ssim", recon, x, mse)
    assert float(term.detach()) == pytest.approx(float(mse.detach()), rel=1e-5)
    (grad,) = torch.autograd.grad(term, recon)
    torch.manual_seed(7)
    offset = tuple(int(v) for v in torch.randint(0, grid_shift.PERIOD, (2,)))
    assert offset != (0, 0)
    ref = recon.detach().clone().requires_grad_(True)
    log_d = torch.log(1 - grid_shift.shifted_ms_ssim(ref, x, offset))
    (want,) = torch.autograd.grad(log_d, ref)
    want = float(mse.detach()) * want
    assert float(torch.linalg.vector_norm(grad - want) / torch.linalg.vector_norm(want)) < 1e-4
    assert joint_distortion("mse", recon, x, mse) is mse
    assert float(grad[..., :offset[0], :].abs().sum()) == 0 and float(grad[..., offset[0], :].abs().sum()) > 0


def test_ms_ssim_runs_refuse_crops_too_small_for_a_shifted_window(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"--crop {grid_shift.MIN_SIDE} or more"):
        config(folder, tmp_path / "m.safetensors", loss="ms-ssim", crop=176)
