"""The learned prior's integer arithmetic gives the same contexts and probabilities everywhere.

A learned prior of the full shipped shape (64-dimensional codes, 512 codes, 8 stages, 256
contexts) is built from seeded random integers: weights over the whole int8 range stress the
exactness bound harder than trained ones. `tests/golden/learned-prior.json` records, for a fixed
index grid, every cell's context and the exact float64 probability (as hex) of its code, stage by
stage, and the SHA-256 of the range-coded streams. It was written on this project's machine by
running this file as a script (`python tests/test_entropy_determinism.py`); CI runs on another
machine, and any change of the arithmetic, the schedule or constriction that alters one bit
fails the test. Then the same with 1 and 2 BLAS threads, and in another process.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from vqcodec import codec
from vqcodec.entropy import ContextPrior
from vqcodec.entropy.context_net import IntContextNet, IntLayer, NetShape
from vqcodec.entropy.learned import LearnedPrior

GOLDEN = Path(__file__).parent / "golden" / "learned-prior.json"
ROOT = Path(__file__).resolve().parents[1]
K = 512


def seeded_prior(seed: int = 2026) -> LearnedPrior:
    """A learned prior of the shipped shape from seeded random integers (no training: only the arithmetic matters)."""
    rng = np.random.default_rng(seed)
    shape = NetShape()

    def layer(out: int, inp: int, k: int, scale: int) -> IntLayer:
        return IntLayer(rng.integers(-127, 128, (out, inp, k, k)), rng.integers(-5000, 5000, out),
                        rng.integers(scale // 2, scale * 2, out))

    net = IntContextNet(
        shape=shape,
        proj=layer(shape.proj, 2 * shape.dim, 1, 1500),
        stage_bias=rng.integers(-3000, 3000, (shape.stages, shape.proj)),
        spatial=layer(shape.spatial, shape.dim + 1, 1, 2000),
        conv=layer(shape.hidden, shape.proj + shape.spatial, 3, 600),
        mid=layer(shape.hidden, shape.hidden, 1, 1500),
        out=layer(shape.contexts, shape.hidden, 1, 1 << 16),
    )
    groups = rng.integers(0, 128, (1, K))
    stage0 = ContextPrior(rng.integers(1, 1000, (1, 129, K)), groups)
    return LearnedPrior(stage0, net, rng.integers(1, 1000, (shape.stages, shape.contexts, K)),
                        rng.integers(-40, 41, (shape.stages, K, shape.dim)),
                        rng.integers(-127, 128, (shape.stages, K, shape.dim)))


def grid(seed: int = 7) -> np.ndarray:
    """A fixed (8, 12, 16) index grid with some spatial structure."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, K, (8, 12, 16))
    g[:, :, 8:] = g[:, :, :8] // 2
    return g


def record(prior: LearnedPrior, g: np.ndarray) -> dict:
    """Contexts, exact probabilities of the coded symbols, and the hash of the streams."""
    out: dict = {"stages": []}
    for s in range(g.shape[0]):
        if s == 0:
            ctx = prior.stage0._contexts(g[:1], 0)
            rows = prior.stage0.counts[0][ctx]
        else:
            ctx = prior.contexts(g, s).ravel()
            rows = prior.counts[s][ctx]
        symbols = g[s].ravel()
        p = rows[np.arange(len(symbols)), symbols].astype(np.float64) / rows.sum(1).astype(np.float64)
        out["stages"].append({"contexts": ctx.astype(int).tolist(), "probabilities": [float(v).hex() for v in p]})
    out["streams_sha256"] = hashlib.sha256(b"".join(prior.encode_grids(g))).hexdigest()
    return out


@pytest.fixture(scope="module")
def prior() -> LearnedPrior:
    return seeded_prior()


def test_golden_contexts_and_probabilities_byte_for_byte(prior: LearnedPrior) -> None:
    got = record(prior, grid())
    assert len({c for st in got["stages"][1:] for c in st["contexts"]}) > 8, "the seeded network must use many contexts"
    assert got == json.loads(GOLDEN.read_text())


def test_round_trip_of_the_golden_grid(prior: LearnedPrior) -> None:
    g = grid()
    assert np.array_equal(prior.decode_grids(prior.encode_grids(g), *g.shape[1:]), g)


def test_same_with_one_and_two_blas_threads(prior: LearnedPrior) -> None:
    g = grid(seed=11)
    with threadpool_limits(1):
        one = record(prior, g)
    with threadpool_limits(2):
        two = record(prior, g)
    assert one == two


def test_same_in_another_process(prior: LearnedPrior) -> None:
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
              "from tests.test_entropy_determinism import grid, record, seeded_prior; "
              "print(json.dumps(record(seeded_prior(), grid())))")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, check=True, env=env)
    assert json.loads(done.stdout) == record(prior, grid())


CONTEXT_PRIOR_STREAMS = "4dd2271b4ad18901a8536e439c6a6e83b03f063cd3029eb231f6f746599c663b"
"""SHA-256 of a seeded context prior's streams for a seeded grid, as vqcodec 0.8.0 wrote them (before the
prior cached its constriction models and sorted the cells by context once per stage)."""


def test_context_prior_streams_are_those_of_0_8_0() -> None:
    rng = np.random.default_rng(2027)
    counts, groups = rng.integers(1, 1000, (4, 129, K)), rng.integers(0, 128, (4, K))
    g = rng.integers(0, K, (4, 12, 16))
    g[:, :, 8:] = g[:, :, :8] // 2
    prior = ContextPrior(counts, groups)
    streams = prior.encode_grids(g)
    assert hashlib.sha256(b"".join(streams)).hexdigest() == CONTEXT_PRIOR_STREAMS
    assert prior.encode_grids(g) == streams  # again, from the cached models
    assert np.array_equal(prior.decode_grids(streams, 12, 16), g)


def test_tiled_encoding_codes_the_same_streams(default_model, kodak_crop) -> None:
    """The networks run in tiles; the grids, and so the entropy-coded streams, are those of the whole image."""
    rgb = np.asarray(kodak_crop)
    whole = codec.encode_indices(default_model, rgb, 4)
    tiled = codec.encode_indices(default_model, rgb, 4, tile=2)
    assert np.array_equal(whole, tiled)
    assert default_model.prior.encode_grids(whole) == default_model.prior.encode_grids(tiled)


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(record(seeded_prior(), grid())) + "\n")
    print(f"wrote {GOLDEN}")
