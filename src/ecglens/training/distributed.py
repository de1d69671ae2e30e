"""Process-group helpers: the same training code runs as one process or under ``torchrun``.

``torchrun --nproc_per_node N`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
without them everything below degrades to single-process no-ops, so nothing
assumes CUDA or more than one process.

ecglens's own collectives (sums, objects, barriers) run on a gloo group of
their own, which ``cleanup`` destroys. Why: a gloo worker thread drops a
finished collective (and the Python tensors it holds) only after the caller
has moved on, and a process group that DistributedDataParallel has wrapped
stays alive after ``destroy_process_group`` (torch keeps a reference), so its
threads could drop such tensors while the interpreter is shutting down, which
aborts the process ("terminate called without an active exception"). Our group
is released for real in ``cleanup``, joining its threads while Python is alive;
the default group carries only DDP's own traffic, which ends with the last
training step, long before teardown.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

_GROUP: dist.ProcessGroup | None = None  # ecglens's own collectives (module docstring)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its rank, the number of processes, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def default_device(local_rank: int = 0) -> torch.device:
    """``cuda:<local_rank>`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{local_rank % torch.cuda.device_count()}")
    return torch.device("cpu")


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (nccl with CUDA, gloo on CPU) and create the
    gloo group of ecglens's own collectives (module docstring).

    Safe to call more than once and in a plain single process, where it
    starts no group and returns rank 0 of 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = default_device(local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not is_distributed():
        dist.init_process_group(backend or ("nccl" if device.type == "cuda" else "gloo"), rank=rank, world_size=world)
    global _GROUP
    if is_distributed() and _GROUP is None:
        _GROUP = dist.new_group(backend="gloo")
    return DistInfo(get_rank(), get_world_size(), local, device)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one process that writes files."""
    return get_rank() == 0


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over all processes (float64 on the way, same device back)."""
    if not is_distributed():
        return values
    t = values.detach().to("cpu", torch.float64).clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=_GROUP)
    return t.to(values.device)


def all_reduce_mean(value: torch.Tensor | float) -> torch.Tensor | float:
    """The mean of ``value`` over all processes; a float stays a float."""
    if isinstance(value, torch.Tensor):
        return all_reduce_sum(value) / get_world_size()
    return float(all_reduce_sum(torch.tensor(float(value), dtype=torch.float64)).item()) / get_world_size()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order, on every process."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj, group=_GROUP)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=_GROUP)
    return box[0]


def barrier() -> None:
    if is_distributed():
        dist.barrier(group=_GROUP)


def cleanup() -> None:
    """Leave the process groups (no-op in a single process): ours is destroyed here, its threads joined."""
    global _GROUP
    if is_distributed():
        _GROUP = None  # our last reference: destroy_process_group can now free the group
        dist.destroy_process_group()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
