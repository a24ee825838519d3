"""The human-readable outputs: `report.md` (tables, BD-rates, speed, machine) and the two RD plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from vqcodec.safe_io import write_atomic

from .bdrate import BDRate, bd_rate
from .metrics import ms_ssim_db
from .results import CodecResult, SettingResult, SpeedResult

ANCHORS = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}
"""The codecs every other codec's BD-rate is measured against, and their names in the report."""

MIN_BD_POINTS = 4
"""Fewest points per curve for a BD-rate (as in the reference numbers); `--quick` curves have 3."""

PLOT_MAX_BPP = 2.0
"""The RD plots show rates up to this many bits per pixel, where the codecs compete."""


@dataclass(frozen=True)
class RunSummary:
    """What the report says about the run itself."""

    data: Path
    images: list[str]
    quick: bool
    threads: int
    environment: dict[str, Any]
    elapsed_s: float
    cached: list[str]
    defaults: dict[str, int] = field(default_factory=dict)
    """Each codec's default setting by name, where it has one (the vqcodec models' default qualities)."""


def _curve(result: CodecResult, metric: str) -> tuple[list[float], list[float]]:
    rates = [s.bpp for s in result.settings]
    if metric == "psnr":
        return rates, [s.psnr for s in result.settings]
    if metric == "ms_ssim_phases":
        return rates, [ms_ssim_db(s.ms_ssim_phases) for s in result.settings]
    return rates, [ms_ssim_db(s.ms_ssim) for s in result.settings]


def bd_rates(results: Sequence[CodecResult], anchor: str, metric: str) -> dict[str, BDRate | str]:
    """BD-rate of every other codec against `anchor` in "psnr", "ms_ssim" or "ms_ssim_phases" (dB); a reason
    where none exists."""
    by_name = {r.name: r for r in results}
    out: dict[str, BDRate | str] = {}
    for r in results:
        if r.name == anchor:
            continue
        if anchor not in by_name:
            out[r.name] = f"{anchor} not run"
            continue
        try:
            out[r.name] = bd_rate(*_curve(by_name[anchor], metric), *_curve(r, metric), min_points=MIN_BD_POINTS)
        except ValueError as exc:
            out[r.name] = str(exc)
    return out


def _cell(value: BDRate | str) -> str:
    if isinstance(value, str):
        return f"n/a ({value})"
    return f"{value.percent:+.1f}% ({value.low:.2f}–{value.high:.2f} dB)"


