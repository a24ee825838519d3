"""Turning whatever Pillow opens into the 8-bit RGB (+ alpha) the model codes, and back.

Policy (documented in the README):
- EXIF orientation is applied, so the stored image is the one a viewer shows.
- 1-bit, grayscale and float images are coded as grayscale (mode L).
- Deep images (modes I;16*, I and F) are mapped linearly to 8 bits, with a
  `PrecisionWarning` naming the file, its mode and the range used: samples that fit
  0..65535 are on the 16-bit scale (Pillow's scale for 16-bit PNG, PGM and TIFF);
  floats within [0, 1] or [0, 255] on that scale; anything else (32-bit integers,
  negative values) by its own minimum..maximum. Non-finite floats are refused.
- Of a file with several frames (animated GIF, multi-page TIFF) the first frame is
  coded, with a `FrameWarning`.
- Palette images become RGB, or RGBA when the palette has transparency.
- Alpha (RGBA, LA) is kept losslessly beside the lossy colour channels.
- Anything else Pillow can convert (CMYK, YCbCr, ...) is coded as RGB.
"""

from __future__ import annotations

import functools
import io
import numbers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vqcodec.errors import ArgumentError, ImageError, VqcodecWarning

MAX_INPUT_PIXELS = 100_000_000
"""Largest image `compress` accepts by default (width x height); pass `max_pixels` to change it."""


class PrecisionWarning(VqcodecWarning):
    """An input with more than 8 bits per sample was reduced to 8 bits (see `deep_range`)."""


class FrameWarning(VqcodecWarning):
    """An input with several frames (an animation, a multi-page file) was coded from its first frame."""


@dataclass(frozen=True)
class PreparedImage:
    """8-bit RGB pixels (H, W, 3), the alpha plane (H, W) or None, and the mode to restore."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    mode: str


ImageSource = Image.Image | str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO
"""What `compress` takes: a PIL image, a path, the bytes of an image file, or a binary file object."""


@functools.cache
def readable_suffixes() -> frozenset[str]:
    """File suffixes (lower case) of every format Pillow can open, except `.vqz`, which is already compressed."""
    return frozenset(suffix for suffix, fmt in Image.registered_extensions().items()
                     if fmt in Image.OPEN and suffix != ".vqz")


def describe(source: ImageSource) -> str:
    """How messages name an input: its path or file name when it has one."""
    if isinstance(source, Image.Image):
        return str(getattr(source, "filename", "") or "image")
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "image bytes"
    return str(getattr(source, "name", "") or "image file")


def check_max_pixels(max_pixels: int) -> int:
    """`max_pixels` validated: a positive integer."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Integral) or max_pixels < 1:
        raise ArgumentError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    return int(max_pixels)


def open_image(source: ImageSource, max_pixels: int = MAX_INPUT_PIXELS) -> Image.Image:
    """Open an image (or pass a PIL image through), checking its size before decoding any pixel.

    Like `PIL.Image.open`, it takes a path, a binary file object, or (unlike it) the bytes
    of an image file. A `.vqz` file is refused: it is already compressed.
    """
    max_pixels = check_max_pixels(max_pixels)
    name = describe(source)
    if isinstance(source, Image.Image):
        im = source
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            fp: Path | BinaryIO = io.BytesIO(source)
        elif isinstance(source, (str, os.PathLike)):
            fp = Path(source)
        elif hasattr(source, "read") and not isinstance(source, io.TextIOBase):
            fp = source
        else:
            raise ArgumentError("image must be a PIL image, a path, bytes or a binary file object, "
                                f"got {type(source).__name__}")
        try:
            im = Image.open(fp)
        except FileNotFoundError:
            raise ImageError(f"{name}: no such file") from None
        except IsADirectoryError:
            raise ImageError(f"{name}: is a folder") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise ImageError(f"{name}: not an image Pillow can read ({exc})") from None
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{name}: {exc}") from None
    w, h = im.size
    problem = None
    if im.format == "VQZ":
        problem = "already a .vqz file (decompress it first to re-encode it)"
    elif w * h > max_pixels:
        problem = f"image is {w}x{h} = {w * h} pixels, over the limit of {max_pixels} (see max_pixels)"
    elif w < 1 or h < 1:
        problem = f"image size {w}x{h} is empty"
    if problem is None:
        return im
    if im is not source:
        with im:  # closes the file Pillow opened for it
            pass
    raise ImageError(f"{name}: {problem}")


def load_image(source: ImageSource, max_pixels: int = MAX_INPUT_PIXELS) -> PreparedImage:
    """`open_image` then `prepare`, closing any file the image was opened from (never the caller's)."""
    im = open_image(source, max_pixels)
    if im is source:
        return prepare(im, describe(source))
    with im:
        return prepare(im, describe(source))


SIXTEEN_BIT = 65535


def deep_range(mode: str, values: np.ndarray) -> tuple[float, float]:
    """The range of a deep image's samples that becomes 0..255 (the rule in the module doc).

    Pillow opens 16-bit files (PNG, PGM at any maxval, TIFF) as I;16* or I with samples on
    the 0..65535 scale, so that scale is kept when the samples fit it: a dark 16-bit image
    stays dark. Floats in [0, 1] or [0, 255] are read on those scales. Anything else (32-bit
    values, negative numbers) has no scale to go by, so its own minimum..maximum is used.
    """
    lo, hi = float(values.min()), float(values.max())
    if mode == "F":
        if lo >= 0 and hi <= 1:
            return 0.0, 1.0
        if lo >= 0 and hi <= 255:
            return 0.0, 255.0
        return lo, hi
    if lo >= 0 and hi <= SIXTEEN_BIT:
        return 0.0, float(SIXTEEN_BIT)
    return lo, hi


def _to_8bit(im: Image.Image, name: str) -> Image.Image:
    """An I, I;16* or F image mapped linearly from `deep_range` to 8 bits, with a `PrecisionWarning`."""
    values = np.asarray(im).astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageError(f"{name}: mode {im.mode} image has samples that are not finite (NaN or infinity)")
    lo, hi = deep_range(im.mode, values)
    warnings.warn(f"{name}: mode {im.mode} image reduced to 8 bits per sample ({lo:g}..{hi:g} mapped to 0..255)",
                  PrecisionWarning, stacklevel=2)
    scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def prepare(im: Image.Image, name: str = "image") -> PreparedImage:
    """Normalise an opened image (see the module policy); decodes the pixels. `name` is for messages."""
    try:
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            warnings.warn(f"{name}: has {frames} frames; only the first frame is kept", FrameWarning, stacklevel=2)
        im = ImageOps.exif_transpose(im)
        im.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"{name}: cannot decode image ({exc})") from None
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("I", "F") or mode.startswith("I;16"):
        im = _to_8bit(im, name)
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("La", "RGBa"):
        im = im.convert(mode.upper())
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")
    mode = im.mode
    alpha = np.asarray(im.getchannel("A")).copy() if mode in ("LA", "RGBA") else None
    rgb = np.asarray(im.convert("RGB")).copy()
    return PreparedImage(rgb=rgb, alpha=alpha, mode=mode)


def assemble(rgb: np.ndarray, alpha: np.ndarray | None, mode: str) -> Image.Image:
    """The decoded image in its original mode: L and LA from the mean of the channels."""
    im = Image.fromarray(rgb, "RGB")
    if mode in ("L", "LA"):
        gray = np.rint(rgb.astype(np.float32).mean(axis=2)).astype(np.uint8)
        im = Image.fromarray(gray, "L")
    if alpha is not None:
        im.putalpha(Image.fromarray(alpha, "L"))
    return im
