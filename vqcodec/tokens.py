"""Index grids as discrete tokens, saved to `.npz` for generative models, and decoded back to images.

`tokenize` encodes images to the same index grids `compress` would entropy-code:
one integer grid per residual stage, shape (quality, grid_h, grid_w), codes in
0..K-1 where K is the model's codebook size. Given `.vqz` files it reads their
grids instead (entropy decoding only: no pixels decoded, nothing re-encoded),
which equal the grids of the images they were compressed from. `detokenize` decodes a grid back to
the image `decompress` gives for a `.vqz` file of the same image and quality,
pixel for pixel.

The `.npz` file (read with `numpy.load`, no pickle needed) holds:

    model          str      name of the model that made the tokens
    fingerprint    str      the model's SHA-256 fingerprint, hex
    codebook_size  int      K
    quality        int      stages per grid
    names          str[N]   file name of every image
    sizes          int[N,2] width, height of every image
    modes          str[N]   image mode to restore (L, LA, RGB, RGBA)
    tokens_<i>     uint[Q,h,w]  the grids of image i (smallest unsigned type that holds K-1)
    alpha_<i>      uint8[H,W]   the alpha plane of image i, when it has one (kept verbatim)
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vqcodec import codec, container
from vqcodec.batch import is_vqz
from vqcodec.container import MODE_CODES, check_limits
from vqcodec.errors import ArgumentError, TokensError, VqzError
from vqcodec.images import MAX_INPUT_PIXELS, assemble, load_image
from vqcodec.safe_io import write_atomic
from vqcodec.text import printable
from vqcodec.zoo import CodecModel, ModelLike, as_model, identify

_META_KEYS = ("model", "fingerprint", "codebook_size", "quality", "names", "sizes", "modes")


@dataclass(frozen=True)
class ImageTokens:
    """One image as tokens: its index grids (quality, grid_h, grid_w) and what is needed to rebuild it."""

    name: str
    grids: np.ndarray
    width: int
    height: int
    mode: str
    alpha: np.ndarray | None = None


@dataclass(frozen=True)
class TokenSet:
    """Tokens of several images, all made by one model at one quality."""

    model_name: str
    fingerprint: str
    codebook_size: int
    quality: int
    images: tuple[ImageTokens, ...]


def _from_vqz(path: Path, model: CodecModel, quality: int, max_pixels: int) -> ImageTokens:
    """The first `quality` grids of a .vqz file, read by entropy decoding alone; the file's model must be `model`."""
    data = codec.read_file(path)
    try:
        f, _, grids = codec.decompress_indices(data, model, quality, max_pixels)
    except VqzError as exc:
        raise VqzError(f"{path}: {exc}") from None
    if grids.shape[0] < quality:
        raise VqzError(f"{path}: truncated file, holds {grids.shape[0]} complete stages of the {quality} asked")
    h = f.header
    if h.reduced:
        raise VqzError(f"{path}: coded at a reduced size ({h.coded_width}x{h.coded_height} for {h.width}x{h.height}); "
                       "tokens are the grids of the image itself")
    alpha = codec.decode_alpha(f)
    return ImageTokens(path.name, grids, h.width, h.height, h.mode, alpha)


def _is_vqz(source: object) -> bool:
    """Whether a `tokenize` source is a path that `batch.is_vqz` takes for a .vqz file (not an image)."""
    return isinstance(source, (str, os.PathLike)) and is_vqz(Path(source))


def vqz_quality(model: ModelLike, paths: Sequence[str | os.PathLike[str]]) -> int:
    """The quality that keeps every stage all these .vqz files announce: the fewest stages any header
    states (headers only, so N shard jobs given the same file list agree without reading the files)."""
    m = as_model(model)
    stages = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                stages.append(container.read_header(f.read(container.MAX_HEADER)).stages)
        except OSError as exc:
            raise VqzError(f"{path}: cannot read ({exc.strerror})") from None
        except VqzError as exc:
            raise VqzError(f"{path}: {exc}") from None
    fewest = min(stages)
    for q, level in enumerate(codec.quality_levels(m), start=1):
        if level.shrink == 1 and level.stages >= fewest:
            return q
    raise VqzError(f"{paths[0]}: the files hold more stages than model '{m.name}' has")


