"""Data-parallel training helpers (``torchrun``: one process per GPU or CPU worker).

``torchrun --nproc_per_node=N -m nmt train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; every process builds the same model from the same seed, reads its own
shard of the token-budget batches, and ``DistributedDataParallel`` averages gradients.
Only rank 0 writes logs, metrics and checkpoints. See docs/training.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group described by the torchrun environment (no-op when absent).

    Uses NCCL for CUDA and gloo for CPU. On CUDA each process takes GPU ``LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device_type == "cuda" else "gloo",
            rank=info.rank,
            world_size=info.world_size,
        )
    return info


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce(value: torch.Tensor, info: DistInfo, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (sum, max or min) of a tensor; identity on one process."""
    if info.enabled:
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        dist.all_reduce(value, op=ops[op])
    return value


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (small picklable values: decisions, metrics)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap_ddp(module: torch.nn.Module, device: torch.device, info: DistInfo) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``module`` when running on several processes."""
    if not info.enabled:
        return module

    ids = [device.index] if device.type == "cuda" else None
    return DDP(module, device_ids=ids)
