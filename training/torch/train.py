"""The PyTorch training loop: AdamW + warmup/cosine, atomic snapshots, exact resume."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from posezoo.runtime.files import atomic_output
from posezoo.runtime.metrics import evaluate_keypoints
from posezoo.runtime.session import physical_cores

from ..run import Run, append_log, truncate_log, write_json
from ..schedule import lr_at
from .infer import predict_frames
from .nets import PoseNet, create_model


def build_net(run: Run) -> PoseNet:
    return create_model(run.cfg.model.name, len(run.project.bodyparts), **run.cfg.model.kwargs)


def save_snapshot(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file, then rename: a kill -9 never leaves half a snapshot."""
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load_snapshot(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"snapshot not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


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


def evaluate_split(net: PoseNet, run: Run, indices: list[int]) -> dict[str, Any]:
    """Metrics on project images through the framework inference path (same geometry as ONNX)."""
    if not indices:
        return {}
    net.eval()
    pred = predict_frames(net, run.frames(indices), run.spec)
    gt = run.project.keypoints[indices]
    return evaluate_keypoints(gt[:, None], pred[:, None], pcutoff=run.project.pcutoff)


def fit(run: Run, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    cfg = run.cfg
    torch.set_num_threads(cfg.train.threads or physical_cores())
    torch.manual_seed(cfg.train.seed)
    net = build_net(run)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay)
    snap_dir = run.snapshots
    start_epoch, elapsed, best = 0, 0.0, {"test_rmse": math.inf, "epoch": -1}
    log_path = run.path / "log.csv"
    if resume and (snap_dir / "last.pt").is_file():
        state = load_snapshot(snap_dir / "last.pt")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, elapsed, best = state["epoch"] + 1, state["elapsed_s"], state["best"]
        truncate_log(log_path, start_epoch)
    elif log_path.exists():
        log_path.unlink()

    loader = run.train_loader()
    steps = len(loader)
    deadline = cfg.train.time_limit_minutes * 60 if cfg.train.time_limit_minutes else math.inf
    bar = tqdm(range(start_epoch, cfg.train.epochs), initial=start_epoch, total=cfg.train.epochs,
               desc=f"train {cfg.model.name}", unit="epoch", disable=not progress, dynamic_ncols=True)
    epoch = start_epoch - 1
    for epoch in bar:
        net.train()
        loader.set_epoch(epoch)
        t0 = time.perf_counter()
        sums = np.zeros(2)
        for step, batch in enumerate(loader):
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch + step / steps, cfg)
            tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
            heat_loss, loc_loss = losses(net(tensors["image"]), tensors, cfg.train.locref_weight)
            opt.zero_grad(set_to_none=True)
            (heat_loss + loc_loss).backward()
            opt.step()
            sums += (heat_loss.item(), loc_loss.item())
        elapsed += time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch, "step": (epoch + 1) * steps, "loss": sums.sum() / steps,
                               "heatmap_loss": sums[0] / steps, "locref_loss": sums[1] / steps,
                               "lr": opt.param_groups[0]["lr"], "elapsed_s": round(elapsed, 2)}
        last = epoch == cfg.train.epochs - 1 or elapsed >= deadline
        if (epoch + 1) % cfg.train.eval_every == 0 or last:
            m = evaluate_split(net, run, run.split.test)
            row.update(test_rmse=m.get("rmse"), test_rmse_pcutoff=m.get("rmse_pcutoff"), test_mAP=m.get("mAP"))
            bar.set_postfix(loss=f"{row['loss']:.4f}", test_rmse=f"{m.get('rmse', float('nan')):.2f}px")
        else:
            bar.set_postfix(loss=f"{row['loss']:.4f}")
        state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "elapsed_s": elapsed,
                 "torch_rng": torch.get_rng_state(), "best": best, "model_name": cfg.model.name}
        if row.get("test_rmse") is not None and row["test_rmse"] < best["test_rmse"]:
            best = {"test_rmse": row["test_rmse"], "epoch": epoch}
            state["best"] = best
            save_snapshot(snap_dir / "best.pt", state)
        save_snapshot(snap_dir / "last.pt", state)
        append_log(log_path, row)
        if elapsed >= deadline:
            bar.write(f"time limit of {cfg.train.time_limit_minutes} min reached after epoch {epoch}")
            break
    bar.close()
    if not (snap_dir / "best.pt").exists() and (snap_dir / "last.pt").exists():
        save_snapshot(snap_dir / "best.pt", load_snapshot(snap_dir / "last.pt"))
    return {"epochs_done": epoch + 1, "elapsed_s": elapsed, "best": best}


def load_net(run: Run, snapshot: str = "best") -> PoseNet:
    net = build_net(run)
    net.load_state_dict(load_snapshot(run.snapshots / f"{snapshot}.pt")["model"])
    return net.eval()


def final_metrics(run: Run, snapshot: str = "best") -> dict[str, Any]:
    net = load_net(run, snapshot)
    result = {"snapshot": snapshot, "test": evaluate_split(net, run, run.split.test),
              "train": evaluate_split(net, run, run.split.train)}
    write_json(run.path / "metrics.json", result)
    return result
