"""The shipped models and their identities, read without loading them (no torch).

A `.vqz` file names its model by a short id bound to a shipped model's full fingerprint,
or by the first bytes of the fingerprint. The
fingerprint sits in each model file's safetensors metadata (a JSON header at the
start of the file), so finding the model a file needs, or naming it in `vqcodec
info`, reads a few kilobytes per shipped model. Loading a model (`vqcodec.zoo`)
recomputes the full fingerprint from the weights and refuses a mismatch.

A model built on another one without changing its streams (a decoder fine-tune, `vqcodec.decoder_tuning`,
or a model with stages added, `vqcodec.stage_extension`) lists its ancestors' fingerprints in its
metadata (`decodes`): a file that names an ancestor no longer shipped decodes with it.
"""

from __future__ import annotations

import json
import struct
from importlib import resources
from pathlib import Path

from vqcodec.container import LAST_SHIPPED_IN, MODEL_ID_BYTES, SHORT_IDS
from vqcodec.errors import ModelError

DECODES_KEY = "decodes"
"""Model-file metadata key of a model's lineage: the fingerprints of the ancestors whose streams it reads, nearest first."""
PREFERRED = "default"
"""Of several shipped fine-tunes equally near a file's model, the one that decodes it."""
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


def format_lineage(fingerprints: tuple[bytes, ...]) -> str:
    """The `DECODES_KEY` metadata text of a lineage: hex fingerprints, comma-separated ("" for none)."""
    return ",".join(f.hex() for f in fingerprints)


def parse_lineage(text: str) -> tuple[bytes, ...]:
    """The fingerprints of `format_lineage` text; ValueError when it is not hex."""
    return tuple(bytes.fromhex(f) for f in text.split(",")) if text else ()


def stated_lineage(path: Path) -> tuple[bytes, ...]:
    """The fingerprint a model file states in its metadata, then those of the ancestors whose streams it reads
    (nearest first); not verified: `zoo.load_model` does that."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > MAX_METADATA:
                raise ValueError("header too large")
            meta = json.loads(f.read(n)).get("__metadata__") or {}
        return (bytes.fromhex(meta["fingerprint"]), *parse_lineage(meta.get(DECODES_KEY, "")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error) as exc:
        raise ModelError(f"{path}: cannot read the model's fingerprint ({exc})") from None


def stated_fingerprint(path: Path) -> bytes:
    """The fingerprint a model file states in its metadata (not verified: `zoo.load_model` does that)."""
    return stated_lineage(path)[0]


def _nearest(model_id: bytes) -> tuple[int, list[str]]:
    """The shipped readers of `model_id` that decode its data, and how far down their lineage it is (0: the
    model itself): the model itself when shipped, else `PREFERRED` when it reads it, else the nearest
    fine-tunes; (0, []) when no shipped model reads it.

    `PREFERRED` goes before a nearer fine-tune: files of an earlier `default` decode with today's, not with
    a sibling tuned for another purpose (up to vqcodec 0.16.0, `perceptual` was one step nearer to short ids 1 and
    2)."""
    ranked = []
    for name, path in shipped_models().items():
        depth = next((i for i, f in enumerate(stated_lineage(path)) if f.startswith(model_id)), None)
        if depth is not None:
            ranked.append((depth, name))
    if not ranked:
        return 0, []
    nearest = min(depth for depth, _ in ranked)
    preferred = [depth for depth, name in ranked if name == PREFERRED]
    if nearest > 0 and preferred:
        return preferred[0], [PREFERRED]
    return nearest, sorted(name for depth, name in ranked if depth == nearest)


def find_shipped(model_id: bytes) -> list[str]:
    """Names of the shipped models that read data naming `model_id` (a fingerprint or its first bytes): the
    model itself, else `default` when it reads it, else its nearest descendants. Normally one or
    none; several only when equally near, which the caller must settle."""
    return _nearest(model_id)[1]


def describe(model_id: bytes) -> str:
    """A model id as people read it: the shipped model's name and the id in hex, the id and the descendant
    that reads it when the model itself is not installed, the id and the release that reads it for a
    retired model no shipped model reads (`LAST_SHIPPED_IN`), or the id alone."""
    depth, names = _nearest(model_id)
    shown = model_id[:MODEL_ID_BYTES].hex()
    short = SHORT_IDS.get(bytes(model_id))
    if not names and short in LAST_SHIPPED_IN:
        return f"{shown} (short id {short}, read by vqcodec {LAST_SHIPPED_IN[short]})"
    if len(names) != 1:
        return shown
    return f"{names[0]} ({shown})" if depth == 0 else f"{shown} (read by its descendant '{names[0]}')"
