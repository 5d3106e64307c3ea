"""The PyTorch `Trainer`: AdamW steps on the shared batches, eval-mode forward, atomic snapshots.

The loop itself (schedule, evaluation, log, resume) is `posezoo.training.loop`, shared with TF.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from posezoo.runtime.files import atomic_output
from posezoo.runtime.session import physical_cores

from ..run import Run, RunError
from .nets import PoseNet, create_model


def build_net(run: Run) -> PoseNet:
    return create_model(run.cfg.model.name, len(run.project.keypoints), **run.cfg.model.kwargs)


def losses(net_out: tuple[torch.Tensor, torch.Tensor], batch: dict[str, torch.Tensor],
           locref_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    logits, locref = net_out
    weight = batch["weight"][:, :, None, None]
    heat = F.binary_cross_entropy_with_logits(logits, batch["heatmap"], reduction="none")
    heat_loss = (heat * weight).sum() / (weight.sum() * logits.shape[2] * logits.shape[3]).clamp(min=1)
    mask = (batch["locref_mask"] * batch["weight"][:, :, None, None])[:, :, None]
    loc = F.smooth_l1_loss(locref, batch["locref"], reduction="none", beta=1.0) * mask
    loc_loss = loc.sum() / (2 * mask.sum()).clamp(min=1)
    return heat_loss, locref_weight * loc_loss


class TorchTrainer:
    """The run's network and AdamW optimiser; snapshots are ``snapshots/{last,best}.pt``."""

    TARGETS = ("image", "heatmap", "locref", "locref_mask", "weight")

    def __init__(self, run: Run) -> None:
        cfg = run.cfg
        self.run = run
        torch.set_num_threads(cfg.train.threads or physical_cores())
        torch.manual_seed(cfg.train.seed)
        self.net = build_net(run)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.optimizer.lr,
                                     weight_decay=cfg.optimizer.weight_decay)

    def path(self, name: str) -> Path:
        return self.run.snapshots / f"{name}.pt"

    def has_snapshot(self, name: str) -> bool:
        return self.path(name).is_file()

    def step(self, batch: dict[str, np.ndarray], lr: float) -> tuple[float, float]:
        self.net.train()
        for group in self.opt.param_groups:
            group["lr"] = lr
        tensors = {k: torch.from_numpy(batch[k]) for k in self.TARGETS}
        heat_loss, loc_loss = losses(self.net(tensors["image"]), tensors, self.run.cfg.train.locref_weight)
        self.opt.zero_grad(set_to_none=True)
        (heat_loss + loc_loss).backward()
        self.opt.step()
        return heat_loss.item(), loc_loss.item()

    @torch.no_grad()
    def forward(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.net.eval()
        logits, locref = self.net(torch.from_numpy(frames))
        return torch.sigmoid(logits).numpy(), locref.numpy()

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
        except (RuntimeError, KeyError, EOFError, ValueError) as exc:
            raise RunError(f"{path}: not a usable snapshot of this run ({exc}); delete it to start over") from None
        torch.set_rng_state(state["torch_rng"])
        return {k: v for k, v in state.items() if k not in ("model", "optimizer", "torch_rng")}

    def state_arrays(self) -> list[tuple[str, np.ndarray]]:
        """The weights as (name, array) pairs, for the exported model's weights hash."""
        return [(k, t.detach().cpu().contiguous().numpy()) for k, t in self.net.state_dict().items()]
