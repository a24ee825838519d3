"""compress / decompress: images to `.vqz` bytes and back with a VQ-VAE model.

The image is padded (edge replication) to a multiple of the encoder's stride,
encoded to one index grid per residual stage, and every grid is range-coded under
the model's prior (from 6 stages with tables that adapt to the image, `entropy.adaptive`). Each quality keeps a number of stages; a model with rate weights has
higher qualities that keep every stage and price bits less, and a model may code its lowest
qualities on the image shrunk, enlarged again after decoding (`quality_levels`). Decoding can
stop at any prefix of the stored stages.
"""

from __future__ import annotations

import math
import numbers
import warnings
import zlib
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vqcodec import code_search, container, latent_refinement, pricing, rate
from vqcodec.container import VqzFile, VqzHeader
from vqcodec.data import to_tensor
from vqcodec.effort import EFFORT_BEAMS, check_effort, effort_for
from vqcodec.entropy import ContextPrior, adaptive
from vqcodec.errors import ArgumentError, VqzError
from vqcodec.fileinfo import FileInfo, VqzSource, info, read_file, read_vqz  # noqa: F401 (part of this module's API)
from vqcodec.images import MAX_INPUT_PIXELS, ImageSource, PreparedImage, assemble, describe, load_image
from vqcodec.model import ModelConfig
from vqcodec.registry import find_shipped
from vqcodec.text import printable
from vqcodec.zoo import CodecModel, ModelLike, Prior, as_model


class Level(NamedTuple):
    """One `compress` quality: the stages it keeps, the scale of the model's rate weights, and the factor
    by which the image's width and height shrink before it is coded (1: full size)."""

    stages: int
    scale: float
    shrink: float = 1.0


def quality_levels(model: CodecModel) -> tuple[Level, ...]:
    """`compress`'s qualities, from 1, lowest first (`ladder` of the model's config and rate weights)."""
    return ladder(model.config, bool(np.any(model.rate_weights)))


def ladder(config: ModelConfig, priced: bool) -> tuple[Level, ...]:
    """The qualities a model of this config has, lowest first; `priced`: it has rate weights.

    First the reduced qualities (`ModelConfig.reduced_qualities`): the image shrunk, coded, and
    enlarged again when decoded, for the lowest rates. Then the full-size qualities of `full_from`..S
    stages at the model's rate weights, so under greedy coding (effort 0) a file's k-stage prefix is the
    file of the quality that keeps k stages. A model with rate weights has further qualities above S: all
    S stages at lighter weights (`pricing.TOP_SCALES`), more bits for a more faithful image.
    """
    reduced = tuple(Level(k, 1.0, float(f)) for f, k in config.reduced_qualities)
    return reduced + _coding_levels(config, priced)[config.full_from - 1 :]


def coding_levels(model: CodecModel) -> tuple[Level, ...]:
    """Every (stages, rate-weight scale) a file's decoder meets, at full size: 1..S stages (the qualities and
    the prefixes of files) and the lighter-priced top (`quality_levels`). Decoder fine-tunes train on these."""
    return _coding_levels(model.config, bool(np.any(model.rate_weights)))


def _coding_levels(config: ModelConfig, priced: bool) -> tuple[Level, ...]:
    stages = config.num_stages
    top = pricing.TOP_SCALES if priced else ()
    return tuple(Level(k, 1.0) for k in range(1, stages + 1)) + tuple(Level(stages, scale) for scale in top)


def coded_size(width: int, height: int, shrink: float) -> tuple[int, int]:
    """Width and height an image of this size is coded at by a quality that shrinks it by `shrink`."""
    if shrink == 1:
        return width, height
    return max(1, round(width / shrink)), max(1, round(height / shrink))


RESIZE_DOWN = Image.Resampling.LANCZOS
"""Filter that shrinks an image for a reduced quality (Pillow's Lanczos, antialiased over the whole factor)."""
RESIZE_UP = Image.Resampling.BICUBIC
"""Filter that enlarges a decoded reduced image to its size. On the first 16 BSDS500 val images shrunk by
1.5 and 2 and coded with 1-5 stages, Lanczos gave 0.00-0.05 dB less than bicubic."""


