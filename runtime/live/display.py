"""``--display``: the live view, with keypoints, the crop window, latency and frame rate.

A viewer is anything with ``show(image) -> bool`` (False: the user asked to stop) and
``close()``; `OpenCVWindow` is the one the command line uses. It needs a display and an OpenCV
built with a GUI: `display_problem` says why one cannot open (no DISPLAY, a headless OpenCV),
and the session then runs headless with that message instead of failing.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np

from ..draw import draw_pose, keypoint_colors

_QUIT_KEYS = (ord("q"), 27)  # q, Esc


class Viewer(Protocol):
    def show(self, image: np.ndarray) -> bool: ...

    def close(self) -> None: ...


def display_problem(environ: dict[str, str] | None = None, build_info: str | None = None) -> str | None:
    """Why no window can open here (None: it can)."""
    env = os.environ if environ is None else environ
    info = cv2.getBuildInformation() if build_info is None else build_info
    gui = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.strip().startswith("GUI:")), "")
    if gui.upper() == "NONE":
        return ("this OpenCV has no GUI support (opencv-python-headless); for a window install opencv-python "
                "in its place")
    if sys.platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is not set: a remote or headless session)"
    return None


class OpenCVWindow:
    """An OpenCV window; q or Esc, or closing the window, asks the session to stop."""

    def __init__(self, title: str = "posezoo live") -> None:
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        self._shown = False

    def show(self, image: np.ndarray) -> bool:
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            return False  # closed with the mouse
        self._shown = True
        return key not in _QUIT_KEYS

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)


def draw_overlay(frame: np.ndarray, coords: np.ndarray, *, skeleton: Sequence[tuple[int, int]], pcutoff: float,
                 crop: tuple[int, int, int, int] | None, lines: Sequence[str],
                 colors: Sequence[tuple[int, int, int]] | None = None) -> np.ndarray:
    """A copy of ``frame`` with each animal's (K, 3) keypoints, the crop window and text lines."""
    image = frame.copy()
    colors = colors or keypoint_colors(coords.shape[-2])
    for animal in coords:
        draw_pose(image, animal, skeleton=skeleton, pcutoff=pcutoff, colors=colors)
    if crop is not None:
        x1, x2, y1, y2 = crop
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), (0, 200, 255), 1)
    scale = max(0.4, image.shape[0] / 960)
    for i, text in enumerate(lines):
        y = int(22 * scale * (i + 1)) + 4
        cv2.putText(image, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image
