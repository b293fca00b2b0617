"""The process group of a run started by ``torchrun`` with several processes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Distributed:
    """This process's rank among ``world`` processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def agree(self, flags: tuple[bool, ...], device: torch.device) -> tuple[bool, ...]:
        """Rank 0's ``flags`` on every rank.

        Decisions taken from a clock (a time budget, a checkpoint due) differ
        between processes; a rank that stops or waits at a barrier alone would
        leave the others hanging in their next collective.
        """
        if self.world == 1:
            return flags
        import torch.distributed as dist

        shared = torch.tensor(flags, dtype=torch.uint8, device=device)
        dist.broadcast(shared, src=0)
        return tuple(bool(v) for v in shared.tolist())


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group when started by ``torchrun`` with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())
