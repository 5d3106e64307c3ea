"""Evaluate an exported model on labeled images: predictions, metrics and a readable table.

The numbers come from ``runtime.metrics`` (DeepLabCut's definitions), the only metrics module;
this file only feeds it the model's predictions and formats its answer.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

from .metrics import evaluate_keypoints
from .model import PoseModel


def predict_images(model: PoseModel, images: Iterable[np.ndarray], *, color: str = "rgb",
                   batch_size: int = 8) -> np.ndarray:
    """Run ``model`` on images (any sizes; an iterable keeps memory to one batch) -> (N, K, 3)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    for image in images:
        batch.append(image)
        if len(batch) == batch_size:
            out.append(model.predict(batch, color=color))
            batch = []
    if batch:
        out.append(model.predict(batch, color=color))
    if not out:
        return np.zeros((0, len(model.keypoints), 3), np.float32)
    return np.concatenate(out)


def evaluate_model(model: PoseModel, images: Iterable[np.ndarray], gt: np.ndarray, *, color: str = "rgb",
                   pcutoff: float | None = None, batch_size: int = 8) -> dict[str, Any]:
    """Metrics of ``model`` on ``images`` against ``gt`` (N, K, 2) in the model's keypoint order.

    ``images`` are RGB by default (``color="bgr"`` for OpenCV frames). ``pcutoff`` defaults to the
    model's own (spec) value. Returns ``evaluate_keypoints``'s dict plus ``keypoints``.
    """
    return evaluate_with_predictions(model, images, gt, color=color, pcutoff=pcutoff, batch_size=batch_size)[0]


def evaluate_with_predictions(model: PoseModel, images: Iterable[np.ndarray], gt: np.ndarray, *,
                              color: str = "rgb", pcutoff: float | None = None,
                              batch_size: int = 8) -> tuple[dict[str, Any], np.ndarray]:
    """``evaluate_model`` that also returns the (N, K, 3) predictions (to draw them)."""
    gt = np.asarray(gt, dtype=np.float64)
    if gt.ndim != 3 or gt.shape[1:] != (len(model.keypoints), 2):
        raise ValueError(f"ground truth has shape {gt.shape}; expected (images, {len(model.keypoints)} keypoints "
                         f"of {model.name}, 2)")
    pred = predict_images(model, images, color=color, batch_size=batch_size)
    if len(pred) != len(gt):
        raise ValueError(f"{len(pred)} images but {len(gt)} ground-truth rows")
    metrics = evaluate_keypoints(gt, pred, pcutoff=model.spec.pcutoff if pcutoff is None else pcutoff)
    metrics["keypoints"] = list(model.keypoints)
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
