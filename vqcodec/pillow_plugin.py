"""A Pillow plugin for `.vqz` files, registered the way Pillow's own format plugins are.

After `import vqcodec`:

    from PIL import Image
    im = Image.open("photo.vqz")           # reads the header only: size, mode, im.info
    im.load()                              # decodes (also done by any pixel access)
    Image.open("photo.png").save("photo.vqz", quality=4)

`Image.open` recognises the file by its magic bytes, whatever its name; `save`
picks the format from the `.vqz` extension (or `format="VQZ"`). Saving takes the
keyword arguments `quality` (1 to the model's top quality, see `codec.quality_levels`; default the model's default, `codec.default_quality`) or
`target_bpp` (bits per pixel to aim for, as `vqcodec compress --target-bpp`), and
`model` (a shipped model's name, a model file path or a loaded `CodecModel`;
default the default model). Decoding uses the model the file names, which must be
installed.

Errors and limits follow Pillow's conventions: a damaged header makes `Image.open`
raise `PIL.UnidentifiedImageError`; an image larger than `Image.MAX_IMAGE_PIXELS`
makes it raise `Image.DecompressionBombError`, from the header alone (a .vqz file
of a few kilobytes can claim any size); a damaged payload or a missing model makes
`load()` raise `OSError`, as does a truncated file unless
`ImageFile.LOAD_TRUNCATED_IMAGES` is set (then the complete stages are decoded);
`verify()` checks the structure and every checksum without decoding.
"""

from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile

from vqcodec import container, registry
from vqcodec.errors import VqcodecError

FORMAT = "VQZ"
EXTENSION = ".vqz"


def _accept(prefix: bytes) -> bool:
    return prefix.startswith(container.MAGIC)


class VqzImageFile(ImageFile.ImageFile):
    """A `.vqz` file opened by Pillow: the header is parsed on open, the pixels decoded on load."""

    format = FORMAT
    format_description = "vqcodec learned image codec"

    def _open(self) -> None:
        assert self.fp is not None
        try:
            header = container.read_header(self.fp.read(container.MAX_HEADER))
        except VqcodecError as exc:
            raise SyntaxError(str(exc)) from None
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and header.pixels > limit:
            raise Image.DecompressionBombError(
                f"image is {header.width}x{header.height} = {header.pixels} pixels, over the limit of {limit} "
                "(raise PIL.Image.MAX_IMAGE_PIXELS, or set it to None, to open it)")
        self._size = (header.width, header.height)
        self._mode = header.mode
        names = registry.find_shipped(header.model_id)
        self.info["model_id"] = header.model_hex
        self.info["model"] = names[0] if len(names) == 1 else self.info["model_id"]
        self.info["quality"] = header.stages
        self.tile = [(FORMAT, (0, 0, *self._size), 0, None)]

    def verify(self) -> None:
        """Check the structure and every checksum, as Pillow's PNG plugin checks its CRCs; decodes nothing."""
        if self.fp is None:
            raise RuntimeError("verify must be called directly after open")
        self.fp.seek(0)
        try:
            container.unpack(self.fp.read())
        except VqcodecError as exc:
            raise SyntaxError(str(exc)) from None
        if self._exclusive_fp:
            self.fp.close()
        self.fp = None


class VqzDecoder(ImageFile.PyDecoder):
    """Reads the whole file and decodes it with `vqcodec.codec.decompress`."""

    _pulls_fd = True

    def decode(self, buffer: Image.DecoderInput) -> tuple[int, int]:
        from vqcodec import codec  # here: opening a file reads its header without importing torch

        assert self.fd is not None
        data = self.fd.read()
        limit = Image.MAX_IMAGE_PIXELS
        try:
            # Decoding a truncated file is allowed only as Pillow allows it for every format.
            container.unpack(data, allow_truncated=ImageFile.LOAD_TRUNCATED_IMAGES)
            image = codec.decompress(data, max_pixels=container.MAX_PIXELS if limit is None else limit)
        except VqcodecError as exc:
            raise OSError(str(exc)) from exc
        self.set_as_raw(image.tobytes())
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """Encode `im` with the model and the quality or target bpp given as save parameters."""
    from vqcodec import codec

    options = im.encoderinfo
    fp.write(codec.compress(im, options.get("model"), options.get("quality"), target_bpp=options.get("target_bpp")))


Image.register_open(FORMAT, VqzImageFile, _accept)
Image.register_decoder(FORMAT, VqzDecoder)
Image.register_save(FORMAT, _save)
Image.register_extension(FORMAT, EXTENSION)
