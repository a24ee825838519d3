"""Writing outputs safely: never half-written, never silently overwritten, never over the input.

`check_output` is cheap and runs before the work whose result it will hold: it refuses
an output over its own input, an existing file without `overwrite`, and a place that
cannot be written, each naming the output. Only a file vqcodec recognises as its own
(a `.vqz` file, or an image tagged `SOFTWARE`) gets the advice to use --force: any
other file may be someone's original.

`write_atomic` writes into a temporary file beside the target, flushes it to disk,
then moves it into place in one step. Without `overwrite`, the final step is a hard
link, which fails if the target appeared meanwhile, so even a race cannot clobber a
file. Any exception, Ctrl-C included, removes the temporary file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from vqcodec.container import MAGIC
from vqcodec.errors import OutputError

SOFTWARE = "vqcodec"
"""Value of the Software tag (EXIF/TIFF 0x0131, or PNG text) in images vqcodec writes, so a later run knows."""
SOFTWARE_TAG = 0x0131


def software_exif() -> Image.Exif:
    """EXIF data that marks an image as written by vqcodec (for PNG, TIFF and WebP outputs)."""
    exif = Image.Exif()
    exif[SOFTWARE_TAG] = SOFTWARE
    return exif


def written_by_vqcodec(path: Path) -> bool:
    """Whether an existing file is one vqcodec wrote: a `.vqz` file, or an image with its Software tag."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) == MAGIC:
                return True
        with Image.open(path) as im:
            tags = (im.getexif().get(SOFTWARE_TAG), im.info.get("Software"))
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return False
    return any(isinstance(t, str) and t.startswith(SOFTWARE) for t in tags)


def _exists(path: Path) -> OutputError:
    if written_by_vqcodec(path):
        return OutputError(f"{path}: already exists (use --force to overwrite)")
    return OutputError(f"{path}: already exists and is not a file vqcodec wrote; choose another name with -o")


def _check_writable(path: Path) -> None:
    """Refuse a place where `path` cannot be created: an ancestor that is a file, or a folder we may not write."""
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{path}: cannot write into {folder} (not a folder)")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputError(f"{path}: cannot write into {folder} ({exc.strerror or exc})") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: Path, overwrite: bool = False, inputs: Iterable[Path] = ()) -> None:
    """Raise `OutputError` if `path` cannot be written, or writing it would clobber a file or one of `inputs`."""
    path = Path(path)
    if any(_same_file(path, Path(i)) or path.resolve() == Path(i).resolve() for i in inputs):
        raise OutputError(f"{path}: refusing to write an output over its own input")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder")
    if path.exists() and not overwrite:
        raise _exists(path)
    _check_writable(path)


def write_atomic(path: str | os.PathLike[str], write: Callable[[BinaryIO], None], overwrite: bool = False,
                 inputs: Iterable[Path] = ()) -> None:
    """Create `path` from what `write` puts into a file object, all or nothing."""
    path = Path(path)
    check_output(path, overwrite, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise _exists(path) from None
            tmp.unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, overwrite: bool = False,
                       inputs: Iterable[Path] = ()) -> None:
    """`write_atomic` for a byte string."""
    write_atomic(path, lambda f: f.write(data), overwrite=overwrite, inputs=inputs)
