"""Many processes on one or many machines, through torch.distributed.

Launch with the usual engines, e.g. ``torchrun --nproc_per_node 4 -m gligen_eval run cfg.yaml`` or
``accelerate launch --multi_gpu --num_processes 4 -m gligen_eval run cfg.yaml``. Each rank takes a
deterministic share of the work, writes its own record files, and rank 0 merges and scores.

Work is split by *chunks* (generation batches, detector batches) of the single-process order:
rank ``r`` of ``w`` takes chunks ``r, r + w, r + 2w, ...``. A chunk holds the same samples in the same
order as in a one-process run, so every image and every detection is computed from exactly the same
batch, and the merged metrics equal the one-process metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
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


def env_world() -> DistInfo:
    """Rank and world size as set by torchrun / accelerate / Slurm-launched torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return DistInfo(rank, world, local)


def init(device: str) -> DistInfo:
    """Join the process group when launched with several processes (gloo on CPU, nccl on CUDA)."""
    info = env_world()
    if not info.enabled:
        return info
    import torch.distributed as dist

    if not dist.is_initialized():
        from accelerate import PartialState

        PartialState(cpu=not device.startswith("cuda"))
    return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(info: DistInfo, obj):
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def my_chunks(items: Sequence[T], size: int, info: DistInfo) -> list[Sequence[T]]:
    """The chunks of ``items`` (in one-process order) that this rank processes."""
    return chunks(items, size)[info.rank :: info.world_size]


def local_device(device: str, info: DistInfo) -> str:
    """``cuda`` becomes ``cuda:<local_rank>`` when several processes share a machine."""
    if device == "cuda" and info.enabled:
        return f"cuda:{info.local_rank}"
    return device
