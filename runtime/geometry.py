"""Host-side geometry from the spec: frame -> input tensor, and keypoints back to the frame.

Training and the runtime both go through `plan` / `apply`, so they cannot disagree on a pixel.
Integer coordinates are pixel centres; resizing is pixel-centre aligned (as cv2.resize is), so a
resize by s maps x -> (x + 0.5) * s - 0.5. Padding goes bottom/right and moves nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .spec import InputSpec, PreprocessSpec

_INTERP = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR,
           "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}


@dataclass(frozen=True)
class Plan:
    """Where a frame of one size lands in the input tensor."""

    crop: tuple[int, int, int, int]  # x1, x2, y1, y2 inside the frame
    resized: tuple[int, int]  # (height, width) after resizing the crop
    tensor: tuple[int, int]  # (height, width) of the input tensor after padding

    @property
    def scale_xy(self) -> tuple[float, float]:
        x1, x2, y1, y2 = self.crop
        return self.resized[1] / (x2 - x1), self.resized[0] / (y2 - y1)

    def to_frame(self, coords: np.ndarray) -> np.ndarray:
        """Map (..., 2+) tensor-pixel coordinates back to frame pixels (extra columns kept)."""
        out = np.array(coords, dtype=np.float32, copy=True)
        sx, sy = self.scale_xy
        out[..., 0] = (out[..., 0] + 0.5) / sx - 0.5 + self.crop[0]
        out[..., 1] = (out[..., 1] + 0.5) / sy - 0.5 + self.crop[2]
        return out

    def to_tensor(self, coords: np.ndarray) -> np.ndarray:
        """Frame pixels -> tensor pixels (used by training to place labels)."""
        out = np.array(coords, dtype=np.float32, copy=True)
        sx, sy = self.scale_xy
        out[..., 0] = (out[..., 0] - self.crop[0] + 0.5) * sx - 0.5
        out[..., 1] = (out[..., 1] - self.crop[2] + 0.5) * sy - 0.5
        return out


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def plan(height: int, width: int, inp: InputSpec, pre: PreprocessSpec) -> Plan:
    x1, x2, y1, y2 = 0, width, 0, height
    if pre.crop is not None:
        x1, x2 = max(0, pre.crop[0]), min(width, pre.crop[1])
        y1, y2 = max(0, pre.crop[2]), min(height, pre.crop[3])
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"the spec's crop {pre.crop} lies outside a {width}x{height} frame")
    ch, cw = y2 - y1, x2 - x1
    if pre.resize == "scale":
        rh, rw = max(1, round(ch * pre.scale)), max(1, round(cw * pre.scale))
    elif pre.resize == "fit":
        assert inp.size is not None  # validated with the spec
        s = min(inp.size[0] / ch, inp.size[1] / cw)
        rh, rw = min(inp.size[0], max(1, round(ch * s))), min(inp.size[1], max(1, round(cw * s)))
    else:
        rh, rw = ch, cw
    if inp.size is not None:
        th, tw = inp.size
        if rh > th or rw > tw:
            raise ValueError(f"a {width}x{height} frame becomes {rw}x{rh}, larger than the model's fixed "
                             f"input {tw}x{th}")
    else:
        th, tw = _round_up(rh, inp.size_multiple), _round_up(rw, inp.size_multiple)
    return Plan((x1, x2, y1, y2), (rh, rw), (th, tw))


def apply(frame: np.ndarray, p: Plan, pre: PreprocessSpec, *, swap_rb: bool, out: np.ndarray) -> None:
    """Write the prepared frame into ``out`` (tensor-sized, uint8); padding is filled here too."""
    x1, x2, y1, y2 = p.crop
    region = frame[y1:y2, x1:x2]
    rh, rw = p.resized
    if (rh, rw) != region.shape[:2]:
        region = cv2.resize(region, (rw, rh), interpolation=_INTERP[pre.interpolation])
    out[:rh, :rw] = region
    if rh < out.shape[0]:
        out[rh:] = pre.pad_value
    if rw < out.shape[1]:
        out[:rh, rw:] = pre.pad_value
    # Swap in place last: cv2 swaps ~30x faster than a reversed numpy copy, and the uniform
    # grey padding is unchanged by it.
    if swap_rb and cv2.cvtColor(out, cv2.COLOR_BGR2RGB, dst=out) is not out:
        raise ValueError("geometry.apply: `out` must be a C-contiguous uint8 array")


def prepare(frame: np.ndarray, inp: InputSpec, pre: PreprocessSpec, color: str = "rgb") -> tuple[np.ndarray, Plan]:
    """One frame -> (tensor HxWx3 uint8 in the model's colour order, its plan)."""
    p = plan(frame.shape[0], frame.shape[1], inp, pre)
    out = np.empty((*p.tensor, 3), np.uint8)
    apply(frame, p, pre, swap_rb=color.lower() != inp.color.lower(), out=out)
    return out, p
