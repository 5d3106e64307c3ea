"""Evaluate an exported model on labeled images: predictions, metrics and a readable table.

The numbers come from ``runtime.metrics`` (DeepLabCut's definitions), the only metrics module;
this file only feeds it the model's predictions and formats its answer.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

from .metrics import evaluate_poses
from .model import PoseModel
from .poses import Poses


def predict_images(model: PoseModel, images: Iterable[np.ndarray], *, color: str = "rgb",
                   batch_size: int = 8) -> Poses:
    """Run ``model`` on images (any sizes; an iterable keeps memory to one batch)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts: list[Poses] = []
    batch: list[np.ndarray] = []
    for image in images:
        batch.append(image)
        if len(batch) == batch_size:
            parts.append(model.predict(batch, color=color))
            batch = []
    if batch:
        parts.append(model.predict(batch, color=color))
    if not parts:
        return Poses.empty(0, model.keypoints, skeleton=model.spec.skeleton, scorer=model.name)
    return Poses.concat(parts)


def evaluate_model(model: PoseModel, images: Iterable[np.ndarray], labels: Poses, *, color: str = "rgb",
                   pcutoff: float | None = None, batch_size: int = 8) -> tuple[dict[str, Any], Poses]:
    """Metrics of ``model`` on ``images`` against their ``labels``, and the predictions.

    ``images`` are RGB by default (``color="bgr"`` for OpenCV frames). ``pcutoff`` defaults to the
    model's own (spec) value. The metrics are `metrics.evaluate_poses`'s.
    """
    pred = predict_images(model, images, color=color, batch_size=batch_size)
    pred.images = labels.images
    metrics = evaluate_poses(labels, pred, pcutoff=model.spec.pcutoff if pcutoff is None else pcutoff)
    return metrics, pred


def format_metrics(metrics: dict[str, Any], keypoints: Sequence[str], title: str | None = None) -> str:
    """A summary line plus a per-keypoint table, as `posezoo evaluate` prints it."""
    pcut = metrics.get("pcutoff")
    lines = [title] if title else []
    lines.append(f"images {metrics.get('n_images', '?')}   labeled keypoints {metrics.get('n_keypoints_labeled', '?')}"
                 + (f"   pcutoff {pcut:g}" if isinstance(pcut, (int, float)) else ""))
    lines.append(f"RMSE {_num(metrics.get('rmse'))} px   RMSE (p >= pcutoff) {_num(metrics.get('rmse_pcutoff'))} px"
                 f"   mAP {_num(metrics.get('mAP'), 1)}   mAR {_num(metrics.get('mAR'), 1)}")
    pck = metrics.get("pck") or {}
    if pck:
        lines.append("PCK  " + "   ".join(f"@{float(t):g}px {100 * float(v):.1f}%" for t, v in sorted(
            pck.items(), key=lambda kv: float(kv[0]))))
    per = metrics.get("per_keypoint_rmse") or []
    per_cut = metrics.get("per_keypoint_rmse_pcutoff") or [math.nan] * len(per)
    if per:
        width = max(8, *(len(k) for k in keypoints))
        lines.append(f"{'keypoint':<{width}}  {'RMSE px':>8}  {'p>=cut px':>9}")
        for name, a, b in zip(keypoints, per, per_cut):
            lines.append(f"{name:<{width}}  {_num(a):>8}  {_num(b):>9}")
    return "\n".join(lines)


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    value = float(value)
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
