"""`vqcodec.bench.versus`: this release against another, here against itself (the same Python as baseline)."""

from __future__ import annotations

import sys

import vqcodec
from tests.conftest import synthetic_image
from vqcodec import codec
from vqcodec.bench import versus


def test_speed_rounds_interleave_both_versions_and_report_ratios(tmp_path) -> None:  # noqa: ANN001
    image = tmp_path / "photo.png"
    synthetic_image(size=(96, 64), seed=1).save(image)
    result = versus.compare(sys.executable, image, threads=1, rounds=2, repeats=1)
    for name in ("this", "baseline"):
        assert len(result[name]["compress_s"]) == len(result[name]["decompress_s"]) == 2
        assert result[name]["size"] == [96, 64] and result[name]["bytes"] > 0
    assert result["this"]["bytes"] == result["baseline"]["bytes"]
    text = versus.report(result)
    assert "| compress (ms), median |" in text and "| decompress (ms), median |" in text
    assert "model default" in text


def test_speed_of_another_shipped_model(tmp_path) -> None:  # noqa: ANN001
    image = tmp_path / "photo.png"
    synthetic_image(size=(96, 64), seed=1).save(image)
    result = versus.compare(sys.executable, image, threads=1, rounds=1, repeats=1, model="perceptual")
    perceptual = vqcodec.load_model("perceptual")
    assert result["this"]["fingerprint"] == perceptual.fingerprint.hex()
    assert result["this"]["quality"] == result["baseline"]["quality"] == codec.default_quality(perceptual) == 7
    assert "model perceptual" in versus.report(result)


def test_rate_distortion_of_two_versions_and_their_bd_rate(tmp_path, capsys) -> None:  # noqa: ANN001
    for seed in (2, 3):
        synthetic_image(size=(80, 56), seed=seed).save(tmp_path / f"im{seed}.png")
    versus.main(["--baseline", sys.executable, "--rd", str(tmp_path), "--qualities", "3,5,8,12", "--limit", "1"])
    text = capsys.readouterr().out
    assert text.startswith("1 images, 1 thread(s)")
    assert text.count("+0.00% | +0.0000 dB |") == 4  # the same code on both sides
    assert "BD-rate (PSNR) of vqcodec" in text and ": +0.000% (" in text
