"""The learning-rate schedule, shared by both backends: linear warmup, then cosine or step decay."""
from __future__ import annotations

import math
from typing import Any


def lr_at(epoch_progress: float, cfg: Any) -> float:
    """Learning rate at a fractional epoch count, from the config's optimizer and schedule."""
    base, sched, total = cfg.optimizer.lr, cfg.schedule, cfg.train.epochs
    warm = float(sched.warmup_epochs)
    if epoch_progress < warm:
        return base * (epoch_progress + 1e-3) / warm
    if sched.name == "step":
        drops = sum(epoch_progress >= m for m in sched.milestones)
        return base * sched.gamma ** drops
    t = (epoch_progress - warm) / max(1e-9, total - warm)
    return base * (sched.min_lr_ratio + (1 - sched.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))
