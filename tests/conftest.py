"""Shared fixtures: the shipped default model, a tiny random model, and small test images.

The tests run the float32 inference forms and code search on every machine (`VQCODEC_PRECISION`, also for the
command lines they start), so that their exact comparisons hold where the CPU has bfloat16 too; the bfloat16
forms and search have tests of their own that ask for them (`CodecModel.arithmetic`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vqcodec.entropy import FrequencyPrior
from vqcodec.model import VQVAE, ModelConfig
from vqcodec.zoo import CodecModel, load_model, save_model

os.environ.setdefault("VQCODEC_PRECISION", "float32")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
KODAK = SHARED / "kodak"
BSDS = SHARED / "bsds500"

TINY = ModelConfig(name="tiny", channels=(8, 8), res_blocks=1, latent_dim=4, codebook_size=16, num_stages=3)


@pytest.fixture(scope="session")
def default_model() -> CodecModel:
    return load_model()


def save_untrained(config: ModelConfig, path: Path) -> Path:
    """An untrained model of `config` (seed 0) with a skewed prior, saved as a real model file at `path`."""
    torch.manual_seed(0)
    net = VQVAE(config).eval()
    counts = np.arange(1, config.codebook_size + 1)[None].repeat(config.num_stages, 0) ** 2
    save_model(net, FrequencyPrior(counts), path)
    return path


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained model with a skewed prior, saved as a real model file."""
    return save_untrained(TINY, tmp_path_factory.mktemp("models") / "tiny.safetensors")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path: Path) -> CodecModel:
    return load_model(tiny_model_path)


@pytest.fixture(scope="session")
def kodak_crop() -> Image.Image:
    """A 128x96 crop of a Kodak image: real photo content at test speed."""
    with Image.open(KODAK / "kodim23.png") as im:
        return im.convert("RGB").crop((300, 100, 428, 196))


def noise_image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Deterministic random pixels in the given mode."""
    rng = np.random.default_rng(seed)
    bands = len(Image.new(mode, (1, 1)).getbands())
    arr = rng.integers(0, 256, (height, width, bands), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if bands == 1 else arr, mode)


def synthetic_image(mode: str = "RGB", size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    """A small image with smooth gradients, an edge and some noise, in the given mode."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    rgb = np.stack([x * 255 / w, y * 255 / h, ((x // 16 + y // 12) % 2) * 200], axis=2)
    rgb = np.clip(rgb + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(rgb, "RGB")
    if mode in ("RGBA", "LA"):
        im.putalpha(Image.fromarray((x * 4 % 256).astype(np.uint8), "L"))
    return im.convert(mode)


def write_photos(folder: Path, count: int, size: tuple[int, int]) -> Path:
    """`count` synthetic photos (`synthetic_image`, seeds 0..count-1) saved as PNG into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        synthetic_image(size=size, seed=i).save(folder / f"p{i}.png")
    return folder


def run_cli(*args: str) -> "subprocess.CompletedProcess[str]":
    """`vqcodec ARGS...` in a fresh Python process, output captured."""
    return subprocess.run([sys.executable, "-c", "from vqcodec.cli.main import main; main()", *args],
                          capture_output=True, text=True, timeout=300)
