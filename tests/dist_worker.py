"""Run by test_distributed under torchrun: train a tiny model, then save this rank's codebooks."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import TINY  # noqa: E402
from vqcodec.train import TrainConfig, train  # noqa: E402


def main(data: Path, out: Path) -> None:
    cfg = TrainConfig(data=data, out=out / "model.safetensors", model=TINY, steps=10, pretrain_steps=3,
                      batch_size=2, crop=16, kmeans_batches=2, restart_every=2, checkpoint_every=5, workers=0)
    net = train(cfg)
    rank = dist.get_rank()
    codebooks = {f"stage{i}": s.codebook.clone() for i, s in enumerate(net.quantizer.stages)}
    codebooks["restart_probe"] = torch.tensor([float(net.quantizer.stages[0].cluster_size.sum())])
    save_file(codebooks, str(out / f"rank{rank}.safetensors"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
