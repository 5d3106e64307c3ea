"""The PyTorch process group behind `training.distributed.World`: NCCL between GPUs, gloo on CPUs.

Joined once per process, from the variables torchrun sets; the master address and port come from
there too (``MASTER_ADDR``/``MASTER_PORT``), so the same code runs under ``torchrun`` on one
machine, ``torchrun --nnodes`` across machines, or ``srun`` with those variables exported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..distributed import SINGLE, World, launched

_JOINED: list[World] = []


@dataclass(frozen=True)
class TorchWorld(World):
    def broadcast(self, value: Any) -> Any:
        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, values: tuple[float, ...]) -> tuple[float, ...]:
        tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        dist.all_reduce(tensor)
        return tuple((tensor / self.size).tolist())

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
        _JOINED.clear()


def join(device: str = "auto") -> World:
    """This process's world: joins the process group on first call when torchrun started several
    processes (NCCL when they train on CUDA, else gloo); `SINGLE` otherwise."""
    if _JOINED:
        return _JOINED[0]
    world = launched()
    if world.size > 1:
        cuda = uses_cuda(device)
        if cuda:
            torch.cuda.set_device(world.local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        world = TorchWorld(world.rank, world.size, world.local_rank, world.local_size)
    else:
        world = SINGLE
    _JOINED.append(world)
    return world


def uses_cuda(device: str) -> bool:
    """Whether ``train.device`` means a GPU here ("auto": when torch sees one)."""
    if device == "cpu":
        return False
    if device == "auto":
        return torch.cuda.is_available()
    return True  # cuda, cuda:N, gpu, gpu:N: a missing GPU fails loudly in torch


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over the ranks of a tensor without gradient (a loss's normaliser)."""
    out = tensor.detach().clone()
    dist.all_reduce(out)
    return out
