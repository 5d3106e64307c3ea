"""Data-parallel training across processes: which process this is, and the few collectives the
shared loop needs, with a single-process stand-in so the loop reads the same either way.

`torchrun` (or `srun` with the same variables) starts one process per device and sets
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; the PyTorch backend joins them into a process group
(`posezoo.training.torch.distributed`). Rank 0 writes the run directory, log and snapshots; every
rank computes its share of each global batch. TensorFlow trains on several devices of one machine
in one process (MirroredStrategy), so its world is always the single process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class World:
    """This process among ``size`` training processes; the base class is one process alone."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes the run directory, the log and the snapshots."""
        return self.rank == 0

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object) on every rank."""
        return value

    def mean(self, values: tuple[float, ...]) -> tuple[float, ...]:
        """Element-wise mean over the ranks."""
        return values

    def barrier(self) -> None:
        """Wait until every rank got here."""

    def close(self) -> None:
        """Leave the process group (at the end of training)."""


SINGLE = World()


def launched() -> World:
    """The ranks torchrun (or srun) set in the environment; `SINGLE` when there are none."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return SINGLE
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    return World(rank, size, local, local_size)
