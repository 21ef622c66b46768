"""Processes under ``torchrun``: who this process is, and the few collectives the run verbs use.

train, evaluate and predict all import this module and none of them imports another for it.
Every helper is a no-op (or returns this process's own value) in a single process, so callers
need not ask first; ``torch`` is imported inside the functions that need it, and
:func:`dist_info` falls back to the ``torchrun`` environment when torch is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DistInfo:
    """This process's rank, the number of processes and the rank on this node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """This process's rank and the number of processes (torch.distributed, else torchrun env)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return DistInfo(dist.get_rank(), dist.get_world_size(),
                            int(os.environ.get("LOCAL_RANK", 0)))
    except ImportError:  # pragma: no cover - torch is a training dependency
        pass
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def _active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_process_group(world_size: int, device) -> bool:
    """Join the process group under torchrun unless the caller has; True if this call did
    (the caller then destroys it). NCCL for a CUDA ``device``, gloo otherwise."""
    if world_size <= 1:
        return False
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def barrier(device=None) -> None:
    """Wait for every process. Under NCCL pass this rank's CUDA ``device``: the barrier then
    runs on it instead of on a device NCCL would have to guess."""
    if not _active():
        return
    import torch.distributed as dist

    if device is not None and device.type == "cuda":
        dist.barrier(device_ids=[device.index or 0])
    else:
        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if not _active():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_ok(ok: bool, device) -> bool:
    """True when ``ok`` holds on every process (a collective: every rank must call it)."""
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1 if ok else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def sum_counts(counts: np.ndarray, device) -> np.ndarray:
    """Element-wise sum of an integer array over all processes (a collective)."""
    import torch
    import torch.distributed as dist

    t = torch.from_numpy(np.ascontiguousarray(counts)).to(device)
    dist.all_reduce(t)
    return t.cpu().numpy()
