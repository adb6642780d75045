"""DistributedDataParallel in one code path: detected from the environment torchrun sets.

A plain ``alexnet train`` is a world of one; under ``torchrun --nproc-per-node N`` each
process is a rank, only rank 0 writes, and metrics are summed across ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .device import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup(device: str) -> Dist:
    """Join the process group if torchrun started us; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(device=resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, chosen)


def teardown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


def sum_across(d: Dist, *values: torch.Tensor) -> list[torch.Tensor]:
    """Sum each tensor over all ranks (a no-op for a world of one)."""
    if not d.active:
        return list(values)
    packed = torch.stack([v.to(d.device, torch.float64) for v in values])
    dist.all_reduce(packed)
    return list(packed.unbind())


def gather_objects(d: Dist, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (used for each rank's random state)."""
    if not d.active:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def any_rank(d: Dist, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (so all ranks stop at the same step)."""
    if not d.active:
        return flag
    t = torch.tensor([float(flag)], device=d.device)
    dist.all_reduce(t)
    return bool(t.item())


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()
