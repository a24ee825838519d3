"""The benchmark suite: a `--quick` run of `vqcodec bench` on 4 Kodak crops, its cache, metrics and errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vqcodec.bench import results
from vqcodec.bench.codecs import registry, select
from vqcodec.bench.metrics import as_tensor, ms_ssim, psnr
from vqcodec.bench.rivals import nearest_setting
from vqcodec.bench.runner import QUICK_IMAGES, load_images
from vqcodec.bench.speed import large_qualities, speed_image, steps
from vqcodec.cli.main import app
from vqcodec.codec import default_quality, quality_levels
from vqcodec.data import find_images
from vqcodec.effort import default_effort
from vqcodec.errors import DataError
from vqcodec.zoo import load_model, shipped_models

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
needs_kodak = pytest.mark.skipif(not KODAK.is_dir(), reason=f"{KODAK} is not there")


def bench(out: Path, data: Path, *extra: str) -> str:
    done = CliRunner().invoke(app, ["bench", "--quick", "--data", str(data), "--out", str(out), *extra])
    assert done.exit_code == 0, done.output
    return done.output


CROP = (384, 256)
"""Size of the Kodak crops the quick run codes: a quarter of the pixels took the suite's slowest fixture from
204 to 138 s on one core (its speed and memory passes still code 768x512, the first crop resized)."""


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Kodak images `--quick` would code (the first `QUICK_IMAGES`), each cropped to `CROP` at its centre."""
    folder = tmp_path_factory.mktemp("kodak-crops")
    for path in find_images(KODAK)[:QUICK_IMAGES]:
        with Image.open(path) as im:
            left, top = (im.width - CROP[0]) // 2, (im.height - CROP[1]) // 2
            im.crop((left, top, left + CROP[0], top + CROP[1])).save(folder / path.name)
    return folder


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, crops: Path) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench")
    return out, bench(out, crops, "--threads", "1")


@pytest.fixture(scope="module")
def quick(quick_run: tuple[Path, str]) -> Path:
    return quick_run[0]


@needs_kodak
def test_progress_off_a_terminal_is_plain_lines(quick_run: tuple[Path, str]) -> None:
    """In a log file or CI the bench says how far it is in plain lines, first and last step included."""
    lines = quick_run[1].splitlines()
    total = int(next(line for line in lines if line.startswith("bench: ")).split()[1])
    steps = [line for line in lines if line.startswith("bench ")]
    assert steps[0].startswith("bench 1/") and steps[-1].startswith(f"bench {total}/{total} ")
    assert all(" elapsed " in line for line in steps) and "━" not in quick_run[1]


@needs_kodak
def test_quick_run_writes_sane_results_for_every_codec(quick: Path) -> None:
    names = select(None)
    assert len([n for n in names if n.startswith("vqcodec-")]) == len(shipped_models())
    for name in names:
        data = json.loads((quick / f"{name}.json").read_text())
        assert data["name"] == name and data["threads"] == 1 and data["description"]
        means = data["settings"]
        assert len(means) == 3 and len(data["rows"]) == 4 * 3
        bpp = [s["bpp"] for s in means]
        assert bpp == sorted(bpp) and len(set(bpp)) == 3, f"{name}: bpp must grow with quality: {bpp}"
        if not name.startswith("vqcodec-"):
            assert [s["psnr"] for s in means] == sorted(s["psnr"] for s in means)
            assert 20 < means[0]["psnr"] < means[-1]["psnr"] < 50
        for row in data["rows"]:
            assert row["bpp"] == pytest.approx(8 * row["bytes"] / (CROP[0] * CROP[1]))
            assert 0 < row["ms_ssim"] <= 1 and math.isfinite(row["psnr"])
            assert row["encode_s"] > 0 and row["decode_s"] > 0
        for s in means:
            rows = [r for r in data["rows"] if r["setting"] == s["setting"]]
            assert s["psnr"] == pytest.approx(np.mean([r["psnr"] for r in rows]))


