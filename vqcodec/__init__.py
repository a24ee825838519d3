"""vqcodec: a learned image codec built on a residual VQ-VAE.

    import vqcodec
    data = vqcodec.compress("photo.png", quality=4)   # .vqz bytes
    image = vqcodec.decompress(data)                  # PIL.Image.Image
"""

from vqcodec.codec import compress, decompress, info
from vqcodec.errors import ArgumentError, ImageError, ModelError, OutputError, VqcodecError, VqcodecWarning, VqzError
from vqcodec.zoo import CodecModel, load_model, shipped_models
from vqcodec import pillow_plugin  # noqa: F401 (registers the .vqz format with Pillow)

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "CodecModel",
    "ImageError",
    "ModelError",
    "OutputError",
    "VqcodecError",
    "VqcodecWarning",
    "VqzError",
    "compress",
    "decompress",
    "info",
    "load_model",
    "shipped_models",
]
