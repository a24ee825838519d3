"""The shipped models and their identities, read without loading them (no torch).

A `.vqz` file names its model by a short id bound to a shipped model's full fingerprint,
or by the first bytes of the fingerprint. The
fingerprint sits in each model file's safetensors metadata (a JSON header at the
start of the file), so finding the model a file needs, or naming it in `vqcodec
info`, reads a few kilobytes per shipped model. Loading a model (`vqcodec.zoo`)
recomputes the full fingerprint from the weights and refuses a mismatch.
"""

from __future__ import annotations

import json
import struct
from importlib import resources
from pathlib import Path

from vqcodec.container import MODEL_ID_BYTES
from vqcodec.errors import ModelError

MAX_METADATA = 1 << 24
"""Largest safetensors JSON header read when looking for a fingerprint."""


def shipped_models() -> dict[str, Path]:
    """Names and paths of the models that ship inside the package."""
    folder = resources.files("vqcodec") / "models"
    return {
        Path(entry.name).stem: Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith(".safetensors")
    }


def stated_fingerprint(path: Path) -> bytes:
    """The fingerprint a model file states in its metadata (not verified: `zoo.load_model` does that)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > MAX_METADATA:
                raise ValueError("header too large")
            meta = json.loads(f.read(n)).get("__metadata__") or {}
        return bytes.fromhex(meta["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise ModelError(f"{path}: cannot read the model's fingerprint ({exc})") from None


def find_shipped(model_id: bytes) -> list[str]:
    """Names of the shipped models whose fingerprint starts with `model_id` (normally one or none)."""
    return sorted(name for name, path in shipped_models().items() if stated_fingerprint(path).startswith(model_id))


def describe(model_id: bytes) -> str:
    """A model id as people read it: the shipped model's name and the id in hex, or the id alone."""
    names = find_shipped(model_id)
    shown = model_id[:MODEL_ID_BYTES].hex()
    return f"{names[0]} ({shown})" if len(names) == 1 else shown
