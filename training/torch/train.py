"""The PyTorch `Trainer`: AdamW steps on the shared batches, eval-mode forward, atomic snapshots.

The loop itself (schedule, evaluation, log, resume) is `posezoo.training.loop`, shared with TF.
Under torchrun the network is wrapped in DistributedDataParallel: each rank runs its share of the
global batch, and every loss is divided by its normaliser summed over the ranks, so the averaged
gradient is the single-process gradient of the whole batch.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from posezoo.runtime.files import atomic_output
from posezoo.runtime.session import physical_cores

from ..pretrained import imagenet_weights
from ..run import SNAPSHOT_HELP, Run, RunError
from .distributed import all_reduce_sum, join, uses_cuda
from .nets import PoseNet, create_model, resnet50_from_torchvision

#: A loss term's normaliser -> what the term is divided by (the sum over ranks under DDP).
Norm = Callable[[torch.Tensor], torch.Tensor]


def _at_least_one(total: torch.Tensor) -> torch.Tensor:
    return total.clamp(min=1)


def build_net(run: Run) -> PoseNet:
    """The run's network: its keypoint (and unique keypoint) channels, plus part-affinity and
    identity heads for a multi-animal project."""
    net = create_model(run.cfg.model.name, run.channels, **run.cfg.model.kwargs)
    heads = run.heads()
    return net.add_heads(heads) if heads else net


def multi_losses(net_out: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor], paf_weight: float,
                 identity_weight: float, norm: Norm = _at_least_one) -> list[torch.Tensor]:
    """Part-affinity fields: smooth-L1 averaged over every cell (most are zero: no field off
    the limbs); identity: cross-entropy on the cells near a keypoint of a known individual."""
    paf = F.smooth_l1_loss(net_out[2], batch["paf"], beta=1.0)
    out = [paf_weight * paf]
    if "identity" in batch:
        target = batch["identity"]
        ident = F.cross_entropy(net_out[3], target.clamp(min=0), reduction="none")
        known = (target >= 0).to(ident.dtype)
        out.append(identity_weight * (ident * known).sum() / norm(known.sum()))
    return out


def losses(net_out: tuple[torch.Tensor, torch.Tensor], batch: dict[str, torch.Tensor],
           locref_weight: float, norm: Norm = _at_least_one) -> tuple[torch.Tensor, torch.Tensor]:
    logits, locref = net_out
    weight = batch["weight"][:, :, None, None]
    heat = F.binary_cross_entropy_with_logits(logits, batch["heatmap"], reduction="none")
    heat_loss = (heat * weight).sum() / norm(weight.sum() * logits.shape[2] * logits.shape[3])
    mask = (batch["locref_mask"] * batch["weight"][:, :, None, None])[:, :, None]
    loc = F.smooth_l1_loss(locref, batch["locref"], reduction="none", beta=1.0) * mask
    loc_loss = loc.sum() / norm(2 * mask.sum())
    return heat_loss, locref_weight * loc_loss


class TorchTrainer:
    """The run's network and AdamW optimiser; snapshots are ``snapshots/{last,best}.pt``."""

    TARGETS = ("image", "heatmap", "locref", "locref_mask", "weight", "paf", "identity")

    def __init__(self, run: Run) -> None:
        cfg = run.cfg
        self.run = run
        self.world = join(cfg.train.device)
        # processes on one machine share its cores
        torch.set_num_threads(cfg.train.threads or max(1, physical_cores() // self.world.local_size))
        torch.manual_seed(cfg.train.seed)
        cuda = uses_cuda(cfg.train.device)
        self.device = torch.device(_cuda_device(cfg.train.device, self.world.local_rank, self.world.size) if cuda
                                   else "cpu")
        self.net = build_net(run).to(self.device)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.optimizer.lr,
                                     weight_decay=cfg.optimizer.weight_decay)
        self.norm: Norm = _at_least_one
        self._ddp: torch.nn.Module | None = None  # wrapped at the first step: a trainer that only
        # evaluates (rank 0's final metrics) must not wait for the other ranks
        if self.world.size > 1:
            size = self.world.size
            self.norm = lambda total: all_reduce_sum(total).clamp(min=1) / size

    def path(self, name: str) -> Path:
        return self.run.snapshots / f"{name}.pt"

    def has_snapshot(self, name: str) -> bool:
        return self.path(name).is_file()

    def step(self, batch: dict[str, np.ndarray], lr: float) -> tuple[float, ...]:
        self.net.train()
        if self.world.size > 1:
            lr = self.world.broadcast(lr)  # a time-limited schedule follows each rank's own clock
        for group in self.opt.param_groups:
            group["lr"] = lr
        tensors = {k: torch.from_numpy(batch[k]).to(self.device) for k in self.TARGETS if k in batch}
        out = self._train_model()(tensors["image"])
        terms = list(losses(out[:2], tensors, self.run.cfg.train.locref_weight, self.norm))
        if "paf" in tensors:
            multi = self.run.cfg.multi
            terms += multi_losses(out, tensors, multi.paf_weight, multi.identity_weight, self.norm)
        self.opt.zero_grad(set_to_none=True)
        sum(terms).backward()  # type: ignore[union-attr]
        self.opt.step()
        # each rank's terms are its share of the global batch's: their mean is the batch's loss
        return self.world.mean(tuple(t.item() for t in terms))

    def _train_model(self) -> torch.nn.Module:
        if self.world.size == 1:
            return self.net
        if self._ddp is None:
            cuda = self.device.type == "cuda"
            self._ddp = DistributedDataParallel(self.net, device_ids=[self.device] if cuda else None)
        return self._ddp

    @torch.no_grad()
    def forward(self, frames: np.ndarray) -> tuple[np.ndarray, ...]:
        self.net.eval()
        logits, locref, *extra = self.net(torch.from_numpy(frames).to(self.device))
        out = [torch.sigmoid(logits).cpu().numpy(), locref.cpu().numpy()]
        for name, value in zip(getattr(self.net, "heads", {}), extra):
            out.append((torch.softmax(value, 1) if name == "identity" else value).cpu().numpy())
        return tuple(out)

    def save(self, name: str, state: dict[str, Any]) -> None:
        """torch.save to a temporary file, then rename: a kill -9 never leaves half a snapshot."""
        full = {**state, "model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                "torch_rng": torch.get_rng_state()}
        with atomic_output(self.path(name)) as tmp:
            torch.save(full, tmp)

    def restore(self, name: str) -> dict[str, Any]:
        path = self.path(name)
        if not path.is_file():
            raise FileNotFoundError(f"snapshot not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            self.net.load_state_dict(state["model"])
            self.opt.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, EOFError, ValueError, OSError, pickle.UnpicklingError) as exc:
            raise RunError(f"{path}: not a usable snapshot of this run ({str(exc)[:200]}); {SNAPSHOT_HELP}") from None
        torch.set_rng_state(state["torch_rng"])
        return {k: v for k, v in state.items() if k not in ("model", "optimizer", "torch_rng")}

    def initialise(self, snapshot: Path) -> tuple[int, int]:
        """Copy the tensors of another run's snapshot whose names and shapes fit this network."""
        try:
            theirs = torch.load(snapshot, map_location="cpu", weights_only=False)["model"]
        except (RuntimeError, KeyError, EOFError, OSError, pickle.UnpicklingError) as exc:
            raise RunError(f"{snapshot}: not a usable posezoo torch snapshot ({str(exc)[:200]})") from None
        return self._load_fitting(theirs)

    def initialise_imagenet(self) -> tuple[int, int]:
        """Start the backbone from its ImageNet weights (`posezoo.training.pretrained`)."""
        arrays = imagenet_weights(self.net.name)  # refuses networks without public weights
        return self._load_fitting(resnet50_from_torchvision(arrays))

    def _load_fitting(self, theirs: dict[str, torch.Tensor]) -> tuple[int, int]:
        own = self.net.state_dict()
        fit = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
        self.net.load_state_dict(fit, strict=False)
        return len(fit), len(own)

    def state_arrays(self) -> list[tuple[str, np.ndarray]]:
        """The weights as (name, array) pairs, for the exported model's weights hash."""
        return [(k, t.detach().cpu().contiguous().numpy()) for k, t in self.net.state_dict().items()]


def _cuda_device(device: str, local_rank: int, world_size: int) -> str:
    """A process's GPU: its local rank's under torchrun, else the one ``train.device`` names."""
    if world_size > 1:
        return f"cuda:{local_rank}"
    return device.replace("gpu", "cuda") if ":" in device else "cuda"
