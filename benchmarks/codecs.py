"""The codecs under test: a small registry of encode/decode pairs with their settings.

Every codec lists its settings from lowest to highest quality, so bitrate grows along the list.
The Pillow settings are those of the reference numbers (`../shared/BENCHMARKS.md`), JPEG 2000
in the irreversible (9/7 wavelet) mode with the colour transform on. vqcodec runs at every quality of every shipped model.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version
from typing import Any

from PIL import Image, features

from vqcodec import codec as vq
from vqcodec import container, ladder
from vqcodec.effort import DEFAULT_EFFORTS, EFFORT_BEAMS, check_effort, describe
from vqcodec.entropy import adaptive
from vqcodec.latent_refinement import describe_default as describe_refinement, schedule
from vqcodec.zoo import load_model, shipped_models


@dataclass(frozen=True)
class Codec:
    """A codec: how to encode an RGB image at one setting to file bytes, and decode them back.

    `identity` names what the results depend on besides settings and images (library versions, the
    encoder options of every setting, the model fingerprint); it goes into the cache key, so it must
    survive a round trip through JSON unchanged.
    """

    name: str
    description: str
    setting_name: str
    settings: tuple[int, ...]
    encode: Callable[[Image.Image, int], bytes]
    decode: Callable[[bytes], Image.Image]
    identity: dict[str, Any] = field(default_factory=dict)
    default_setting: int | None = None
    """The setting a user gets without choosing one (vqcodec: the model's default quality); None: no default."""

    def quick_settings(self) -> tuple[int, ...]:
        """Three settings for a smoke test: the lowest, the middle and the highest quality."""
        s = self.settings
        return tuple(dict.fromkeys((s[0], s[len(s) // 2], s[-1])))


def _pillow(name: str, description: str, fmt: str, library: str, setting_name: str, settings: tuple[int, ...],
            options: Callable[[int], dict[str, Any]]) -> Codec:
    def encode(image: Image.Image, setting: int) -> bytes:
        buf = io.BytesIO()
        image.save(buf, format=fmt, **options(setting))
        return buf.getvalue()

    def decode(data: bytes) -> Image.Image:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")

    identity = {"pillow": version("pillow"), library: str(features.version(library)),
                "options": {str(s): options(s) for s in settings}}
    return Codec(name, description, setting_name, settings, encode, decode, identity)


def jpeg() -> Codec:
    """libjpeg-turbo through Pillow: `quality=q, optimize=True`, default 4:2:0 chroma subsampling."""
    return _pillow("jpeg", "JPEG (libjpeg-turbo), Pillow quality=q, optimize=True, 4:2:0", "JPEG", "jpg", "quality",
                   (2, 5, 10, 20, 30, 40, 50, 60, 75, 85, 95),
                   lambda q: {"quality": q, "optimize": True})


def webp() -> Codec:
    """libwebp (lossy) through Pillow: `quality=q, method=6` (slowest, best compression)."""
    return _pillow("webp", "WebP (libwebp, lossy), Pillow quality=q, method=6", "WEBP", "webp", "quality",
                   (0, 5, 10, 20, 30, 40, 50, 60, 75, 85, 95),
                   lambda q: {"quality": q, "method": 6})


def avif(threads: int) -> Codec:
    """libavif through Pillow: `quality=q, speed=6`, default subsampling, encoding with `threads` threads."""
    return _pillow("avif", f"AVIF (libavif), Pillow quality=q, speed=6, max_threads={threads}", "AVIF", "avif",
                   "quality", (5, 10, 20, 30, 40, 50, 60, 75, 85),
                   lambda q: {"quality": q, "speed": 6, "max_threads": threads})


def jpeg2000() -> Codec:
    """OpenJPEG through Pillow, one quality layer at compression ratio r (24/r bpp), 9/7 wavelet; a .jp2 file.

    `mct=1` turns on the colour transform (YCbCr), as OpenJPEG's own encoder does for RGB; Pillow's
    default leaves it off, which costs 2-4 dB at equal rate on Kodak.
    """
    return _pillow("jpeg2000", "JPEG 2000 (OpenJPEG), Pillow quality_mode='rates', quality_layers=[r], "
                   "irreversible=True, mct=1, .jp2", "JPEG2000", "jpg_2000", "rate",
                   (400, 200, 100, 60, 40, 24, 16, 12),
                   lambda r: {"quality_mode": "rates", "quality_layers": [r], "irreversible": True, "mct": 1})


def vqcodec_model(model: str, label: str | None = None, effort: int | None = None) -> Codec:
    """A vqcodec model (a shipped name or a file) at every quality; the bytes are the whole `.vqz` file.

    The codec is named `vqcodec-LABEL` (LABEL defaults to the model's name), with `-effortN` when a fixed
    encoder effort is asked for instead of compress's default by quality.
    """
    loaded = load_model(model)
    level = check_effort(effort)

    def encode(image: Image.Image, quality: int) -> bytes:
        return vq.compress(image, loaded, quality, effort=level)

    def decode(data: bytes) -> Image.Image:
        return vq.decompress(data, loaded).convert("RGB")

    fp = loaded.fingerprint.hex()
    distortion = loaded.config.distortion
    refinement = schedule(distortion)
    name = f"vqcodec-{label or loaded.name}" + ("" if effort is None else f"-effort{level}")
    description = (f"vqcodec model '{loaded.name}' ({fp[:16]}): {ladder.describe(loaded)}; "
                   f"encoder {describe(level, distortion)}; "
                   f"latents refined for {distortion} {describe_refinement(distortion)}; "
                   f"stages coded adaptively in {adaptive.describe(distortion)}; "
                   f"{loaded.precision} inference")
    identity = {"vqcodec": version("vqcodec"), "torch": version("torch"), "model_fingerprint": fp,
                "precision": loaded.precision,
                "effort": [list(pair) for pair in DEFAULT_EFFORTS[distortion]] if level is None else level,
                "refinement": [list(pair) for pair in refinement.steps], "refine_lr": refinement.lr,
                "vqz_format": container.VERSION, "adaptive": [adaptive.ADAPTIVE_FROM[distortion], adaptive.STRENGTH,
                                                               list(adaptive.PASS_LEVELS), adaptive.STAGE0_ROWS]}
    qualities = tuple(range(1, len(vq.quality_levels(loaded)) + 1))
    return Codec(name, description, "quality", qualities, encode, decode, identity, vq.default_quality(loaded))


def registry(threads: int = 1, model_files: dict[str, str] | None = None) -> dict[str, Callable[[], Codec]]:
    """Every codec by name, built on demand: vqcodec-NAME for each shipped model and each of `model_files`
    (label to path), vqcodec-NAME-effortN for the shipped models at every fixed encoder effort, then Pillow's.

    `threads` is the AVIF encoder's thread count (vqcodec's is torch's, set by the caller).
    """
    found: dict[str, Callable[[], Codec]] = {
        f"vqcodec-{name}": partial(vqcodec_model, name) for name in sorted(shipped_models())
    }
    for label, path in (model_files or {}).items():
        found[f"vqcodec-{label}"] = partial(vqcodec_model, path, label)
    for name in sorted(shipped_models()):
        for effort in range(len(EFFORT_BEAMS)):
            found[f"vqcodec-{name}-effort{effort}"] = partial(vqcodec_model, name, None, effort)
    found.update(jpeg=jpeg, webp=webp, jpeg2000=jpeg2000, avif=partial(avif, threads))
    return found


def is_effort_variant(name: str) -> bool:
    """Whether a codec name is a shipped model at a fixed effort (run only when named)."""
    return name.startswith("vqcodec-") and "-effort" in name


def select(names: list[str] | None, model_files: dict[str, str] | None = None) -> list[str]:
    """Codec names to run: all but the effort variants when `names` is None; `vqcodec` stands for every
    shipped model and model file at the default effort, `vqcodec-efforts` for every effort variant.

    Raises ValueError naming the known codecs when a name is unknown.
    """
    known = list(registry(model_files=model_files))
    plain = [k for k in known if k.startswith("vqcodec-") and not is_effort_variant(k)]
    groups = {"vqcodec": plain, "vqcodec-efforts": [k for k in known if is_effort_variant(k)]}
    if names is None:
        return [k for k in known if not is_effort_variant(k)]
    chosen: list[str] = []
    for name in names:
        if name not in known and name not in groups:
            raise ValueError(f"unknown codec '{name}' (known: vqcodec, vqcodec-efforts, {', '.join(known)})")
        chosen += [n for n in groups.get(name, [name]) if n not in chosen]
    if not chosen:
        raise ValueError("no codec selected (no vqcodec model is installed)")
    return chosen
