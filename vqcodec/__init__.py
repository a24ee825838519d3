"""vqcodec: a learned image codec built on a residual VQ-VAE.

    import vqcodec
    data = vqcodec.compress("photo.png", quality=4)   # .vqz bytes
    image = vqcodec.decompress(data)                  # PIL.Image.Image
    small = vqcodec.truncate(data, 2)                 # quality 2, by copying bytes
"""

from vqcodec.codec import compress, decompress, info, truncate
from vqcodec.errors import ImageError, ModelError, OutputError, VqcodecError, VqzError
from vqcodec.registry import shipped_models
from vqcodec.zoo import CodecModel, load_model
from vqcodec import pillow_plugin  # noqa: F401 (registers the .vqz format with Pillow)

__version__ = "0.1.0"

__all__ = [
    "CodecModel",
    "ImageError",
    "ModelError",
    "OutputError",
    "VqcodecError",
    "VqzError",
    "compress",
    "decompress",
    "info",
    "load_model",
    "shipped_models",
    "truncate",
]