@needs_kodak
def test_quick_run_writes_report_plots_and_speed(quick: Path, crops: Path) -> None:
    report = (quick / "report.md").read_text()
    for name in select(None):
        assert f"### {name}" in report
    for section in ("## Rate-distortion", "## BD-rate", "## Speed and memory", "## Run", "Quick smoke run"):
        assert section in report
    for plot in ("rd-psnr.png", "rd-msssim.png"):
        with Image.open(quick / plot) as im:
            assert im.format == "PNG" and im.width > 400 and im.height > 300
    for name in shipped_models():
        speed = json.loads((quick / f"speed-vqcodec-{name}.json").read_text())
        assert [(t["width"], t["height"]) for t in speed["timings"]] == [(768, 512)] * 3
        assert all(t["compress_s"] > 0 and t["decompress_s"] > 0 for t in speed["timings"])
        assert [m["operation"] for m in speed["memory"]] == ["compress", "decompress"]
        assert all(m["peak_mib"] >= m["baseline_mib"] > 50 for m in speed["memory"])
        ours = {t["quality"]: t for t in speed["timings"]}
        assert sorted((r["codec"], r["quality"]) for r in speed["rivals"]) == \
            sorted((c, q) for c in ("avif", "webp") for q in ours)
        for r in speed["rivals"]:
            assert r["encode_s"] > 0 and r["decode_s"] > 0 and 0 <= r["setting"] <= 100
            assert r["bytes"] == len(registry()[r["codec"]]().encode(speed_image(crops / "kodim01.png", 768, 512),
                                                                    r["setting"]))
    assert "Against webp on the same 768x512 image" in report and "| avif decode (ms) | ratio |" in report


