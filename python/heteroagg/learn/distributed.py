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

    def agree(
        self, flags: tuple[bool, ...], loss: float, device: torch.device
    ) -> tuple[tuple[bool, ...], float]:
        """Rank 0's ``flags`` and the mean of every rank's ``loss``, on every rank.

        Decisions taken from a clock (a time budget, a checkpoint due) differ
        between processes; a rank that stops or waits at a barrier alone would
        leave the others hanging in their next collective.  The mean loss is
        not finite when any rank's is, so every rank sees a divergence at once.
        """
        if self.world == 1:
            return flags, loss
        import torch.distributed as dist

        mine = [float(f and self.main) for f in flags]
        shared = torch.tensor([*mine, loss], dtype=torch.float64, device=device)
        dist.all_reduce(shared)
        values = shared.tolist()
        return tuple(v > 0 for v in values[:-1]), values[-1] / self.world


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group when started by ``torchrun`` with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())
