"""The framework-side road from pixels to poses: the runtime's geometry -> a backend's network ->
the reference decoder -> `Poses` in frame pixels.

Training evaluates with it and export's parity gate compares the exported graph (through
`PoseModel`) against it, so both see exactly the pixels the runtime will feed the graph. Each
backend supplies only ``forward``: prepared uint8 frames -> heatmap probabilities and locref.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from posezoo.runtime import geometry
from posezoo.runtime.poses import Poses
from posezoo.runtime.spec import Spec

from .data import decode

#: uint8 (N, H, W, 3) frames in the model's colour order -> probabilities (N, K, h, w) and
#: locref (N, K, 2, h, w), both numpy.
Forward = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
#: RGB frames of any sizes -> their `Poses`.
Predictor = Callable[[Sequence[np.ndarray]], Poses]


def predict_frames(forward: Forward, frames: Sequence[np.ndarray], spec: Spec, *, color: str = "rgb",
                   batch_size: int = 8) -> Poses:
    """Frames of any sizes (grouped by size, ``batch_size`` at a time) -> `Poses` in frame pixels."""
    coords = np.empty((len(frames), 1, len(spec.keypoints), 3), np.float32)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(frame.shape[:2], []).append(i)
    swap = color.lower() != spec.input.color.lower()
    dec = spec.decode
    for (h, w), idx in groups.items():
        plan = geometry.plan(h, w, spec.input, spec.preprocess)
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            batch = np.empty((len(chunk), *plan.tensor, 3), np.uint8)
            for j, i in enumerate(chunk):
                geometry.apply(frames[i], plan, spec.preprocess, swap_rb=swap, out=batch[j])
            probs, locref = forward(batch)
            coords[chunk, 0] = plan.to_frame(decode(probs, locref, dec.stride, offset=dec.offset, locref_scale=dec.locref_scale))
    return Poses(coords, spec.keypoints, skeleton=spec.skeleton, scorer=spec.name, model=spec.name)


def predictor(forward: Forward, spec: Spec) -> Predictor:
    """``predict_frames`` bound to one network and spec (RGB frames)."""
    return lambda frames: predict_frames(forward, frames, spec)
