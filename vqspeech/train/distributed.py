"""Process-group setup for torchrun (DistributedDataParallel); a single process needs none of it."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init() -> tuple[int, int]:
    """Initialise from torchrun's environment if present -> (rank, world_size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def world_size() -> int:
    """Processes in this run (1 without torchrun)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def device(rank: int) -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count()
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def mean(value: torch.Tensor) -> torch.Tensor:
    """Average a scalar over processes (for logging)."""
    if dist.is_initialized():
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Tear the group down together: a process that destroys it while another still saves or logs through it
    can abort in gloo's threads ("terminate called without an active exception", seen once in CI)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