def test_nearest_setting_picks_the_closest_size_by_bisection() -> None:
    sizes = {s: 100 + 7 * s + (s * s) // 10 for s in range(101)}
    calls: list[int] = []

    def encode(s: int) -> int:
        calls.append(s)
        return sizes[s]

    for target in (0, 100, 101, 555, 556, 1300, 1800, 10**6):
        calls.clear()
        setting, size = nearest_setting(encode, target)
        best = min(abs(v - target) for v in sizes.values())
        assert size == sizes[setting] and abs(size - target) == best
        assert len(set(calls)) <= 9


@needs_kodak
def test_rerun_reuses_the_cached_results(quick: Path, crops: Path) -> None:
    before = {p.name: p.read_bytes() for p in quick.glob("*.json")}
    output = bench(quick, crops, "--threads", "1")
    assert "reused" in output
    assert {p.name: p.read_bytes() for p in quick.glob("*.json")} == before


@needs_kodak
def test_a_changed_key_misses_the_cache(quick: Path) -> None:
    path = quick / "jpeg.json"
    key = json.loads(path.read_text())["key"]
    hit = results.load(path, results.CodecResult, key)
    assert hit is not None and hit.name == "jpeg"
    assert results.load(path, results.CodecResult, {**key, "threads": 2}) is None
    assert results.load(quick / "missing.json", results.CodecResult, key) is None


def test_unknown_codec_is_a_usage_error(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["bench", "--data", str(tmp_path), "--out", str(tmp_path), "--codecs", "jpeg,gif"])
    assert done.exit_code == 2
    assert "unknown codec 'gif'" in done.output


def test_codec_selection() -> None:
    models = [f"vqcodec-{n}" for n in sorted(shipped_models())]
    assert select(["webp", "vqcodec", "webp"]) == ["webp", *models]
    assert select(None) == [n for n in registry() if "-effort" not in n]
    efforts = select(["vqcodec-efforts"])
    assert efforts and all("-effort" in n for n in efforts)
    with pytest.raises(ValueError, match="unknown codec"):
        select(["png"])


def test_unusable_data_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images"):
        load_images(tmp_path)
    Image.new("RGB", (160, 300)).save(tmp_path / "small.png")
    with pytest.raises(DataError, match="too small for MS-SSIM"):
        load_images(tmp_path)


def test_psnr_and_ms_ssim_on_known_pairs() -> None:
    a = np.random.default_rng(0).integers(1, 255, (200, 240, 3), dtype=np.uint8)
    assert psnr(a, a + 1) == pytest.approx(10 * math.log10(255**2))
    assert psnr(a, a) == math.inf
    assert ms_ssim(as_tensor(a), a) == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim(as_tensor(a), 255 - a) < 0.5


def test_profile_times_every_phase(tmp_path, tiny_model_path) -> None:
    from tests.conftest import synthetic_image
    from vqcodec.bench.profile import profile

    path = tmp_path / "p.png"
    synthetic_image(size=(48, 64), seed=1).save(path)
    rows = profile(path, str(tiny_model_path), None, 1)
    names = [name for name, _ in rows]
    assert "encoder network" in names and "decompress (whole)" in names
    assert all(ms > 0 for _, ms in rows)


def test_stage_bits_match_the_streams_compress_writes(default_model, kodak_crop, tmp_path: Path) -> None:
    """The model card's per-stage table: bits in context are what the range coder spends (within its
    word padding), and the shipped context prior spends fewer than its marginal would."""
    from vqcodec import codec, container
    from vqcodec.bench import stage_bits

    path = tmp_path / "crop.png"
    kodak_crop.save(path)
    bits = stage_bits.measure(default_model, [path], 3)
    streams = container.unpack(codec.compress(path, default_model, 3)).header.stage_lengths
    for s, stored in enumerate(streams):
        assert bits.context[s] / 8 <= stored + 1 and stored <= bits.context[s] / 8 * 1.02 + 8
    assert bits.context.sum() < bits.marginal.sum() and bits.cells == 12 * 16
    assert "| all |" in stage_bits.table(bits, default_model.config.codebook_size)


def test_adaptive_bench_codes_what_compress_writes(default_model, kodak_crop, tmp_path: Path) -> None:
    """Its adaptive bytes are the streams `compress` stores (before trimming each to its last non-zero byte)."""
    from vqcodec import codec, container
    from vqcodec.bench import adaptive as adaptive_bench
    from vqcodec.entropy import adaptive

    path = tmp_path / "crop.png"
    kodak_crop.save(path)
    quality = adaptive.ADAPTIVE_FROM["mse"] + 2
    row = adaptive_bench.measure(default_model, [path], quality)
    stored = container.unpack(codec.compress(path, default_model, quality)).header.stage_lengths
    assert sum(stored) <= row.adaptive_bytes <= sum(stored) + 3 * len(stored)
    assert row.fixed_bytes > 0 and row.images == 1
    assert f"| {quality} | {row.fixed_bytes:,} |" in adaptive_bench.table([row])


def test_vqcodec_variants_are_timed_at_each_models_default_quality() -> None:
    """A model with more qualities (a longer one from `add-stages`) keeps its default: the times compared are
    at each codec's default quality, not at the middle of its list."""
    from benchmarks.report import _variants_section
    from benchmarks.results import CodecResult, SettingResult

    def result(name: str, qualities: int) -> CodecResult:
        settings = [SettingResult(setting=q, bpp=0.1 * q, psnr=25.0 + q, ms_ssim=0.9 + 0.001 * q, ms_ssim_phases=0.9,
                                  encode_s=0.01 * q, decode_s=0.02 * q) for q in range(1, qualities + 1)]
        return CodecResult(name=name, description="", setting_name="quality", threads=1, key={}, settings=settings,
                           rows=[], elapsed_s=0.0, environment={})

    lines = _variants_section([result("vqcodec-long", 9), result("vqcodec-short", 5)],
                              {"vqcodec-long": 3, "vqcodec-short": 3})
    rows = [line for line in lines if line.startswith("| vqcodec-") and " ms" not in line and "%" not in line]
    assert rows == ["| vqcodec-long | 3 | 30 | 60 | 1.00 | 1.00 |", "| vqcodec-short | 3 | 30 | 60 | 1.00 | 1.00 |"]
    no_defaults = [line for line in _variants_section([result("vqcodec-long", 9), result("vqcodec-short", 5)], {})
                   if line.startswith("| vqcodec-") and "%" not in line]
    assert no_defaults[-2:] == ["| vqcodec-long | 5 | 50 | 100 | 1.00 | 1.00 |",
                                "| vqcodec-short | 3 | 30 | 60 | 0.60 | 0.60 |"]


def test_large_sizes_time_the_qualities_that_stand_for_the_rest() -> None:
    """The 12-megapixel speed points are the lowest, the default, each step of the default effort and the top."""
    model = load_model("default")
    levels = quality_levels(model)
    large = large_qualities(model)
    assert large[0] == 1 and large[-1] == len(levels) and default_quality(model) in large
    for q in range(2, len(levels) + 1):
        if default_effort(levels[q - 1].stages) != default_effort(levels[q - 2].stages):
            assert q in large
    assert len(large) < len(levels) / 4
    assert steps([(768, 512), (4000, 3000)], range(1, len(levels) + 1), large) == len(levels) + len(large) + 2
