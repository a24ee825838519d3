"""A Pillow plugin for `.vqz` files, registered the way Pillow's own format plugins are.

After `import vqcodec`:

    from PIL import Image
    im = Image.open("photo.vqz")           # reads the header only: size, mode, im.info
    im.load()                              # decodes (also done by any pixel access)
    Image.open("photo.png").save("photo.vqz", quality=4)

`Image.open` recognises the file by its magic bytes, whatever its name; `save`
picks the format from the `.vqz` extension (or `format="VQZ"`). Saving takes the
keyword arguments `quality` (1 to the model's stage count; default the middle) and
`model` (a shipped model's name, a model file path or a loaded `CodecModel`;
default the default model). Decoding uses the model the file names, which must be
installed. Errors follow Pillow's conventions: a damaged header makes `Image.open`
raise `PIL.UnidentifiedImageError`, a damaged payload or a missing model makes
`load()` raise `OSError`, both carrying vqcodec's message.
"""

from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile

from vqcodec import container
from vqcodec.errors import VqcodecError

FORMAT = "VQZ"
EXTENSION = ".vqz"
_HEADER_BYTES = 2048
"""Enough bytes for the longest possible header (64-byte name, 255 stages)."""


def _accept(prefix: bytes) -> bool:
    return prefix.startswith(container.MAGIC)


class VqzImageFile(ImageFile.ImageFile):
    """A `.vqz` file opened by Pillow: the header is parsed on open, the pixels decoded on load."""

    format = FORMAT
    format_description = "vqcodec learned image codec"

    def _open(self) -> None:
        assert self.fp is not None
        try:
            header = container.read_header(self.fp.read(_HEADER_BYTES))
        except VqcodecError as exc:
            raise SyntaxError(str(exc)) from None
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.info["model"] = header.model_name
        self.info["quality"] = header.stages
        self.tile = [(FORMAT, (0, 0, *self._size), 0, None)]


class VqzDecoder(ImageFile.PyDecoder):
    """Reads the whole file and decodes it with `vqcodec.codec.decompress`."""

    _pulls_fd = True

    def decode(self, buffer: Image.DecoderInput) -> tuple[int, int]:
        from vqcodec import codec  # here: opening a file reads its header without importing torch

        assert self.fd is not None
        try:
            image = codec.decompress(self.fd.read())
        except VqcodecError as exc:
            raise OSError(str(exc)) from exc
        self.set_as_raw(image.tobytes())
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """Encode `im` with the model and quality given as save parameters."""
    from vqcodec import codec

    fp.write(codec.compress(im, im.encoderinfo.get("model"), im.encoderinfo.get("quality")))


Image.register_open(FORMAT, VqzImageFile, _accept)
Image.register_decoder(FORMAT, VqzDecoder)
Image.register_save(FORMAT, _save)
Image.register_extension(FORMAT, EXTENSION)