def _codec_table(r: CodecResult) -> list[str]:
    lines = [f"### {r.name}", "", r.description, "",
             f"| {r.setting_name} | bpp | PSNR-RGB (dB) | MS-SSIM | MS-SSIM (dB) | over phases (dB) | encode (ms) "
             "| decode (ms) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in r.settings:
        lines.append(f"| {s.setting} | {s.bpp:.4f} | {s.psnr:.2f} | {s.ms_ssim:.4f} | {ms_ssim_db(s.ms_ssim):.2f} "
                     f"| {ms_ssim_db(s.ms_ssim_phases):.2f} | {1000 * s.encode_s:.1f} | {1000 * s.decode_s:.1f} |")
    return lines + [""]


def _bd_section(results: Sequence[CodecResult]) -> list[str]:
    lines = ["## BD-rate", "",
             "Bjontegaard delta rate: log-rate interpolated piecewise-cubically (PCHIP) against quality, averaged "
             "over the quality range both curves cover (given in brackets); negative means fewer bits than the "
             f"anchor for the same quality. MS-SSIM is taken in dB, -10·log10(1 − MS-SSIM). Each curve needs at "
             f"least {MIN_BD_POINTS} points.", "",
             "| codec | " + " | ".join(f"vs {label}, {m}" for label in ANCHORS.values() for m in ("PSNR", "MS-SSIM"))
             + " |", "|---" * (1 + 2 * len(ANCHORS)) + "|"]
    tables = {(a, m): bd_rates(results, a, m) for a in ANCHORS for m in ("psnr", "ms_ssim")}
    for r in results:
        cells = [_cell(tables[a, m][r.name]) if r.name in tables[a, m] else "anchor"
                 for a in ANCHORS for m in ("psnr", "ms_ssim")]
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    lines += ["", "### BD-rate in MS-SSIM over the phases of its pooling", "",
              "MS-SSIM gives 95.5% of its weight to scales made by averaging 2x2 blocks, which on the whole image "
              "start where a learned codec's code grid starts, so errors that those block means cancel go almost "
              "unseen. Here it is the mean over four windows of even sides starting 0 or 1 pixel in, down and "
              "across (`vqcodec.grid_shift.phase_ms_ssim`; the codec tables' \"over phases\" column): no "
              "alignment of a codec's errors with the pooling can raise it.", "",
              "| codec | " + " | ".join(f"vs {label}" for label in ANCHORS.values()) + " |",
              "|---" * (1 + len(ANCHORS)) + "|"]
    phases = {a: bd_rates(results, a, "ms_ssim_phases") for a in ANCHORS}
    for r in results:
        cells = [_cell(phases[a][r.name]) if r.name in phases[a] else "anchor" for a in ANCHORS]
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _variants_section(results: Sequence[CodecResult], defaults: dict[str, int]) -> list[str]:
    """vqcodec's codecs against each other: BD-rate (PSNR), and mean times at each one's default quality."""
    vq = [r for r in results if r.name.startswith("vqcodec-")]
    if len(vq) < 2:
        return []
    lines = ["## vqcodec against vqcodec", "",
             "Every vqcodec codec of this run (shipped models, encoder effort levels, model files given with "
             "`--model-file`) against each other: BD-rate in PSNR (row against column), then the mean encode "
             "and decode time per Kodak image at each codec's default quality (the middle one where none is known), "
             "and their ratio to the first column's codec's.", "",
             "| codec | " + " | ".join(f"vs {a.name}" for a in vq) + " |", "|---" * (1 + len(vq)) + "|"]
    for r in vq:
        cells = []
        for a in vq:
            if a is r:
                cells.append("—")
                continue
            try:
                cells.append(_cell(bd_rate(*_curve(a, "psnr"), *_curve(r, "psnr"), min_points=MIN_BD_POINTS)))
            except ValueError as exc:
                cells.append(_cell(str(exc)))
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    def at_default(r: CodecResult) -> SettingResult:
        by_setting = {s.setting: s for s in r.settings}
        return by_setting.get(defaults.get(r.name), r.settings[len(r.settings) // 2])

    b = at_default(vq[0])
    lines += ["", f"| codec | quality | encode (ms) | decode (ms) | encode / {vq[0].name} | decode / {vq[0].name} |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in vq:
        s = at_default(r)
        lines.append(f"| {r.name} | {s.setting} | {1000 * s.encode_s:.0f} | {1000 * s.decode_s:.0f} "
                     f"| {s.encode_s / b.encode_s:.2f} | {s.decode_s / b.decode_s:.2f} |")
    return lines + [""]


def _speed_section(speed: Sequence[SpeedResult]) -> list[str]:
    lines = ["## Speed and memory of vqcodec", ""]
    if not speed:
        return lines + ["No vqcodec model was benchmarked.", ""]
    lines += ["Compress and decompress wall time per quality with the model loaded once, after a warm-up "
              "(median of up to 3 runs): every quality at the first size, and at larger sizes the lowest, the "
              "default, the first quality of each default encoder effort level and the top. Peak resident memory "
              "(RSS) of a fresh process during one compress or decompress at the top quality; the baseline is its "
              "resident memory just before (torch imported, model and input loaded), so peak − baseline is what the "
              "operation itself needs.", ""]
    for s in speed:
        lines += [f"### {s.name} (torch threads: {s.threads}; {s.environment['date']})", "",
                  "| size | quality | bytes | bpp | compress (ms) | decompress (ms) | runs |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {t.width}x{t.height} | {t.quality} | {t.bytes} | {t.bpp:.4f} | {1000 * t.compress_s:.0f} "
                  f"| {1000 * t.decompress_s:.0f} | {t.repeats} |" for t in s.timings]
        lines += _rival_tables(s)
        lines += ["", "| size | quality | operation | peak RSS (MiB) | baseline (MiB) | peak − baseline (MiB) |",
                  "|---|---:|---|---:|---:|---:|"]
        lines += [f"| {m.width}x{m.height} | {m.quality} | {m.operation} | {m.peak_mib:.0f} | {m.baseline_mib:.0f} "
                  f"| {m.peak_mib - m.baseline_mib:.0f} |" for m in s.memory]
        lines.append("")
    return lines


def _rival_tables(s: SpeedResult) -> list[str]:
    """Per rival codec: its times at vqcodec's file sizes beside vqcodec's, and the ratios (vqcodec / rival)."""
    ours = {(t.width, t.height, t.quality): t for t in s.timings}
    lines: list[str] = []
    for name in dict.fromkeys(r.codec for r in s.rivals):
        rows = [r for r in s.rivals if r.codec == name]
        size = f"{rows[0].width}x{rows[0].height}"
        lines += ["", f"Against {name} on the same {size} image, at its quality setting whose file is nearest in "
                  f"bytes to vqcodec's, timed right after vqcodec in the same process; ratio = vqcodec's time / "
                  f"{name}'s (above 1: vqcodec is slower).", "",
                  f"| quality | bytes | {name} setting | {name} bytes | compress (ms) | {name} encode (ms) | ratio "
                  f"| decompress (ms) | {name} decode (ms) | ratio |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            t = ours[(r.width, r.height, r.quality)]
            lines.append(f"| {r.quality} | {t.bytes} | {r.setting} | {r.bytes} | {1000 * t.compress_s:.0f} "
                         f"| {1000 * r.encode_s:.0f} | {t.compress_s / r.encode_s:.1f} | {1000 * t.decompress_s:.0f} "
                         f"| {1000 * r.decode_s:.1f} | {t.decompress_s / r.decode_s:.0f} |")
    return lines


def _run_section(results: Sequence[CodecResult], speed: Sequence[SpeedResult], summary: RunSummary) -> list[str]:
    env = summary.environment
    computed = [(r.name, r.elapsed_s, r.environment["date"]) for r in results]
    computed += [(f"speed-{s.name}", s.elapsed_s, s.environment["date"]) for s in speed]
    total = sum(t for _, t, _ in computed)
    lines = ["## Run", "",
             f"This invocation took {summary.elapsed_s:.0f} s; computing every result below from scratch took "
             f"{total:.0f} s in all ({', '.join(summary.cached) or 'nothing'} reused from the cache).", "",
             "| result | computing time (s) | computed (UTC) |", "|---|---:|---|"]
    lines += [f"| {name} | {seconds:.1f} | {date} |" for name, seconds, date in computed]
    load = env.get("load_average")
    lines += ["", f"- Date (UTC): {env['date']}",
              f"- Machine: {env['cpu']}" + (f" ({env['cpu_capability']})" if env.get("cpu_capability") else "")
              + f", {env['cpus_usable']} usable cores, {env['memory_gib']} GiB memory, load average at start {load}",
              f"- System: {env['platform']}, Python {env['python']}",
              f"- Threads: {summary.threads} for vqcodec (torch) and the AVIF encoder; the other Pillow codecs "
              "and AVIF decoding run at Pillow's defaults",
              "- Packages: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
              "- Pillow's libraries: " + ", ".join(f"{k} {v}" for k, v in env["pillow_libraries"].items()), ""]
    return lines


def write_report(path: Path, results: Sequence[CodecResult], speed: Sequence[SpeedResult], summary: RunSummary) -> Path:
    """Write `report.md`: method, per-codec tables, BD-rates, plots, speed and memory, run and machine."""
    kind = "quick smoke run (not for publication)" if summary.quick else "full run"
    lines = ["# vqcodec benchmark", "",
             f"{kind.capitalize()}: {len(summary.images)} images from `{summary.data}` "
             f"({', '.join(summary.images)}), {summary.environment['date']}.", "",
             "Rate: bits per pixel, 8 × file bytes / pixels, from the bytes each codec writes (for vqcodec the "
             "whole .vqz file, header included). Quality: PSNR on 8-bit RGB (peak 255; mean of per-image PSNR) and "
             "MS-SSIM on RGB (pytorch-msssim, data range 255; mean over images), of the whole image and over the "
             "four phases of its 2x2 pooling (see the BD-rate section). Times: wall time per image, mean "
             "over images, after a warm-up.", "",
             "## Rate-distortion", "", "![PSNR against bpp](rd-psnr.png)", "", "![MS-SSIM against bpp](rd-msssim.png)",
             ""]
    for r in results:
        lines += _codec_table(r)
    lines += (_bd_section(results) + _variants_section(results, summary.defaults) + _speed_section(speed)
              + _run_section(results, speed, summary))
    text = "\n".join(lines)
    write_atomic(path, lambda f: f.write(text.encode()), overwrite=True)
    return path


def _plot(path: Path, results: Sequence[CodecResult], metric: str, ylabel: str) -> Path:
    fig = Figure(figsize=(8, 6), layout="constrained")
    ax = fig.add_subplot()
    shown: list[float] = []
    for r in results:
        rates, quality = _curve(r, metric)
        ax.plot(rates, quality, marker="o", markersize=3, linewidth=2.2 if r.name.startswith("vqcodec") else 1.2,
                label=r.name)
        shown += [q for b, q in zip(rates, quality) if b <= PLOT_MAX_BPP]
    ax.set_xlim(0, PLOT_MAX_BPP)
    if shown:
        pad = 0.03 * (max(shown) - min(shown) or 1.0)
        ax.set_ylim(min(shown) - pad, max(shown) + pad)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=120)
    return path


def plot_rd(out: Path, results: Sequence[CodecResult]) -> list[Path]:
    """`rd-psnr.png` and `rd-msssim.png`: every codec's mean rate-distortion curve on one plot each."""
    return [_plot(out / "rd-psnr.png", results, "psnr", "PSNR-RGB (dB)"),
            _plot(out / "rd-msssim.png", results, "ms_ssim", "MS-SSIM (dB) = -10 log10(1 - MS-SSIM)")]
