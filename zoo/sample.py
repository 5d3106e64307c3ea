"""The card's sample frame: a real image run through the model, with its keypoints drawn.

Shown on the zoo page so people see what the predictions look like before downloading. The
keypoints are stored beside the picture (in the image's own pixels) so the page can also draw
the skeleton where the animal really is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from posezoo.runtime.draw import draw_pose

from .errors import ZooError

SAMPLE_FILE = "sample.jpg"
MAX_SIDE = 960  # pages show it at most this wide; larger frames are shrunk, not cropped
JPEG_QUALITY = 90


@dataclass
class Sample:
    """A drawn sample frame (JPEG bytes) and the predictions drawn on it."""

    jpeg: bytes
    keypoints: np.ndarray  # (individuals, K, 3): x, y, score in the source image's pixels
    image_size: tuple[int, int]  # (height, width) of the source image
    source: str  # the source image's file name (not its path: paths say nothing to readers)
    pcutoff: float

    def record(self, file: str = SAMPLE_FILE) -> dict[str, Any]:
        """The entry's `sample` field; NaN becomes null so any JSON reader accepts it."""
        def num(v: float) -> float | None:
            return round(float(v), 2) if math.isfinite(v) else None

        return {"file": file, "source": self.source, "image_size": list(self.image_size),
                "individuals": int(self.keypoints.shape[0]), "pcutoff": self.pcutoff,
                "keypoints": [[[num(v) for v in kp] for kp in animal] for animal in self.keypoints]}


def keypoint_array(prediction: Any) -> np.ndarray:
    """(N, individuals, K, 3) from what `PoseModel.predict` returns: an (N, K, 3) array or a
    `Poses` object whose `.coords` is (N, individuals, K, 3)."""
    arr = np.asarray(getattr(prediction, "coords", prediction), dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected keypoints shaped (N, K, 3) or (N, individuals, K, 3), got {arr.shape}")
    return arr


def read_image(path: str | Path) -> np.ndarray:
    """A BGR uint8 image (grey and 16-bit images converted), or ZooError naming the file."""
    p = Path(path).expanduser()
    try:
        data = np.fromfile(p, np.uint8)  # not cv2.imread: it cannot open non-ASCII paths on Windows
    except OSError as exc:
        raise ZooError(f"{p}: cannot read the sample image: {exc.strerror or exc}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ZooError(f"{p}: not an image OpenCV can read (use a PNG or JPEG frame)")
    return image


def render_sample(model: Any, image: np.ndarray, source: str) -> Sample:
    """Predict on one BGR image with a loaded `PoseModel` and draw every animal's keypoints."""
    spec = model.spec
    coords = keypoint_array(model.predict([image], color="bgr"))[0]
    canvas = image.copy()
    for animal in coords:
        draw_pose(canvas, animal, skeleton=spec.skeleton_indices(), pcutoff=spec.pcutoff)
    scale = MAX_SIDE / max(canvas.shape[:2])
    if scale < 1:
        canvas = cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ZooError(f"{source}: could not encode the sample frame as JPEG")
    return Sample(buf.tobytes(), coords, (int(image.shape[0]), int(image.shape[1])), source,
                  float(spec.pcutoff))
