"""Real video files whose true keypoints are known exactly, for the brightest-pixel test model.

Each frame is a grey background with a pure red, green and blue square; the brightest-pixel
model (tests/onnx_models.py) finds the square's top-left pixel, so every row of an analysis can
be checked exactly (FFV1 is lossless) or to within the square (MJPG is lossy).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from onnx_models import CHANNELS, paint_dots


def write_dot_video(path: Path, n: int = 40, size: tuple[int, int] = (48, 64), fps: float = 25.0,
                    codec: str = "FFV1", block: int = 1, seed: int = 0, even: bool = False) -> np.ndarray:
    """Write the video; returns the truth (n, 3, 2): x, y of the red, green, blue squares."""
    h, w = size
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
    assert writer.isOpened(), f"this OpenCV cannot write {codec} to {path}"
    truth = np.zeros((n, len(CHANNELS), 2))
    for i in range(n):
        frame = np.full((h, w, 3), 40, np.uint8)
        pts: dict[str, tuple[int, int]] = {}
        while len(pts) < len(CHANNELS):  # squares must not overlap, or one would hide another
            x, y = int(rng.integers(0, w - block)), int(rng.integers(0, h - block))
            if even:
                x, y = x - x % 2, y - y % 2
            if all(abs(x - px) >= block + 1 or abs(y - py) >= block + 1 for px, py in pts.values()):
                pts[CHANNELS[len(pts)]] = (x, y)
        paint_dots(frame, pts, block=block)
        truth[i] = list(pts.values())
        writer.write(frame)
    writer.release()
    return truth


def avi_frame_chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each video frame's data in an AVI file, in stream order."""
    start = data.index(b"movi") + 4
    out, pos = [], start
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if tag == b"idx1" or tag == b"LIST" and data[pos + 8:pos + 12] != b"rec ":
            break
        if tag[2:] in (b"dc", b"db"):
            out.append((pos + 8, size))
        pos += 8 + size + (size & 1)
    return out


def corrupt_avi_frame(path: Path, frame: int, out: Path) -> None:
    """Copy ``path`` to ``out`` with frame ``frame``'s compressed data overwritten by zeros."""
    data = bytearray(path.read_bytes())
    offset, size = avi_frame_chunks(bytes(data))[frame]
    data[offset:offset + size] = bytes(size)
    out.write_bytes(bytes(data))
