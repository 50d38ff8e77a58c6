"""This process's place among the processes of a distributed run, and the little coordination that
prediction needs.

``torchrun`` (or any launcher that sets the same variables) starts the
processes and tells each its ``RANK`` of ``WORLD_SIZE``, and its
``LOCAL_RANK`` of ``LOCAL_WORLD_SIZE`` on its node. A single process is rank 0
of 1. Processes share out work by position (:meth:`Ranks.mine`: every
``world``-th item from ``rank``) and synchronise over a gloo process group:
barriers and a few integers, on the CPU, whatever device the model runs on
(prediction exchanges no tensors, so NCCL is not needed).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

from .errors import UserError

TIMEOUT = timedelta(days=1)
"""How long a process waits at a barrier for the others: the ranks finish their shares at different
times. A process that dies breaks the group at once (its connections close)."""


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Ranks:
        """The variables torchrun sets; rank 0 of 1 without them."""
        values = [
            int(environ.get(name, default))
            for name, default in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "1"))
        ]
        ranks = cls(*values)
        if not (0 <= ranks.rank < ranks.world and 0 <= ranks.local_rank < ranks.local_world):
            raise UserError(f"inconsistent RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE: {values}")
        return ranks

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def mine(self, position: int) -> bool:
        """Whether the item at ``position`` is this process's: every ``world``-th from ``rank``."""
        return position % self.world == self.rank

    def device(self, device: str) -> str:
        """The device of this process: with several processes, ``cuda`` is GPU ``LOCAL_RANK`` (modulo
        the GPUs it can see, so that a launcher that gives each process one GPU works too); any other
        device, or an explicit ``cuda:N``, as given."""
        if device != "cuda" or not self.distributed:
            return device
        import torch

        return f"cuda:{self.local_rank % max(torch.cuda.device_count(), 1)}"

    def threads(self) -> int | None:
        """CPU threads for the engine of this process: the cores it may use shared among the processes
        of its node; None (the engine's default) for a single process."""
        if not self.distributed:
            return None
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // self.local_world)

    @contextlib.contextmanager
    def joined(self) -> Iterator[Ranks]:
        """The gloo process group of a distributed run, for the block (nothing for a single process)."""
        if not self.distributed:
            yield self
            return
        import torch.distributed as dist

        dist.init_process_group("gloo", rank=self.rank, world_size=self.world, timeout=TIMEOUT)
        try:
            yield self
        finally:
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: int) -> int:
        """Rank 0's ``value``, in every process."""
        if not self.distributed:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.int64)
        dist.broadcast(tensor, src=0)
        return int(tensor.item())

    def sum(self, values: list[float]) -> list[float]:
        """The sums of ``values`` over all processes, in every process."""
        if not self.distributed:
            return list(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()
