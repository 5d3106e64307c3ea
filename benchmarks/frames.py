"""Frames for the benchmarks: the first N decoded frames of a video (BGR, as OpenCV reads them),
and those frames prepared and run as `analyze` runs them."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

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


def prepared_batches(model: Any, frames: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """Full batches of ``frames`` as the model's input tensors (a trailing partial batch is dropped)."""
    plan = model.plan_for(*frames[0].shape[:2])
    return [model.prepare_batch(frames[i:i + batch], plan, "bgr") for i in range(0, len(frames) - batch + 1, batch)]


def batch_runner(model: Any, frame: np.ndarray, batch: int, static: bool = True) -> Callable[[np.ndarray], Any]:
    """What ``analyze`` runs a batch of such frames with: the session fixed to this frame size and
    batch (``static``), else the model's dynamic-shape session."""
    fixed = model.static_session(batch, *frame.shape[:2]) if static else None
    return fixed.run if fixed is not None else model.run_tensor