def _resize(rgb: np.ndarray, width: int, height: int, resample: Image.Resampling) -> np.ndarray:
    """8-bit RGB pixels resized with Pillow (the same bytes on every machine with the same Pillow)."""
    return np.asarray(Image.fromarray(rgb).resize((width, height), resample))


def default_quality(model: CodecModel) -> int:
    """The quality used when none is given: the model's `default_quality` if it names one, else the middle
    of its qualities (5 of 10 for a model of 8 stages with rate weights)."""
    return model.config.default_quality or (len(quality_levels(model)) + 1) // 2


def _integer(value: object) -> int | None:
    """`value` as an int if it is one (numpy integers too); None for floats, strings and bools,
    so that 2.5 is refused rather than truncated."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def check_quality(model: CodecModel, quality: int | None) -> int:
    """`quality` validated against the model (None gives the default)."""
    if quality is None:
        return default_quality(model)
    top = len(quality_levels(model))
    q = _integer(quality)
    if q is None or not 1 <= q <= top:
        raise ArgumentError(f"quality must be an integer 1..{top} for model '{model.name}', got {quality!r}")
    return q


def check_target_bpp(target_bpp: float) -> float:
    """`target_bpp` validated: a finite positive number."""
    if isinstance(target_bpp, bool) or not isinstance(target_bpp, numbers.Real) or not 0 < target_bpp < math.inf:
        raise ArgumentError(f"target_bpp must be a positive number of bits per pixel, got {target_bpp!r}")
    return float(target_bpp)


def grid_shape(model: CodecModel, width: int, height: int) -> tuple[int, int]:
    """Rows and columns of the index grid for an image of this size."""
    s = model.config.stride
    return -(-height // s), -(-width // s)


def _pixels(rgb: np.ndarray, stride: int) -> torch.Tensor:
    """8-bit pixels (H, W, 3) as a (1, 3, H', W') uint8 tensor, edges repeated up to multiples of `stride` (as
    `_to_tensor` pads), channels-last: a copy, as torch takes only writable arrays."""
    pad_h, pad_w = -rgb.shape[0] % stride, -rgb.shape[1] % stride
    rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge") if pad_h or pad_w else np.array(rgb)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


def _to_tensor(rgb: np.ndarray, stride: int) -> torch.Tensor:
    x = to_tensor(rgb)[None]
    h, w = rgb.shape[:2]
    pad_h, pad_w = -h % stride, -w % stride
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x


TILE_CELLS = 128
"""Side of the square tiles large images are processed in, in grid cells (1024 pixels at stride 8);
every tile holds at most TILE_CELLS**2 cells."""
HALO_CELLS = 8
"""Grid cells of context added on every side of a tile; wider than the networks' receptive fields."""
QUANTIZE_ROWS = 1024
"""Grid cells quantized at once (divided by the beam width at effort > 0): the (cells x codes) score
matrices, 2 MB at 512 codes, stay in cache between the passes over them, and are small enough to be reused
rather than mapped afresh by the allocator. The codes do not depend on it. Compressing 8 Kodak images at
quality 5 in one process (one thread, model load included), 1,024 against 4,096 cells: 0.96 times the wall
time (median of 10 pairs, spread 0.83-1.20) and two thirds of the system time. Quantizing kodim19 alone
(768x512, quality 5, effort 1, interleaved) took 111 against 155 ms, but the same comparison repeated
phase by phase (`python -m vqcodec.bench.profile`) showed no gain: the figure moves with the allocator's
state."""
SEARCH_ROWS = 4096
"""Grid cells the bfloat16 code search (`code_search`) scores at once (divided by the beam width): its matrix
products pay a fixed cost per call that 1,024 cells did not amortise."""