def tokenize(images: Sequence[str | os.PathLike[str] | Image.Image], model: ModelLike = None,
             quality: int | None = None, max_pixels: int = MAX_INPUT_PIXELS) -> TokenSet:
    """Index grids of images (paths or PIL images) with `model` at `quality`, as `compress` codes them.

    Paths ending in `.vqz` are read, not encoded: the first stages that `quality` keeps (the file
    must hold that many, written by `model`). The set's `quality` is that stage count: qualities
    above the model's stage count keep every stage (`codec.quality_levels`). Without a quality,
    a set of `.vqz` files only keeps every stage their headers all announce (`vqz_quality`);
    with images among them, `compress`'s default quality.
    """
    m = as_model(model)
    if quality is None and images and all(map(_is_vqz, images)):
        quality = vqz_quality(m, images)
    q = codec.check_quality(m, quality)
    level = codec.quality_levels(m)[q - 1]
    if level.shrink != 1:
        raise ArgumentError(f"quality {q} of model '{m.name}' codes a shrunk image; tokens are the grids of the "
                            f"image itself: choose a full-size quality ({codec.full_size_qualities(m)})")
    stages = level.stages
    dtype = np.min_scalar_type(m.config.codebook_size - 1)
    items = []
    for i, source in enumerate(images):
        if _is_vqz(source):
            t = _from_vqz(Path(source), m, stages, max_pixels)
            items.append(ImageTokens(t.name, t.grids.astype(dtype), t.width, t.height, t.mode, t.alpha))
            continue
        prepared = load_image(source, max_pixels)
        height, width = prepared.rgb.shape[:2]
        grids = codec.encode_indices(m, prepared.rgb, q).astype(dtype)
        name = Path(source).name if isinstance(source, (str, os.PathLike)) else f"image{i}"
        items.append(ImageTokens(name, grids, width, height, prepared.mode, prepared.alpha))
    return TokenSet(m.name, m.fingerprint.hex(), m.config.codebook_size, stages, tuple(items))


def save_tokens(tokens: TokenSet, path: str | os.PathLike[str], overwrite: bool = False,
                inputs: Sequence[Path] = ()) -> None:
    """Write a tokens `.npz` file atomically (refusing to replace a file unless `overwrite`)."""
    arrays: dict[str, np.ndarray] = {
        "model": np.array(tokens.model_name),
        "fingerprint": np.array(tokens.fingerprint),
        "codebook_size": np.array(tokens.codebook_size),
        "quality": np.array(tokens.quality),
        "names": np.array([t.name for t in tokens.images], dtype=str),
        "sizes": np.array([(t.width, t.height) for t in tokens.images], dtype=np.int64).reshape(-1, 2),
        "modes": np.array([t.mode for t in tokens.images], dtype=str),
    }
    for i, t in enumerate(tokens.images):
        arrays[f"tokens_{i}"] = t.grids
        if t.alpha is not None:
            arrays[f"alpha_{i}"] = t.alpha
    write_atomic(path, lambda f: np.savez_compressed(f, **arrays), overwrite=overwrite, inputs=inputs)


