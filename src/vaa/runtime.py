"""One process's place in a run: its device, precision, and rank among the
processes of a ``torch.distributed`` job.

A plain ``vaa train`` is one process (rank 0 of 1). Under
``torchrun --nproc_per_node N -m vaa ...`` torchrun sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`runtime_for` then joins the process
group (gloo on the CPU, nccl on CUDA, each process on ``cuda:LOCAL_RANK``) and
the Trainer wraps the model in DistributedDataParallel. The rules every stage
follows under DDP:

- every rank computes, only rank 0 (``is_main``) writes files;
- work that is split (training batches, evaluation batches, the V1/V2 cache)
  is split by whole batches of the single-process order, so gathering the
  pieces gives exactly the single-process result;
- decisions (early stopping, the plateau schedule) are taken on gathered
  figures, so every rank takes the same one.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .device import check_precision, resolve_device


@dataclass(frozen=True)
class Runtime:
    """Device, precision, and this process's rank among ``world_size``."""

    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # -- collectives (no-ops in a single process) --------------------------
    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def gather_to_main(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (None elsewhere)."""
        if not self.distributed:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def first_error(self, message: str | None) -> str | None:
        """The first rank's error message (rank order), or None when no rank
        had one. Every rank calls it at the same point after work that may
        fail on some ranks only, then raises alike: one rank stopping alone
        would leave the others waiting in their next collective until the
        30-minute timeout."""
        if not self.distributed:
            return message
        return next((m for m in self.all_gather(message) if m is not None), None)

    def sum(self, value: float) -> float:
        """Sum of a number over the ranks (float64, so the order of addition
        does not matter for the figures logged)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return float(t.item())


def _env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def runtime_for(device: str = "auto", precision: str = "fp32") -> Runtime:
    """The runtime of this process: joins the torchrun process group when
    there is one (``WORLD_SIZE`` > 1), once per process."""
    rank, world, local = _env_world()
    if world <= 1:
        resolved = resolve_device(device)
        return Runtime(resolved, check_precision(precision, resolved))
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this torch has no torch.distributed")
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        # one process per GPU: the local rank picks it (cuda:N in the setting is ignored under torchrun)
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"local rank {local} has no GPU ({torch.cuda.device_count()} visible): use --nproc_per_node <= the number of GPUs"
            )
        resolved = torch.device("cuda", local)
        torch.cuda.set_device(resolved)
    elif resolved.type == "mps":
        raise ValueError("torch.distributed does not run on MPS; use --device cpu (gloo) or CUDA GPUs (nccl)")
    if not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise ValueError("the process group does not match RANK/WORLD_SIZE of the environment")
    return Runtime(resolved, check_precision(precision, resolved), rank, world)


def leave_process_group() -> bool:
    """Destroy the process group this process joined, if any; True when it did.

    Why: a process that exits with its group alive leaves gloo's (or nccl's)
    worker threads to be torn down during interpreter finalisation, which can
    abort the process (SIGABRT, "terminate called without an active
    exception") after its work is done. The CLI calls this when a command
    ends normally or with one of its own errors, which every rank raises
    together (a NaN on one rank stops all of them); an unexpected exception is
    left alone, since destroying a group while other ranks still wait in a
    collective can hang them."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    dist.destroy_process_group()
    return True


LOCAL = Runtime()

__all__ = ["Runtime", "runtime_for", "leave_process_group", "LOCAL"]
