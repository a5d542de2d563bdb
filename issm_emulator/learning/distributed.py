"""Distributed training (``torchrun``) helpers: the process's place in the job, and the replicas' agreement."""

from __future__ import annotations

import os

import torch
from torch import nn

__all__ = ["dist_env", "replica_difference"]


def dist_env() -> tuple[int, int, int]:
    """``(world size, rank, local rank)`` from torchrun's environment (``(1, 0, 0)`` without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return world, rank, local


def replica_difference(module: nn.Module) -> float:
    """Largest ``|w - w_rank0|`` over all weights and ranks (0 when the DDP replicas agree)."""
    worst = torch.zeros((), dtype=torch.float64)
    for p in module.parameters():
        ref = p.detach().clone()
        torch.distributed.broadcast(ref, src=0)
        worst = torch.maximum(worst, (p.detach() - ref).abs().max().double().cpu())
    dev = next(module.parameters()).device
    worst = worst.to(dev)
    torch.distributed.all_reduce(worst, op=torch.distributed.ReduceOp.MAX)
    return float(worst)
