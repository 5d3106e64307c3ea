"""The learning-rate schedule, shared by both backends: linear warmup, then cosine or step decay."""
from __future__ import annotations

import math
from typing import Any


def lr_at(progress: float, cfg: Any) -> float:
    """Learning rate at ``progress``, the fraction of the run's steps done (0 to 1)."""
    base, sched = cfg.optimizer.lr, cfg.schedule
    warm = float(sched.warmup)
    if progress < warm:
        return base * (progress + 1e-5) / warm
    if sched.name == "step":
        drops = sum(progress >= m for m in sched.milestones)
        return base * sched.gamma ** drops
    t = (progress - warm) / max(1e-9, 1 - warm)
    return base * (sched.min_lr_ratio + (1 - sched.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))
