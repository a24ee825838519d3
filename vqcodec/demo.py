"""The demo: figures showing what the codec does to a few images and how it uses its codebooks.

`run_demo` compresses the images at several qualities and writes, into one folder:

    reconstructions.png  originals beside their reconstructions, bpp and PSNR in the titles
    codebook.png         a 2-D embedding (PCA or t-SNE) of every stage's codebook, coloured by use
    usage.png            a histogram of code usage per stage
    index_map.png        the index grids of the first image, stage by stage
    summary.txt          bpp and PSNR per image and quality; codes used and perplexity per stage

Bits per pixel are those of the real `.vqz` files; PSNR is over the RGB channels.
Code usage counts the index grids of all images at the highest quality asked for.
The figures are drawn on matplotlib `Figure` objects (Agg, no pyplot state), so
each builder can also be used on its own, e.g. in a notebook.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from vqcodec import codec
from vqcodec.errors import ArgumentError, OutputError
from vqcodec.images import open_image, prepare
from vqcodec.safe_io import check_output, write_atomic, write_bytes_atomic
from vqcodec.train import perplexity, psnr
from vqcodec.zoo import CodecModel, ModelLike, as_model

RECONSTRUCTIONS = "reconstructions.png"
CODEBOOK = "codebook.png"
USAGE = "usage.png"
INDEX_MAP = "index_map.png"
SUMMARY = "summary.txt"
OUTPUTS = (RECONSTRUCTIONS, CODEBOOK, USAGE, INDEX_MAP, SUMMARY)
DPI = 110


class Embedding(str, Enum):
    """How codebook vectors are projected to 2-D: PCA (fast, linear) or t-SNE (neighbourhoods)."""

    pca = "pca"
    tsne = "tsne"


@dataclass(frozen=True)
class Reconstruction:
    """One image decoded at one quality, with its real size in bits per pixel and its PSNR in dB."""

    quality: int
    image: Image.Image
    bpp: float
    psnr: float


@dataclass(frozen=True)
class DemoImage:
    """An input image (as RGB), its index grids at the highest quality, and its reconstructions."""

    name: str
    original: Image.Image
    grids: np.ndarray
    reconstructions: tuple[Reconstruction, ...]


@dataclass(frozen=True)
class DemoReport:
    """What `run_demo` wrote and the summary it printed there."""

    files: tuple[Path, ...]
    summary: str
    images: tuple[DemoImage, ...]
    usage: np.ndarray


def default_qualities(model: CodecModel) -> list[int]:
    """Powers of two below the model's top quality, and the top: 1, 2, 4, 8, 16, 28 for the default model."""
    top = len(codec.quality_levels(model))
    return sorted({2**i for i in range(top.bit_length()) if 2**i < top} | {top})


def analyse(images: Sequence[str | os.PathLike[str] | Image.Image], model: CodecModel,
            qualities: Sequence[int]) -> list[DemoImage]:
    """Compress and decompress every image at every quality; keep the grids of the highest."""
    qs = sorted({codec.check_quality(model, q) for q in qualities})
    if not qs:
        raise ArgumentError("give at least one quality")
    items = []
    for i, source in enumerate(images):
        im = open_image(source)
        rgb = prepare(im).rgb
        height, width = rgb.shape[:2]
        recs = []
        data = b""
        for q in qs:
            data = codec.compress(im, model, q)
            out = np.asarray(codec.decompress(data, model).convert("RGB"))
            mse = float(np.mean(((rgb.astype(np.float64) - out) / 255.0) ** 2))
            recs.append(Reconstruction(q, Image.fromarray(out), 8.0 * len(data) / (width * height), psnr(mse)))
        grids = codec.decompress_indices(data, model)[2]
        name = Path(source).name if isinstance(source, (str, os.PathLike)) else f"image{i}"
        items.append(DemoImage(name, Image.fromarray(rgb), grids, tuple(recs)))
    return items


def code_usage(items: Sequence[DemoImage], codebook_size: int) -> np.ndarray:
    """How often every code is used, shape (stages, codebook_size), over all images' grids."""
    stages = items[0].grids.shape[0]
    return np.stack([
        np.bincount(np.concatenate([it.grids[s].ravel() for it in items]), minlength=codebook_size)
        for s in range(stages)
    ])


