"""What each detected animal looks like: the mean colour around each of its keypoints.

Tracking needs a cue that motion cannot give when animals lie on top of each other and part
again: which one is which. Body size is one (in `track`); colour is another wherever the animals
differ in fur, marks or dye. The descriptor is sampled from the graph's input tensor while the
frame is at hand (nothing is decoded twice): for each animal and keypoint, the mean of each
colour channel over a small square whose side follows the animal's size. Whether the colours
tell the animals apart is for the tracker to learn per video; here they are only measured.
"""
from __future__ import annotations

import numpy as np

from .geometry import Plan

_SPAN = 0.08  # half-side of the sampled square, as a fraction of the animal's size
_GRID = np.linspace(-1.0, 1.0, 5)  # 5x5 samples over the square


def describe(tensor: np.ndarray, plan: Plan, coords: np.ndarray) -> np.ndarray:
    """Colour descriptors (F, A, K*3) float32 of the animals ``coords`` (F, A, K, 2+) in frame
    pixels, read from ``tensor`` (F, H, W, 3) uint8 laid out by ``plan``; NaN where a keypoint
    is missing or lies outside the tensor."""
    f, a, k = coords.shape[:3]
    xy = plan.to_tensor(coords[..., :2])
    seen = np.isfinite(xy).all(-1)
    lo = np.where(seen[..., None], xy, np.inf).min(axis=2)
    hi = np.where(seen[..., None], xy, -np.inf).max(axis=2)
    span = (hi - lo).clip(min=1.0)  # an animal with no keypoint: -inf, clipped
    half = (_SPAN * np.sqrt(span[..., 0] * span[..., 1])).clip(min=1.0)  # (F, A)
    offsets = half[..., None] * _GRID  # (F, A, G)
    h, w = tensor.shape[1:3]
    base = np.nan_to_num(xy)
    x = np.rint(base[..., 0, None, None] + offsets[:, :, None, None, :])  # (F, A, K, 1, G)
    y = np.rint(base[..., 1, None, None] + offsets[:, :, None, :, None])  # (F, A, K, G, 1)
    x, y = np.broadcast_arrays(x, y)
    inside = seen & (base[..., 0] >= 0) & (base[..., 0] <= w - 1) & (base[..., 1] >= 0) & (base[..., 1] <= h - 1)
    frame = np.broadcast_to(np.arange(f)[:, None, None, None, None], x.shape)
    pixels = tensor[frame, y.clip(0, h - 1).astype(np.intp), x.clip(0, w - 1).astype(np.intp)]  # (F, A, K, G, G, 3)
    out = pixels.reshape(f, a, k, -1, 3).mean(axis=3, dtype=np.float32)
    out[~inside] = np.nan
    return out.reshape(f, a, k * 3)
