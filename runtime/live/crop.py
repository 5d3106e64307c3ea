"""Dynamic cropping: after a full-frame detection, run the model on a window around the animal.

DeepLabCut-Live crops to the detected keypoints' box plus a margin, a new size on every frame.
onnxruntime pays for every new input shape (about 40 ms for the first run of a shape on the
dynamic session here, 100 ms to build a fixed-shape one), so this window keeps one size: a
square around the confident keypoints plus ``margin``, with 25% headroom for the animal turning,
rounded up to the model's size step so the tensor needs no padding. It follows the animal's
centre on every frame, grows (rarely) when the animal no longer fits, and is dropped for the full
frame as soon as fewer than ``min_keypoints`` keypoints reach ``threshold``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

Box = tuple[int, int, int, int]  # x1, x2, y1, y2 in frame pixels (DeepLabCut's cropping order)
HEADROOM = 1.25


@dataclass
class DynamicCrop:
    """Settings and state of the crop window (one per live session).

    ``margin``: frame pixels kept around the confident keypoints. ``threshold``: the score a
    keypoint needs to count as detected (default: the model's pcutoff). ``size``: a fixed window
    (width, height) instead of one sized from the first detection (it is then warmed up before
    capture starts, so even the first crop runs at full speed). ``min_keypoints``: fewer
    detected keypoints than this and the next frame is searched whole.
    """

    margin: int = 20
    threshold: float | None = None
    size: tuple[int, int] | None = None
    min_keypoints: int = 1
    window: tuple[int, int] | None = field(default=None, init=False)  # (width, height) in use
    box: Box | None = field(default=None, init=False)  # where the next frame is cropped
    _frame: tuple[int, int] = field(default=(0, 0), init=False)  # (height, width)
    _step: int = field(default=32, init=False)
    _align: int = field(default=1, init=False)
    _threshold: float = field(default=0.6, init=False)

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError(f"crop margin must be >= 0 pixels, got {self.margin}")
        if self.min_keypoints < 1:
            raise ValueError(f"min_keypoints must be >= 1, got {self.min_keypoints}")
        if self.size is not None:
            w, h = (int(v) for v in self.size)
            if w < 1 or h < 1:
                raise ValueError(f"crop size must be positive, got {self.size}")
            self.size = (w, h)

    def start(self, height: int, width: int, *, step: int, pcutoff: float, align: int = 1) -> None:
        """Reset for frames of this size; ``step`` is the window size multiple in frame pixels,
        ``align`` the multiple the window's corner keeps (the model's downscale factor, so a crop
        is resampled on the same pixel grid as the whole frame and gives the same keypoints)."""
        self._frame = (height, width)
        self._step = max(1, step)
        self._align = max(1, align)
        self._threshold = pcutoff if self.threshold is None else self.threshold
        self.box = None
        self.window = None if self.size is None else (min(self.size[0], width), min(self.size[1], height))

    def next_box(self, height: int, width: int) -> Box | None:
        """Where to crop the coming frame, or None for the whole frame."""
        if (height, width) != self._frame:  # a source that changed size: start over
            self.start(height, width, step=self._step, pcutoff=self._threshold, align=self._align)
        return self.box

    def update(self, coords: np.ndarray) -> None:
        """Place the window for the next frame from this frame's (K, 3) keypoints in frame pixels."""
        height, width = self._frame
        ok = np.isfinite(coords[:, :2]).all(1) & (np.nan_to_num(coords[:, 2], nan=-1.0) >= self._threshold)
        if int(ok.sum()) < self.min_keypoints:
            self.box = None  # lost: search the whole frame
            return
        xs, ys = coords[ok, 0], coords[ok, 1]
        need = max(float(xs.max() - xs.min()), float(ys.max() - ys.min())) + 2 * self.margin + 1
        if self.window is None or (self.size is None and need > min(self.window)):
            side = _round_up(need * HEADROOM, self._step)
            self.window = (min(side, width), min(side, height))
        ww, wh = self.window
        if ww >= width and wh >= height:
            self.box = None  # the window is the whole frame
            return
        cx, cy = (xs.min() + xs.max()) / 2.0, (ys.min() + ys.max()) / 2.0
        a = self._align
        x1 = int(min(max(round((cx - ww / 2.0) / a) * a, 0), (width - ww) // a * a))
        y1 = int(min(max(round((cy - wh / 2.0) / a) * a, 0), (height - wh) // a * a))
        self.box = (x1, x1 + ww, y1, y1 + wh)

    def describe(self) -> dict[str, object]:
        return {"margin": self.margin, "threshold": self._threshold, "size": self.size, "window": self.window,
                "min_keypoints": self.min_keypoints}


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)
