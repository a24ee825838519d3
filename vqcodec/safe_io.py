"""Writing outputs safely: never half-written, never silently overwritten, never over the input.

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

from vqcodec.errors import OutputError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: Path, overwrite: bool = False, inputs: Iterable[Path] = ()) -> None:
    """Raise `OutputError` if writing `path` would clobber a file or one of `inputs`."""
    if any(_same_file(path, Path(i)) or path.resolve() == Path(i).resolve() for i in inputs):
        raise OutputError(f"{path}: refusing to write an output over its own input")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (use --force to overwrite)")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder")


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
                raise OutputError(f"{path}: already exists (use --force to overwrite)") from None
            tmp.unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, overwrite: bool = False,
                       inputs: Iterable[Path] = ()) -> None:
    """`write_atomic` for a byte string."""
    write_atomic(path, lambda f: f.write(data), overwrite=overwrite, inputs=inputs)
