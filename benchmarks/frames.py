"""Frames for the benchmarks: the first N decoded frames of a video (BGR, as OpenCV reads them)."""
from __future__ import annotations

from pathlib import Path

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
