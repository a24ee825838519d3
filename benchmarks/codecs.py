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
from vqcodec import container
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


def vqcodec_model(model_name: str) -> Codec:
    """A shipped vqcodec model at every quality; the bytes are the whole `.vqz` file, header included."""
    model = load_model(model_name)

    def encode(image: Image.Image, quality: int) -> bytes:
        return vq.compress(image, model, quality)

    def decode(data: bytes) -> Image.Image:
        return vq.decompress(data, model).convert("RGB")

    fp = model.fingerprint.hex()
    description = f"vqcodec model '{model.name}' ({fp[:16]}), quality = residual stages kept"
    identity = {"vqcodec": version("vqcodec"), "torch": version("torch"), "model_fingerprint": fp,
                "vqz_format": container.VERSION}
    return Codec(f"vqcodec-{model_name}", description, "quality", tuple(range(1, model.config.num_stages + 1)),
                 encode, decode, identity)


def registry(threads: int = 1) -> dict[str, Callable[[], Codec]]:
    """Every codec by name, built on demand: vqcodec-NAME for each shipped model, then Pillow's.

    `threads` is the AVIF encoder's thread count (vqcodec's is torch's, set by the caller).
    """
    found: dict[str, Callable[[], Codec]] = {
        f"vqcodec-{name}": partial(vqcodec_model, name) for name in sorted(shipped_models())
    }
    found.update(jpeg=jpeg, webp=webp, jpeg2000=jpeg2000, avif=partial(avif, threads))
    return found


def select(names: list[str] | None) -> list[str]:
    """Codec names to run: all when `names` is None; `vqcodec` stands for every shipped model.

    Raises ValueError naming the known codecs when a name is unknown.
    """
    known = list(registry())
    if names is None:
        return known
    chosen: list[str] = []
    for name in names:
        expanded = [k for k in known if k.startswith("vqcodec-")] if name == "vqcodec" else [name]
        if name not in known and name != "vqcodec":
            raise ValueError(f"unknown codec '{name}' (known: vqcodec, {', '.join(known)})")
        chosen += [n for n in expanded if n not in chosen]
    if not chosen:
        raise ValueError("no codec selected (no vqcodec model is installed)")
    return chosen
