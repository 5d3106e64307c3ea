"""Processors: your code on every live result (closed-loop triggers, filters, logging).

A processor is any callable ``processor(poses, info) -> action``:

- ``poses``: a one-frame `Poses` in frame pixels (``poses.coords[0, individual, keypoint]`` =
  x, y, score; NaN where absent);
- ``info``: a `FrameInfo`: frame number, capture time, the model's pcutoff, the crop window;
- the return value: None (nothing happened), a `Poses` (a filter: the processors after it get
  these poses instead), or any other value, an *action*, written as text to the results'
  timestamps table (a trigger returns "NAME:on" / "NAME:off" when its line changes).

Processors run in order in the inference thread, right after the model, so keep them quick (a
trigger takes microseconds). An exception in one is reported and the capture goes on; the others
still run. A processor with a ``close()`` method has it called at the end of the session (the
triggers here switch their line off then).

Examples that labs use: `RegionTrigger` (a keypoint inside a box, circle or polygon) and
`AngleTrigger` (a body angle inside a range) drive a TTL output; `OneEuroFilter` smooths
keypoints with little lag. DeepLabCut-Live processors (``process(pose, **kwargs)``) port by
wrapping: ``lambda poses, info: proc.process(poses.coords[0, 0])``.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from ..poses import Poses
from .outputs import TTLOutput, open_output


@dataclass(frozen=True)
class FrameInfo:
    """What a processor knows about the frame besides its poses."""

    index: int  # frame number since capture started (row of the results table)
    capture_time: float  # unix time (s) when the frame was captured
    captured: float  # the same moment on time.perf_counter's clock, for latency arithmetic
    ready: float  # time.perf_counter when the poses were ready
    pcutoff: float  # the model's likelihood cutoff
    crop: tuple[int, int, int, int] | None  # x1, x2, y1, y2 the model ran on, None = whole frame


class Processor(Protocol):
    def __call__(self, poses: Poses, info: FrameInfo) -> Any: ...


def processor_name(processor: object) -> str:
    return str(getattr(processor, "name", None) or getattr(processor, "__name__", None) or type(processor).__name__)


# -- triggers -------------------------------------------------------------------------------------
class Trigger:
    """A TTL line that is on while ``condition`` holds.

    ``condition`` returns True, False, or None when it cannot tell (keypoints under pcutoff);
    ``when_lost`` decides then: "off" (default: no stimulation on an animal that is not seen)
    or "hold" (keep the line as it is). Returns "NAME:on" / "NAME:off" when the line changes.
    """

    def __init__(self, output: str | TTLOutput | None = None, *, name: str | None = None, when_lost: str = "off",
                 pcutoff: float | None = None, individual: int = 0) -> None:
        if when_lost not in ("off", "hold"):
            raise ValueError(f"when_lost must be 'off' or 'hold', got {when_lost!r}")
        self.output = open_output(output)
        self.name = name or type(self).__name__
        self.when_lost = when_lost
        self.pcutoff = pcutoff
        self.individual = individual
        self.state = False
        self.changes = 0

    def condition(self, poses: Poses, info: FrameInfo) -> bool | None:
        raise NotImplementedError

    def __call__(self, poses: Poses, info: FrameInfo) -> str | None:
        state = self.condition(poses, info)
        if state is None:
            state = False if self.when_lost == "off" else self.state
        if state == self.state:
            return None
        self.output.set(state)
        self.state = state
        self.changes += 1
        return f"{self.name}:{'on' if state else 'off'}"

    def close(self) -> None:
        try:
            self.output.set(False)
        finally:
            self.output.close()
        self.state = False

    def _points(self, poses: Poses, info: FrameInfo, names: Sequence[str]) -> np.ndarray | None:
        """(len(names), 2) positions of confident keypoints, or None when any is not confident."""
        idx = [_keypoint_index(poses, n, self.name) for n in names]
        kp = poses.coords[0, self.individual, idx]
        cutoff = info.pcutoff if self.pcutoff is None else self.pcutoff
        if not (np.isfinite(kp[:, :2]).all() and (np.nan_to_num(kp[:, 2], nan=-1.0) >= cutoff).all()):
            return None
        return kp[:, :2]


class RegionTrigger(Trigger):
    """On while ``keypoint`` lies inside a region of the frame (frame pixels).

    Give the region as ``rectangle=(x1, y1, x2, y2)``, ``circle=(cx, cy, r)`` or
    ``polygon=[(x, y), ...]``; ``inside=False`` turns the line on outside it instead.
    """

    def __init__(self, keypoint: str, *, rectangle: Sequence[float] | None = None,
                 circle: Sequence[float] | None = None, polygon: Sequence[Sequence[float]] | None = None,
                 inside: bool = True, **kwargs: Any) -> None:
        given = [r is not None for r in (rectangle, circle, polygon)]
        if sum(given) != 1:
            raise ValueError("RegionTrigger takes exactly one of rectangle=(x1, y1, x2, y2), circle=(cx, cy, r) "
                             "or polygon=[(x, y), ...]")
        if rectangle is not None and (len(rectangle) != 4 or rectangle[2] <= rectangle[0]
                                      or rectangle[3] <= rectangle[1]):
            raise ValueError(f"rectangle must be (x1, y1, x2, y2) with x2 > x1 and y2 > y1, got {rectangle}")
        if circle is not None and (len(circle) != 3 or circle[2] <= 0):
            raise ValueError(f"circle must be (cx, cy, radius) with radius > 0, got {circle}")
        if polygon is not None and len(polygon) < 3:
            raise ValueError(f"polygon needs at least 3 points, got {len(polygon)}")
        super().__init__(**kwargs)
        self.keypoint = keypoint
        self.rectangle = None if rectangle is None else tuple(float(v) for v in rectangle)
        self.circle = None if circle is None else tuple(float(v) for v in circle)
        self.polygon = None if polygon is None else np.asarray(polygon, np.float32).reshape(-1, 1, 2)
        self.inside = inside

    def condition(self, poses: Poses, info: FrameInfo) -> bool | None:
        points = self._points(poses, info, [self.keypoint])
        if points is None:
            return None
        x, y = float(points[0, 0]), float(points[0, 1])
        if self.rectangle is not None:
            x1, y1, x2, y2 = self.rectangle
            hit = x1 <= x <= x2 and y1 <= y <= y2
        elif self.circle is not None:
            cx, cy, r = self.circle
            hit = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
        else:
            hit = cv2.pointPolygonTest(self.polygon, (x, y), False) >= 0
        return hit == self.inside


class AngleTrigger(Trigger):
    """On while a body angle (degrees) lies in ``[low, high]``.

    Two keypoints (a, b): the heading of the vector a -> b, counter-clockwise on screen from the
    +x axis, in (-180, 180]; a range with low > high wraps around 180 (e.g. low=150, high=-150).
    Three keypoints (a, b, c): the angle at b between b -> a and b -> c, in [0, 180] (e.g. the
    head-body angle snout, neck, tailbase).
    """

    def __init__(self, keypoints: Sequence[str], low: float, high: float, **kwargs: Any) -> None:
        if len(keypoints) not in (2, 3):
            raise ValueError(f"AngleTrigger takes 2 keypoints (a heading) or 3 (an angle at the middle one), "
                             f"got {list(keypoints)}")
        super().__init__(**kwargs)
        self.keypoints = list(keypoints)
        self.low, self.high = float(low), float(high)
        self.angle: float | None = None  # the last angle measured

    def measure(self, xy: np.ndarray) -> float:
        if len(xy) == 2:
            dx, dy = xy[1] - xy[0]
            return math.degrees(math.atan2(-dy, dx))  # image y points down; on screen angles go up
        u, v = xy[0] - xy[1], xy[2] - xy[1]
        norm = float(np.hypot(*u) * np.hypot(*v))
        if norm == 0:
            return float("nan")
        return math.degrees(math.acos(max(-1.0, min(1.0, float(np.dot(u, v)) / norm))))

    def condition(self, poses: Poses, info: FrameInfo) -> bool | None:
        points = self._points(poses, info, self.keypoints)
        if points is None:
            return None
        angle = self.measure(points.astype(np.float64))
        self.angle = angle
        if math.isnan(angle):
            return None
        if self.low <= self.high:
            return self.low <= angle <= self.high
        return angle >= self.low or angle <= self.high


# -- smoothing ------------------------------------------------------------------------------------
class OneEuroFilter:
    """The 1-euro filter (Casiez et al., CHI 2012) on every keypoint's x and y.

    A low-pass filter whose cutoff rises with speed: still keypoints are smoothed hard (no
    jitter), fast ones barely (little lag), which suits closed loops better than a moving
    average. ``min_cutoff`` (Hz) sets the smoothing at rest, ``beta`` how fast it opens with
    speed. Keypoints under ``pcutoff`` pass through unchanged and do not update the filter; a
    keypoint unseen for ``reset_after`` seconds starts afresh. Time steps come from the capture
    times, so dropped frames are accounted for. Returns the smoothed `Poses` (a new object).
    """

    name = "OneEuroFilter"

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0,
                 pcutoff: float | None = None, reset_after: float = 0.5) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("OneEuroFilter needs min_cutoff > 0, d_cutoff > 0 and beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.pcutoff = pcutoff
        self.reset_after = reset_after
        self._x: np.ndarray | None = None  # (I, K, 2) filtered positions
        self._dx: np.ndarray | None = None  # (I, K, 2) filtered speeds
        self._seen: np.ndarray | None = None  # (I, K) capture time of the last update

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: np.ndarray) -> np.ndarray:
        tau = 1.0 / (2 * math.pi * np.asarray(cutoff))
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, poses: Poses, info: FrameInfo) -> Poses:
        coords = np.array(poses.coords, dtype=np.float64, copy=True)
        xy, score = coords[0, ..., :2], coords[0, ..., 2]
        cutoff = info.pcutoff if self.pcutoff is None else self.pcutoff
        ok = np.isfinite(xy).all(-1) & (np.nan_to_num(score, nan=-1.0) >= cutoff)
        now = info.capture_time
        if self._x is None or self._x.shape != xy.shape:
            self._x, self._dx = xy.copy(), np.zeros_like(xy)
            self._seen = np.full(xy.shape[:2], -np.inf)
        assert self._dx is not None and self._seen is not None
        dt = now - self._seen
        fresh = ok & ~(dt <= self.reset_after)  # never seen, or unseen for too long: start from here
        self._x[fresh], self._dx[fresh] = xy[fresh], 0.0
        go = ok & ~fresh & (dt > 0)
        if go.any():
            step = dt[go][:, None]
            speed = (xy[go] - self._x[go]) / step
            a_d = self._alpha(self.d_cutoff, step)
            self._dx[go] = a_d * speed + (1 - a_d) * self._dx[go]
            cut = self.min_cutoff + self.beta * np.linalg.norm(self._dx[go], axis=-1, keepdims=True)
            a = self._alpha(cut, step)
            self._x[go] = a * xy[go] + (1 - a) * self._x[go]
        self._seen[ok] = now
        xy[ok] = self._x[ok]
        return replace(poses, coords=coords.astype(poses.coords.dtype, copy=False))


# -- loading a processor by name (the command line) -----------------------------------------------
def load_object(target: str) -> Any:
    """``package.module:Name`` or ``path/to/file.py:Name`` -> that object."""
    module_part, sep, attr = target.rpartition(":")
    if not sep or not module_part or not attr:
        raise ValueError(f"{target!r}: name a processor as module:Class or path/to/file.py:Class")
    if module_part.endswith(".py") or "/" in module_part or "\\" in module_part:
        path = Path(module_part).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: processor file not found")
        mod_name = f"posezoo_live_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise ValueError(f"{path}: cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as exc:
            raise ValueError(f"{target!r}: module {module_part!r} not found ({exc}); give a file path "
                             "(path/to/file.py:Class) or install the module") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{target!r}: {module_part} has no {attr!r}") from None


def parse_value(text: str) -> Any:
    """A command-line value: a Python literal (numbers, lists, tuples, True) or else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def load_processor(target: str, args: Sequence[str] = ()) -> Any:
    """Build a processor from ``module:Class`` (or ``file.py:Class``) and ``key=value`` texts.

    Short names of the built-ins work too: ``RegionTrigger``, ``AngleTrigger``, ``OneEuroFilter``.
    """
    builtins = {"RegionTrigger": RegionTrigger, "AngleTrigger": AngleTrigger, "OneEuroFilter": OneEuroFilter}
    factory = builtins[target] if target in builtins else load_object(target)
    kwargs: dict[str, Any] = {}
    for item in args:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"processor {target}: arguments are key=value, got {item!r}")
        kwargs[key] = parse_value(value)
    if not callable(factory):
        raise TypeError(f"{target} is not a class or function")
    try:
        made = factory(**kwargs)
    except TypeError as exc:
        raise ValueError(f"processor {target}: {exc}") from None
    if not callable(made):
        raise TypeError(f"{target}(...) returned a {type(made).__name__}, which cannot be called with "
                        "(poses, info); a processor is a callable")
    return made


def _keypoint_index(poses: Poses, name: str, where: str) -> int:
    try:
        return poses.keypoints.index(name)
    except ValueError:
        raise ValueError(f"{where}: keypoint {name!r} is not among the model's {poses.keypoints}") from None