def stage_perplexity(items: Sequence[DemoImage], stage: int, codebook_size: int) -> float:
    """exp(entropy) of one stage's code usage, as training reports it: codes effectively in use."""
    indices = np.concatenate([it.grids[stage].ravel() for it in items])
    return perplexity(torch.from_numpy(indices), codebook_size)


def reconstruction_figure(items: Sequence[DemoImage], model_name: str) -> Figure:
    """A grid of images: one row per input, the original then one column per quality."""
    cols = 1 + len(items[0].reconstructions)
    aspect = float(np.mean([it.original.height / it.original.width for it in items]))
    panel = 3.2
    fig = Figure(figsize=(panel * cols, (panel * aspect + 0.7) * len(items) + 0.5), layout="constrained")
    axes = fig.subplots(len(items), cols, squeeze=False)
    for row, it in zip(axes, items):
        row[0].imshow(it.original)
        row[0].set_title(f"original: {it.name}\n{it.original.width}x{it.original.height}", fontsize=10)
        for ax, rec in zip(row[1:], it.reconstructions):
            ax.imshow(rec.image)
            ax.set_title(f"quality {rec.quality}\n{rec.bpp:.3f} bpp, PSNR {rec.psnr:.2f} dB", fontsize=10)
        for ax in row:
            ax.set_axis_off()
    fig.suptitle(f"Originals and reconstructions, model '{model_name}'", fontsize=13)
    return fig


_AXIS_LABELS = {Embedding.pca: "PC", Embedding.tsne: "t-SNE"}
_TITLES = {Embedding.pca: "PCA projection", Embedding.tsne: "t-SNE embedding"}


def _embed(codebook: np.ndarray, method: Embedding) -> np.ndarray:
    if method is Embedding.tsne:
        tsne = TSNE(n_components=2, init="pca", perplexity=min(30.0, len(codebook) - 1.0), random_state=0)
        # scikit-learn's OpenMP threads contend with torch's (each wheel ships its own runtime):
        # t-SNE runs several times slower after torch has run, unless it stays on one thread.
        with threadpool_limits(1, user_api="openmp"):
            return tsne.fit_transform(codebook)
    return PCA(n_components=2, random_state=0).fit_transform(codebook)


