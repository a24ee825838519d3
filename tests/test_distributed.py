"""Two CPU ranks under torchrun keep identical codebooks and decoders, and only rank 0 writes files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import noise_image


def free_port() -> int:
    """A port no process listens on now: a fixed one fails when two test runs share the machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("split", [False, True])
def test_two_ranks_share_one_codebook(tmp_path: Path, split: bool) -> None:
    """With a second decoder (split), steps of fewer stages leave it unused, which DDP must be told."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(8):
        noise_image(40, 40, seed=i).save(data / f"{i}.png")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         str(Path(__file__).with_name("dist_worker.py")), str(data), str(out), *(["split"] if split else [])],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    r0, r1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key
    assert any(k.startswith("top_decoder.") for k in r0) == split
    assert sorted(p.name for p in out.iterdir()) == [
        "model.ckpt", "model.jsonl", "model.safetensors", "rank0.safetensors", "rank1.safetensors"]
