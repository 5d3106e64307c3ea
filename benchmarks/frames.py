"""Frames for the benchmarks: the first N decoded frames of a video (BGR, as OpenCV reads them),
and those frames prepared as `analyze` prepares them (``PoseModel.infer`` then runs them)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np


def read_frames(video: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames: list[np.ndarray] = []
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"{video}: no frame could be decoded")
    return frames


def prepared_batches(model: Any, frames: list[np.ndarray], batch: int) -> list[Any]:
    """Full batches of ``frames`` prepared as ``analyze`` prepares them: into reused (pooled)
    buffers, so ``model.infer`` runs them on the session it picks for video (a trailing partial
    batch is dropped)."""
    out = []
    for i in range(0, len(frames) - batch + 1, batch):
        buffer = np.empty((batch, *model.plan_for(*frames[0].shape[:2]).tensor, 3), np.uint8)
        out.append(model.prepare(frames[i:i + batch], "bgr", out=buffer))
    return out
