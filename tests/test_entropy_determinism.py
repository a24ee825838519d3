"""The shipped model's entropy coding is identical everywhere: golden probabilities, threads, processes.

`tests/golden/default-probabilities.json` records, for a fixed 64x48 crop of kodim23 at the top
quality, every cell's context and the exact float64 probability (as hex) the shipped model gives
its code, stage by stage, and the SHA-256 of the range-coded streams. It was written by running
this file as a script (`python tests/test_entropy_determinism.py`); a change of the model, the
arithmetic or constriction that alters one bit fails the test.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vqcodec import codec
from vqcodec.zoo import CodecModel, load_model

GOLDEN = Path(__file__).parent / "golden" / "default-probabilities.json"
KODIM23 = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"


def crop() -> np.ndarray:
    with Image.open(KODIM23) as im:
        return np.asarray(im.convert("RGB").crop((320, 120, 384, 168)))


def record(model: CodecModel) -> dict:
    """Contexts, exact probabilities of the coded symbols, and stream hashes of the golden crop."""
    grids = codec.encode_indices(model, crop(), model.config.num_stages)
    prior = model.prior
    out = {"fingerprint": model.fingerprint.hex(), "stages": []}
    for s in range(grids.shape[0]):
        if s == 0:
            ctx = prior.stage0._contexts(grids[:1], 0)
            rows = prior.stage0.counts[0][ctx]
        else:
            ctx = prior.contexts(grids, s).ravel()
            rows = prior.counts[s][ctx]
        symbols = grids[s].ravel()
        p = rows[np.arange(len(symbols)), symbols].astype(np.float64) / rows.sum(1).astype(np.float64)
        out["stages"].append({"contexts": ctx.astype(int).tolist(), "symbols": symbols.astype(int).tolist(),
                              "probabilities": [float(v).hex() for v in p]})
    out["streams_sha256"] = hashlib.sha256(b"".join(prior.encode_grids(grids))).hexdigest()
    return out


@pytest.fixture(scope="module")
def model() -> CodecModel:
    return load_model()


def test_golden_probabilities_byte_for_byte(model: CodecModel) -> None:
    golden = json.loads(GOLDEN.read_text())
    assert golden["fingerprint"] == model.fingerprint.hex(), "the shipped model changed: regenerate the golden file"
    assert record(model) == golden


def test_same_streams_with_one_and_two_threads(model: CodecModel) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = record(model)
        torch.set_num_threads(2)
        two = record(model)
    finally:
        torch.set_num_threads(before)
    assert one == two


def test_same_streams_in_another_process(model: CodecModel) -> None:
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]); from tests.test_entropy_determinism import record; "
              "from vqcodec.zoo import load_model; print(json.dumps(record(load_model())))")
    done = subprocess.run([sys.executable, "-c", script, str(Path(__file__).resolve().parents[1])],
                          capture_output=True, text=True, check=True,
                          env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PATH": ""})
    assert json.loads(done.stdout) == record(model)


def test_tiled_encoding_codes_the_same_streams(model: CodecModel) -> None:
    rgb = crop()
    whole = codec.encode_indices(model, rgb, 4)
    tiled = codec.encode_indices(model, rgb, 4, tile=2)
    assert np.array_equal(whole, tiled)
    assert model.prior.encode_grids(whole) == model.prior.encode_grids(tiled)


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(record(load_model()), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
