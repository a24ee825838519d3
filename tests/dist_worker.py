"""Run by test_distributed under torchrun: train a tiny model (with a second decoder for 2 or more stages when
asked), then save this rank's codebooks and decoder weights."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import TINY  # noqa: E402
from vqcodec.train import TrainConfig, train  # noqa: E402


def main(data: Path, out: Path, split: bool) -> None:
    model = replace(TINY, top_decoder_from=2) if split else TINY
    cfg = TrainConfig(data=data, out=out / "model.safetensors", model=model, steps=10, pretrain_steps=3,
                      batch_size=2, crop=16, kmeans_batches=2, restart_every=2, checkpoint_every=5, workers=0)
    net = train(cfg)
    rank = dist.get_rank()
    codebooks = {f"stage{i}": s.codebook.clone() for i, s in enumerate(net.quantizer.stages)}
    codebooks["restart_probe"] = torch.tensor([float(net.quantizer.stages[0].cluster_size.sum())])
    # weights only: each rank keeps its own BatchNorm statistics (rank 0's are written)
    decoders = [(k, v) for k, v in net.named_parameters() if k.startswith(("decoder.", "top_decoder."))]
    codebooks.update({k: v.detach().clone().contiguous() for k, v in decoders})
    save_file(codebooks, str(out / f"rank{rank}.safetensors"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:] == ["split"])