def _tiles(grid_h: int, grid_w: int, tile: int) -> list[tuple[slice, slice, slice, slice]]:
    """For each tile: the cells it owns and the larger window (with halo) it is computed from.

    A tile holds at most tile * tile cells: a square on large grids, a strip across the whole
    short side of a thin one (a 1-row grid is one call of up to tile * tile cells, not one per
    `tile` columns), so the number of network calls, and their overhead, follows the cell count.
    """
    area = tile * tile
    tile_h = max(1, min(grid_h, max(tile, area // max(1, grid_w))))
    tile_w = max(1, min(grid_w, max(tile, area // tile_h)))
    out = []
    for r0 in range(0, grid_h, tile_h):
        for c0 in range(0, grid_w, tile_w):
            r1, c1 = min(grid_h, r0 + tile_h), min(grid_w, c0 + tile_w)
            hr0, hc0 = max(0, r0 - HALO_CELLS), max(0, c0 - HALO_CELLS)
            hr1, hc1 = min(grid_h, r1 + HALO_CELLS), min(grid_w, c1 + HALO_CELLS)
            out.append((slice(r0, r1), slice(c0, c1), slice(hr0, hr1), slice(hc0, hc1)))
    return out


@torch.inference_mode()
def embed(model: CodecModel, rgb: np.ndarray, tile: int = TILE_CELLS) -> torch.Tensor:
    """Continuous encoder output (grid_h * grid_w, D) for 8-bit RGB pixels (H, W, 3), tile by tile.

    Each tile is encoded with a halo of context that is then dropped, so memory stays
    bounded on large images while the result matches whole-image encoding.
    """
    s = model.config.stride
    grid_h, grid_w = grid_shape(model, rgb.shape[1], rgb.shape[0])
    out = torch.empty(model.config.latent_dim, grid_h, grid_w)
    for rows, cols, hrows, hcols in _tiles(grid_h, grid_w, tile):
        pixels = rgb[hrows.start * s : hrows.stop * s, hcols.start * s : hcols.stop * s]
        z = model.embed(_pixels(pixels, s))[0]
        out[:, rows, cols] = z[:, rows.start - hrows.start : rows.stop - hrows.start,
                               cols.start - hcols.start : cols.stop - hcols.start]
    return out.permute(1, 2, 0).reshape(grid_h * grid_w, -1)


REFINE_WIDTH = 32
"""The finest-scale decoder width that refines latents in whole `TILE_CELLS` tiles. The backward pass keeps every
activation of a tile, so a decoder w > 32 channels wide at its finest scale refines in tiles of about 32/w the
cells (sides scaled by the square root): in 128-cell tiles, `perceptual` (64 channels) took a 6000x4000 compress
at quality 10 to 2.2 GB of peak memory (1.86 GB above the process's baseline), where `default`'s second decoder
(32) stays at 1.2 GB above it. Images of up to 90x90 cells (720x720 pixels, Kodak's 768x512 too) are one tile
either way."""


def refine(model: CodecModel, rgb: np.ndarray, latents: torch.Tensor, stages: int, steps: int,
           tile: int = TILE_CELLS) -> torch.Tensor:
    """`embed`'s latents (grid_h * grid_w, D) of 8-bit RGB pixels (H, W, 3) after `steps` steps of latent
    refinement (`vqcodec.latent_refinement`, for the model's `distortion`) against the decoder of `stages`
    stages, tile by tile: each tile's latents are refined with their halo and the image's pixels under it,
    and the halo is dropped."""
    if steps == 0:
        return latents
    s = model.config.stride
    grid_h, grid_w = grid_shape(model, rgb.shape[1], rgb.shape[0])
    grid = latents.reshape(grid_h, grid_w, -1).permute(2, 0, 1)
    out = grid.clone()
    decoder = model.net.decoder_for(stages)
    cfg = model.config
    finest = (cfg.top_decoder_widths if decoder is not model.net.decoder else cfg.decoder_widths)[0]
    tile = min(tile, max(1, int(tile * math.sqrt(REFINE_WIDTH / finest))))
    own_pixels = latent_refinement.schedule(cfg.distortion).own_pixels
    for rows, cols, hrows, hcols in _tiles(grid_h, grid_w, tile):
        pixels = rgb[hrows.start * s : hrows.stop * s, hcols.start * s : hcols.stop * s]
        size = pixels.shape[:2] if own_pixels else None
        z = latent_refinement.refine(decoder, _to_tensor(pixels, s), grid[None, :, hrows, hcols], steps,
                                     model.config.distortion, model.precision, size)[0]
        out[:, rows, cols] = z[:, rows.start - hrows.start : rows.stop - hrows.start,
                               cols.start - hcols.start : cols.stop - hcols.start]
    return out.permute(1, 2, 0).reshape(grid_h * grid_w, -1)


@torch.inference_mode()
def quantize(model: CodecModel, latents: torch.Tensor, grid: tuple[int, int], quality: int,
             rate_weight: float = 0.0, effort: int | None = None) -> np.ndarray:
    """Index grids (stages, grid_h, grid_w) from latents at a `compress` quality (its stage count and
    scale of the model's rate weights, `quality_levels`); `rate_weight` > 0 trades distortion for bits.

    Each code is scored by squared error + lambda * its bits in its context under the prior
    (`vqcodec.pricing`), with lambda per stage = the model's own rate weight x the quality's scale +
    `rate_weight`: `rate_weight` lowers the rate smoothly between the qualities without retraining.
    At `effort` > 0 the stages are searched together (beam search, `EFFORT_BEAMS`) instead of
    one after the other; None is the quality's default (`vqcodec.effort.default_effort`).
    """
    stages, scale, _ = quality_levels(model)[quality - 1]
    weights = model.rate_weights[:stages] * scale + rate_weight
    beam = EFFORT_BEAMS[effort_for(effort, stages, model.config.distortion)]
    if model.precision == "bfloat16":
        tables = code_search.stage_tables(model.net.quantizer, model.prior, weights, model.search_columns)
        chunks = [code_search.search(tables, chunk, beam) for chunk in latents.split(max(1, SEARCH_ROWS // beam))]
        return torch.cat(chunks, dim=1).reshape(stages, *grid).numpy()
    price = pricing.penalty(model.prior, weights)
    chunks = [model.net.quantizer.encode(chunk, stages, price, beam)
              for chunk in latents.split(max(1, QUANTIZE_ROWS // beam))]
    return torch.cat(chunks, dim=1).reshape(stages, *grid).numpy()


def encode_indices(model: CodecModel, rgb: np.ndarray, quality: int, tile: int = TILE_CELLS,
                   effort: int | None = None, refine_steps: int | None = None) -> np.ndarray:
    """Index grids (stages, grid_h, grid_w) for 8-bit RGB pixels (H, W, 3), as `compress` codes them at
    `quality` (its stage count and rate weights, `quality_levels`), `effort` and `refine_steps` (defaults:
    `compress`'s). A reduced quality (one that shrinks the image first) is refused: its grids are not the
    image's."""
    q = check_quality(model, quality)
    level = check_effort(effort)
    stages, _, shrink = quality_levels(model)[q - 1]
    if shrink != 1:
        raise ArgumentError(f"quality {q} of model '{model.name}' codes a shrunk image; index grids of the image "
                            f"itself need a full-size quality ({full_size_qualities(model)})")
    grid = grid_shape(model, rgb.shape[1], rgb.shape[0])
    steps = latent_refinement.steps_for(refine_steps, stages, model.config.distortion)
    return quantize(model, refine(model, rgb, embed(model, rgb, tile), stages, steps, tile), grid, q, effort=level)


def full_size_qualities(model: CodecModel) -> str:
    """The model's full-size qualities as people read them, e.g. "3..28"."""
    levels = quality_levels(model)
    first = next(q for q, level in enumerate(levels, start=1) if level.shrink == 1)
    return f"{first}..{len(levels)}"


@torch.inference_mode()
def decode_indices(model: CodecModel, indices: np.ndarray, width: int, height: int,
                   tile: int = TILE_CELLS) -> np.ndarray:
    """8-bit RGB pixels (height, width, 3) from index grids (stages, grid_h, grid_w), tile by tile."""
    s = model.config.stride
    out = np.empty((height, width, 3), dtype=np.uint8)
    for rows, cols, hrows, hcols in _tiles(indices.shape[1], indices.shape[2], tile):
        grids = torch.from_numpy(np.ascontiguousarray(indices[:, hrows, hcols], dtype=np.int64))[None]
        y = model.decode(grids)[0].mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).numpy()
        top, left = (rows.start - hrows.start) * s, (cols.start - hcols.start) * s
        r0, c0 = rows.start * s, cols.start * s
        r1, c1 = min(height, rows.stop * s), min(width, cols.stop * s)
        out[r0:r1, c0:c1] = y[top : top + r1 - r0, left : left + c1 - c0]
    return out


def entropy_encode(model: CodecModel, indices: np.ndarray) -> tuple[tuple[bytes, ...], bool]:
    """One range-coded stream per stage of index grids (stages, rows, columns) under the model's prior, and
    whether they were coded adaptively (`entropy.adaptive.used_for`: for an MSE model files of 6 stages or more,
    for an MS-SSIM model every file)."""
    stages, rows, cols = indices.shape
    if adaptive.used_for(model.prior, stages, rows * cols, model.config.distortion):
        return adaptive.encode_grids(model.prior, indices), True
    return model.prior.encode_grids(indices), False


def entropy_decode(prior: Prior, streams: tuple[bytes, ...], rows: int, cols: int,
                   adaptively: bool) -> np.ndarray:
    """Index grids (len(streams), rows, columns) from `entropy_encode` streams, coded adaptively or not, under
    the prior that coded them (`CodecModel.prior_for` the file's model id)."""
    if adaptively:
        return adaptive.decode_grids(prior, streams, rows, cols)
    return prior.decode_grids(streams, rows, cols)


def _pack(model: CodecModel, prepared: PreparedImage, indices: np.ndarray, size: tuple[int, int]) -> bytes:
    """Entropy-code index grids of the image coded at `size` (width, height) and wrap them, with the alpha
    plane (always at the image's own size), in a .vqz container."""
    streams, coded_adaptively = entropy_encode(model, indices)
    alpha = zlib.compress(prepared.alpha.tobytes(), 9) if prepared.alpha is not None else b""
    height, width = prepared.rgb.shape[:2]
    header = container.header_for(prepared.mode, width, height, model.fingerprint, streams, alpha,
                                  reduced=None if size == (width, height) else size, adaptive=coded_adaptively)
    return container.pack(VqzFile(header, streams, alpha))


def compress(image: ImageSource, model: ModelLike = None, quality: int | None = None,
             max_pixels: int = MAX_INPUT_PIXELS, target_bpp: float | None = None, effort: int | None = None,
             refine_steps: int | None = None) -> bytes:
    """Compress an image to `.vqz` bytes.

    `image` is a PIL image, a path, a binary file object (as `PIL.Image.open` takes)
    or the bytes of an image file.
    `model` is a loaded `CodecModel`, a shipped model's name or a model file path
    (None: the default model). `quality` runs from 1 to `len(quality_levels(model))`.
    `target_bpp` instead searches quality and rate-aware quantization for a file of
    that many bits per pixel (header included), within 2% when the model can reach it;
    otherwise the nearest reachable size, with a `RateWarning` that says what was reached.
    `effort` (0 to 4; 0 is greedy) is how hard the encoder searches for codes (`EFFORT_BEAMS`): higher is
    slower and gives a better image for its size; decoding is the same at every level. None (the default)
    searches harder the more stages a quality codes (`vqcodec.effort.DEFAULT_EFFORTS`).
    `refine_steps` (0 to `latent_refinement.MAX_STEPS`) moves the encoder's latents that many gradient steps
    towards what the decoder reproduces the image from best (for the model's `distortion`) before they are
    quantized (`vqcodec.latent_refinement`); None (the default) follows the model's schedule
    (`latent_refinement.SCHEDULES`: an MSE model's qualities of 16 stages and more, an MS-SSIM model's of
    6 and more). Decoding is the same either way.
    The same input and settings always give the same bytes on one machine. Where the CPU computes bfloat16
    natively the networks and the code search run in it (`inference.precision`), and the codes can differ from
    a float32 machine's in near ties; `VQCODEC_PRECISION=float32` gives the same bytes everywhere.
    """
    m = as_model(model)
    level = check_effort(effort)
    refine_steps = latent_refinement.check_steps(refine_steps)
    if target_bpp is None:
        quality = check_quality(m, quality)
    elif quality is not None:
        raise ArgumentError("give either quality or target_bpp, not both")
    else:
        target_bpp = check_target_bpp(target_bpp)
    prepared = load_image(image, max_pixels)
    height, width = prepared.rgb.shape[:2]
    levels = quality_levels(m)
    coded: dict[float, tuple[tuple[int, int], np.ndarray, torch.Tensor]] = {}
    refined: dict[tuple[float, torch.nn.Module, int], torch.Tensor] = {}

    def latents_at(q: int) -> tuple[tuple[int, int], torch.Tensor]:
        """The coded size and the latents of the image as quality `q` codes it (shrunk or not, refined or not),
        once per size and per decoder and refinement."""
        stages, _, shrink = levels[q - 1]
        if shrink not in coded:
            size = coded_size(width, height, shrink)
            rgb = prepared.rgb if size == (width, height) else _resize(prepared.rgb, *size, RESIZE_DOWN)
            coded[shrink] = size, rgb, embed(m, rgb)
        size, rgb, latents = coded[shrink]
        key = (shrink, m.net.decoder_for(stages),
               latent_refinement.steps_for(refine_steps, stages, m.config.distortion))
        if key not in refined:
            refined[key] = refine(m, rgb, latents, stages, key[2])
        return size, refined[key]

    if target_bpp is None:
        size, latents = latents_at(quality)
        return _pack(m, prepared, quantize(m, latents, grid_shape(m, *size), quality, effort=level), size)
    files: dict[tuple[int, float], bytes] = {}

    @torch.inference_mode()
    def measure(q: int, weight: float) -> tuple[int, float]:
        size, latents = latents_at(q)
        indices = quantize(m, latents, grid_shape(m, *size), q, weight, level)
        files[q, weight] = _pack(m, prepared, indices, size)
        error = latents - m.net.quantizer.decode(torch.from_numpy(indices.reshape(indices.shape[0], -1)))
        return len(files[q, weight]), float(error.pow(2).sum())

    target_size = target_bpp * width * height / 8
    point = rate.search(measure, len(levels), target_size, family=lambda q: levels[q - 1].shrink)
    if abs(point.size - target_size) > rate.TOLERANCE * target_size:
        warnings.warn(f"{describe(image)}: target {target_bpp:g} bpp is out of reach for model '{m.name}'; "
                      f"reached {8 * point.size / (width * height):.4f} bpp (quality {point.quality})",
                      rate.RateWarning, stacklevel=2)
    return files[point.quality, point.rate_weight]


def model_for(header: VqzHeader, model: ModelLike = None) -> CodecModel:
    """The model that can decode a file: the given one, or the shipped model its id names; checked.

    The file pins its model's fingerprint (all of it for a shipped model's short id, else the
    first 4 bytes); the model's full fingerprint is recomputed from its weights when it is loaded.
    A model built on that one (a decoder fine-tune, or stages added) reads the file too (`CodecModel.decodes`).
    """
    if model is None:
        names = find_shipped(header.model_id)
        if not names:
            short = container.SHORT_IDS.get(header.model_id)
            if short in container.LAST_SHIPPED_IN:
                raise VqzError(f"file was written by model {header.model_hex} (short id {short}), which this "
                               f"vqcodec no longer ships: decompress it with vqcodec "
                               f"{container.LAST_SHIPPED_IN[short]}, or pass that model file with --model")
            raise VqzError(f"file was written by model {header.model_hex}, which is not installed "
                           "(pass its model file with --model)")
        if len(names) > 1:
            raise VqzError(f"file's model id {header.model_hex} fits several installed models "
                           f"({', '.join(names)}): choose one with --model")
        model = names[0]
    m = as_model(model)
    if not m.reads(header.model_id):
        raise VqzError(f"file was written by model {header.model_hex}, "
                       f"not by the given model '{printable(m.name)}' ({m.fingerprint[:container.MODEL_ID_BYTES].hex()})")
    if header.stages > m.config.num_stages:
        raise VqzError(f"file stores {header.stages} stages, the model has only {m.config.num_stages}")
    return m


def decode_alpha(f: VqzFile) -> np.ndarray | None:
    """The alpha plane (height, width) of a file, inflated to exactly its size and no further; None without alpha."""
    if f.header.mode not in container.ALPHA_MODES:
        if f.alpha:
            raise VqzError(f"mode {f.header.mode} but an alpha plane is stored")
        return None
    n = f.header.width * f.header.height
    try:
        d = zlib.decompressobj()
        raw = d.decompress(f.alpha, n + 1)
    except zlib.error as exc:
        raise VqzError(f"alpha plane is damaged ({exc})") from None
    if len(raw) != n or not d.eof:
        raise VqzError("alpha plane has the wrong size")
    return np.frombuffer(raw, dtype=np.uint8).reshape(f.header.height, f.header.width)


def decompress_indices(data: bytes, model: ModelLike = None, quality: int | None = None,
                       max_pixels: int = MAX_INPUT_PIXELS) -> tuple[VqzFile, CodecModel, np.ndarray]:
    """Parse a file and entropy-decode its index grids: the first `quality` stages (all when None).

    A truncated file gives the stages it holds in full, up to `quality`: compare the grids'
    stage count with what was asked. An image over `max_pixels` is refused from the header,
    before the model is loaded or anything is decoded.
    """
    header = container.read_header(data)
    container.check_pixels(header.width, header.height, max_pixels)
    f = container.unpack(data, allow_truncated=True)
    m = model_for(header, model)
    if quality is not None and not 1 <= int(quality) <= header.stages:
        raise VqzError(f"this file stores qualities 1..{header.stages}; cannot decode quality {quality}")
    q = min(len(f.streams), header.stages if quality is None else int(quality))
    rows, cols = grid_shape(m, header.coded_width, header.coded_height)
    prior = m.prior_for(header.model_id)
    if header.adaptive and not isinstance(prior, ContextPrior):
        raise VqzError(f"the file's stages are coded adaptively, which the prior of model "
                       f"'{printable(m.name)}' cannot decode")
    for s in range(q):
        # A stream cannot hold more symbols than its bits pay for: refuse before allocating a grid. (Adaptive
        # tables can make a code nearly certain, so only the cells coded before they learn count there.)
        cells = adaptive.first_cells(s, rows, cols) if header.adaptive else rows * cols
        if 0.98 * cells * prior.min_bits(s) > 8 * len(f.streams[s]) + 64:
            raise VqzError(f"stage {s + 1} stream is too short for a {rows}x{cols} grid")
    try:
        grids = entropy_decode(prior, f.streams[:q], rows, cols, header.adaptive)
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise VqzError(f"a stage stream is damaged ({exc})") from None
    return f, m, grids


def decompress(data: VqzSource, model: ModelLike = None, quality: int | None = None,
               max_pixels: int = MAX_INPUT_PIXELS) -> Image.Image:
    """Decode a `.vqz` file (bytes, a path or a binary file object) to a PIL image in the mode it was compressed from.

    The model the file names is loaded from the shipped models unless `model` is given;
    a model other than the one that wrote the file is refused. `quality` decodes only the
    first stages of the file (a coarser image from the same bytes). Images larger than
    `max_pixels` (default 100 megapixels, as `compress`) are refused from the header alone.

    A file cut short (a prefix of a file, e.g. an interrupted download) decodes to the best
    quality its complete stages hold: then `image.info["truncated"]` is True. In every case
    `image.info["quality"]` is the number of stages decoded.
    """
    data = read_vqz(data)
    if quality is not None and _integer(quality) is None:
        raise ArgumentError(f"quality must be an integer, got {quality!r}")
    f, m, grids = decompress_indices(data, model, quality, max_pixels)
    alpha = decode_alpha(f)
    h = f.header
    rgb = decode_indices(m, grids, h.coded_width, h.coded_height)
    if h.reduced:
        rgb = _resize(rgb, h.width, h.height, RESIZE_UP)
    image = assemble(rgb, alpha, f.header.mode)
    asked = f.header.stages if quality is None else int(quality)
    image.info.update(quality=grids.shape[0], truncated=grids.shape[0] < asked)
    return image


truncate = container.truncate