def codebook_figure(model: CodecModel, usage: np.ndarray, method: Embedding = Embedding.pca) -> Figure:
    """Every stage's codebook vectors projected to 2-D, coloured by how often each is used (log scale)."""
    stages = usage.shape[0]
    ncols = min(4, stages)
    nrows = math.ceil(stages / ncols)
    fig = Figure(figsize=(3.6 * ncols + 1.2, 3.4 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    norm = LogNorm(vmin=1, vmax=max(2, int(usage.max())))
    label = _AXIS_LABELS[method]
    scatter = None
    for s, ax in enumerate(axes.flat):
        if s >= stages:
            ax.set_axis_off()
            continue
        codebook = model.net.quantizer.stages[s].codebook.detach().cpu().numpy()
        xy = _embed(codebook, method)
        used = usage[s] > 0
        ax.scatter(xy[~used, 0], xy[~used, 1], s=10, facecolors="none", edgecolors="0.7", linewidths=0.6,
                   label="unused")
        order = np.argsort(usage[s][used])
        scatter = ax.scatter(xy[used][order, 0], xy[used][order, 1], c=usage[s][used][order], cmap="viridis",
                             norm=norm, s=14)
        ax.set_title(f"stage {s + 1}: {int(used.sum())}/{len(used)} codes used", fontsize=10)
        ax.set_xlabel(f"{label} 1")
        ax.set_ylabel(f"{label} 2")
        ax.tick_params(labelsize=8)
    axes.flat[0].legend(loc="best", fontsize=8)
    if scatter is not None:
        fig.colorbar(scatter, ax=axes, label="uses on the given images (log scale)", shrink=0.8)
    fig.suptitle(f"Codebook vectors of model '{model.name}', {_TITLES[method]}", fontsize=13)
    return fig


def usage_figure(usage: np.ndarray, perplexities: Sequence[float]) -> Figure:
    """A bar per code: how many grid cells of the given images chose it, one panel per stage."""
    stages, k = usage.shape
    ncols = 2 if stages > 1 else 1
    nrows = math.ceil(stages / ncols)
    fig = Figure(figsize=(6.5 * ncols, 2.3 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    for s, ax in enumerate(axes.flat):
        if s >= stages:
            ax.set_axis_off()
            continue
        ax.bar(np.arange(k), usage[s], width=1.0, color="tab:blue")
        used = int((usage[s] > 0).sum())
        ax.set_title(f"stage {s + 1}: {used}/{k} codes used, perplexity {perplexities[s]:.1f}", fontsize=10)
        ax.set_xlim(-0.5, k - 0.5)
        ax.set_ylabel("uses")
        ax.tick_params(labelsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("code index")
    fig.suptitle("Code usage per quantizer stage", fontsize=13)
    return fig


def index_map_figure(item: DemoImage, codebook_size: int, stride: int, stages: int = 3) -> Figure:
    """One image beside the maps of its first `stages` index grids (a colour per code index)."""
    shown = min(stages, item.grids.shape[0])
    aspect = item.original.height / item.original.width
    fig = Figure(figsize=(4.2 * (shown + 1), 4.2 * aspect + 1.2), layout="constrained")
    axes = fig.subplots(1, shown + 1, squeeze=False)[0]
    axes[0].imshow(item.original)
    axes[0].set_title(f"{item.name}", fontsize=10)
    axes[0].set_axis_off()
    image = None
    for s, ax in enumerate(axes[1:]):
        image = ax.imshow(item.grids[s], cmap="turbo", vmin=0, vmax=codebook_size - 1, interpolation="nearest")
        rows, cols = item.grids.shape[1:]
        ax.set_title(f"stage {s + 1} indices ({cols}x{rows} grid)", fontsize=10)
        ax.set_xlabel("grid column")
        ax.set_ylabel("grid row")
    if image is not None:
        fig.colorbar(image, ax=axes[1:], label="code index", shrink=0.8)
    fig.suptitle(f"Index grids of {item.name} (one cell = {stride}x{stride} pixels)", fontsize=13)
    return fig


def summary_text(items: Sequence[DemoImage], usage: np.ndarray, perplexities: Sequence[float],
                 model: CodecModel) -> str:
    """Plain-text summary: bpp and PSNR per image and quality, codes used and perplexity per stage."""
    k = usage.shape[1]
    lines = [f"model {model.name} ({model.fingerprint.hex()[:16]}), {len(items)} image(s)", ""]
    for it in items:
        lines.append(f"{it.name} ({it.original.width}x{it.original.height}):")
        lines += [f"  quality {r.quality}: {r.bpp:.4f} bpp, PSNR {r.psnr:.2f} dB" for r in it.reconstructions]
    lines += ["", f"code usage at quality {usage.shape[0]}:"]
    lines += [
        f"  stage {s + 1}: {int((usage[s] > 0).sum())}/{k} codes used, perplexity {perplexities[s]:.1f}"
        for s in range(usage.shape[0])
    ]
    return "\n".join(lines) + "\n"


def run_demo(images: Sequence[str | os.PathLike[str] | Image.Image], out_dir: str | os.PathLike[str],
             model: ModelLike = None, qualities: Sequence[int] | None = None,
             embedding: Embedding = Embedding.pca, overwrite: bool = False) -> DemoReport:
    """Analyse the images and write the four figures and the summary into `out_dir` (see the module doc).

    Every output is checked before any work starts, and written atomically; existing
    files are replaced only with `overwrite`.
    """
    if not images:
        raise ArgumentError("give at least one image")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is not a folder")
    paths = tuple(out / name for name in OUTPUTS)
    for path in paths:
        check_output(path, overwrite)
    m = as_model(model)
    items = analyse(images, m, default_qualities(m) if qualities is None else qualities)
    k = m.config.codebook_size
    usage = code_usage(items, k)
    perplexities = [stage_perplexity(items, s, k) for s in range(usage.shape[0])]
    figures = {
        RECONSTRUCTIONS: reconstruction_figure(items, m.name),
        CODEBOOK: codebook_figure(m, usage, Embedding(embedding)),
        USAGE: usage_figure(usage, perplexities),
        INDEX_MAP: index_map_figure(items[0], k, m.config.stride),
    }
    for name, fig in figures.items():
        write_atomic(out / name, lambda f, fig=fig: fig.savefig(f, format="png", dpi=DPI), overwrite=overwrite)
    summary = summary_text(items, usage, perplexities, m)
    write_bytes_atomic(out / SUMMARY, summary.encode(), overwrite=overwrite)
    return DemoReport(paths, summary, tuple(items), usage)
