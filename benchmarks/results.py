"""Benchmark results as dataclasses, written to and read back from JSON, with cache lookup by key.

Every result file carries the `key` it was computed for (codec or model identity, settings, images
and their SHA-256, thread count); a rerun reuses a file only when its key matches exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Any, TypeVar

from vqcodec.safe_io import write_atomic

SCHEMA = 2
"""Version of the codec result files; part of their cache keys, so a format change invalidates old files
(2: `ms_ssim_phases`)."""
SPEED_SCHEMA = 1
"""Version of the speed result files, in their cache keys likewise."""


@dataclass(frozen=True)
class ImageResult:
    """One image at one setting: file size, rate, quality and encode/decode wall time."""

    image: str
    setting: int
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    ms_ssim_phases: float
    encode_s: float
    decode_s: float


@dataclass(frozen=True)
class SettingResult:
    """Means over the images at one setting (PSNR: mean of per-image PSNR)."""

    setting: int
    bpp: float
    psnr: float
    ms_ssim: float
    ms_ssim_phases: float
    encode_s: float
    decode_s: float

    @classmethod
    def mean_of(cls, setting: int, rows: list[ImageResult]) -> "SettingResult":
        """The per-setting summary of some per-image rows."""
        return cls(setting=setting, bpp=fmean(r.bpp for r in rows), psnr=fmean(r.psnr for r in rows),
                   ms_ssim=fmean(r.ms_ssim for r in rows), ms_ssim_phases=fmean(r.ms_ssim_phases for r in rows),
                   encode_s=fmean(r.encode_s for r in rows),
                   decode_s=fmean(r.decode_s for r in rows))


@dataclass(frozen=True)
class CodecResult:
    """Everything measured for one codec: `NAME.json` in the output folder."""

    name: str
    description: str
    setting_name: str
    threads: int
    key: dict[str, Any]
    settings: list[SettingResult]
    rows: list[ImageResult]
    elapsed_s: float
    environment: dict[str, Any]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "CodecResult":
        return cls(**{**raw, "settings": [SettingResult(**s) for s in raw["settings"]],
                      "rows": [ImageResult(**r) for r in raw["rows"]]})


@dataclass(frozen=True)
class Timing:
    """Median compress and decompress wall time of one image size at one quality."""

    width: int
    height: int
    quality: int
    bytes: int
    bpp: float
    compress_s: float
    decompress_s: float
    repeats: int


@dataclass(frozen=True)
class RivalTiming:
    """Median encode and decode wall time of another codec on the speed image, at its setting whose file is
    nearest in bytes to vqcodec's at `quality` (`benchmarks.rivals`)."""

    codec: str
    width: int
    height: int
    quality: int
    setting: int
    bytes: int
    bpp: float
    encode_s: float
    decode_s: float
    repeats: int


@dataclass(frozen=True)
class Memory:
    """Peak resident memory of a fresh process doing one compress or decompress, and before it started."""

    width: int
    height: int
    quality: int
    operation: str
    baseline_mib: float
    peak_mib: float


@dataclass(frozen=True)
class SpeedResult:
    """Speed and memory of one vqcodec model: `speed-vqcodec-NAME.json` in the output folder."""

    name: str
    threads: int
    key: dict[str, Any]
    timings: list[Timing]
    rivals: list[RivalTiming]
    memory: list[Memory]
    elapsed_s: float
    environment: dict[str, Any]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "SpeedResult":
        return cls(**{**raw, "timings": [Timing(**t) for t in raw["timings"]],
                      "rivals": [RivalTiming(**r) for r in raw["rivals"]],
                      "memory": [Memory(**m) for m in raw["memory"]]})


Result = TypeVar("Result", CodecResult, SpeedResult)


def save(result: CodecResult | SpeedResult, path: Path) -> None:
    """Write a result as indented JSON, atomically, replacing an older file (a lossless PSNR is `Infinity`)."""
    text = json.dumps(asdict(result), indent=1) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()), overwrite=True)


def load(path: Path, kind: type[Result], key: dict[str, Any]) -> Result | None:
    """The result stored at `path` if it exists, parses and was computed for exactly `key`; else None."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("key") != key:
        return None
    try:
        return kind.from_dict(raw)
    except (TypeError, KeyError):
        return None