def load_tokens(path: str | os.PathLike[str], max_pixels: int = MAX_INPUT_PIXELS) -> TokenSet:
    """Read and check a tokens file written by `save_tokens`; raises `TokensError` saying what is wrong.

    Images over `max_pixels` are refused from the metadata, before their grids and alpha planes are read.
    """
    try:
        raw = Path(path).read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            missing = [key for key in _META_KEYS if key not in npz.files]
            if missing:
                raise TokensError(f"{path}: not a tokens file (missing {', '.join(missing)})")
            arrays = {key: npz[key] for key in _META_KEYS}
            sizes = np.asarray(arrays["sizes"])
            if sizes.ndim == 2 and sizes.shape[1:] == (2,) and sizes.dtype.kind in "iu":
                for width, height in sizes.tolist():
                    _check_pixels(path, width, height, max_pixels)
            arrays.update({key: npz[key] for key in npz.files if key not in arrays})
    except FileNotFoundError:
        raise TokensError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise TokensError(f"{path}: not a tokens .npz file ({exc})") from None
    try:
        quality = int(arrays["quality"])
        codebook_size = int(arrays["codebook_size"])
        names = [str(n) for n in arrays["names"]]
        sizes = arrays["sizes"].astype(np.int64).reshape(len(names), 2)
        modes = [str(m) for m in arrays["modes"]]
    except (TypeError, ValueError) as exc:
        raise TokensError(f"{path}: bad metadata ({exc})") from None
    if len(modes) != len(names) or any(mode not in MODE_CODES for mode in modes):
        raise TokensError(f"{path}: bad image modes {modes}")
    images = []
    for i, (name, (width, height), mode) in enumerate(zip(names, sizes.tolist(), modes)):
        grids = arrays.get(f"tokens_{i}")
        if grids is None or grids.ndim != 3 or grids.shape[0] != quality or grids.dtype.kind not in "iu":
            raise TokensError(f"{path}: tokens_{i} must be an integer array of shape ({quality}, rows, columns)")
        try:
            check_limits(width, height)
        except VqzError as exc:
            raise TokensError(f"{path}: image {i}: {exc}") from None
        if grids.shape[1] * grids.shape[2] > width * height:
            raise TokensError(f"{path}: tokens_{i} has more cells than image {i} has pixels")
        if grids.min() < 0 or grids.max() >= codebook_size:
            raise TokensError(f"{path}: tokens_{i} holds codes outside 0..{codebook_size - 1}")
        alpha = arrays.get(f"alpha_{i}")
        if (alpha is not None) != (mode in ("LA", "RGBA")):
            has = "has" if alpha is not None else "lacks"
            raise TokensError(f"{path}: image {i} is mode {mode} but {has} an alpha plane")
        if alpha is not None and (alpha.dtype != np.uint8 or alpha.shape != (height, width)):
            raise TokensError(f"{path}: alpha_{i} must be uint8 of shape ({height}, {width})")
        images.append(ImageTokens(name, grids, width, height, mode, alpha))
    return TokenSet(printable(arrays["model"]), printable(arrays["fingerprint"]), codebook_size, quality, tuple(images))


def _check_pixels(source: object, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise TokensError(f"{source}: image is {width}x{height} = {width * height} pixels, over the limit of "
                          f"{max_pixels} (pass max_pixels=, or --max-pixels on the command line, to decode it)")


def model_for_tokens(tokens: TokenSet, model: ModelLike = None) -> CodecModel:
    """The model that made the tokens: the given one, or the shipped model they name; checked."""
    try:
        fingerprint = bytes.fromhex(tokens.fingerprint)
    except ValueError:
        raise TokensError(f"bad model fingerprint '{tokens.fingerprint}'") from None
    m = identify(tokens.model_name, fingerprint, model, "tokens were made", TokensError)
    if tokens.quality > m.config.num_stages:
        raise TokensError(f"tokens hold {tokens.quality} stages, the model has only {m.config.num_stages}")
    return m


def detokenize(tokens: ImageTokens, model: CodecModel, max_pixels: int = MAX_INPUT_PIXELS) -> Image.Image:
    """Decode one image's grids with the model that made them (see `model_for_tokens`).

    An image over `max_pixels` (default 100 megapixels, as `compress`) is refused before decoding.
    """
    _check_pixels(printable(tokens.name), tokens.width, tokens.height, max_pixels)
    if tuple(tokens.grids.shape[1:]) != codec.grid_shape(model, tokens.width, tokens.height):
        raise TokensError(
            f"{printable(tokens.name)}: index grid {tokens.grids.shape[1]}x{tokens.grids.shape[2]} "
            f"does not fit a {tokens.width}x{tokens.height} image"
        )
    rgb = codec.decode_indices(model, tokens.grids, tokens.width, tokens.height)
    return assemble(rgb, tokens.alpha, tokens.mode)
