"""One frame at a time: model (on the whole frame or the crop window) -> poses -> processors.

`LivePipeline` is what `run_live` calls in its inference thread, and what to call from your own
acquisition loop (the role of DeepLabCut-Live's ``DLCLive.get_pose``)::

    pipe = LivePipeline(PoseModel.load("m.onnx", spin=False), crop=DynamicCrop(margin=30),
                        processors=[RegionTrigger("snout", rectangle=(0, 0, 100, 100), output="log")])
    pipe.warmup(480, 640)
    result = pipe(frame)            # result.poses in frame pixels, result.actions, result.crop
"""
from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..model import PoseModel
from ..poses import Poses
from .crop import Box, DynamicCrop
from .processors import FrameInfo, Processor, processor_name

#: on_error(processor name, the exception, how many times that processor has failed so far)
ErrorHandler = Callable[[str, BaseException, int], None]


@dataclass
class LiveResult:
    """The outcome of one frame."""

    index: int
    poses: Poses  # the model's keypoints in frame pixels (what the results table gets)
    processed: Poses  # after the filters among the processors (the same object when there are none)
    actions: list[str]
    crop: Box | None
    info: FrameInfo
    done: float  # time.perf_counter when the processors had run
    errors: list[str] = field(default_factory=list)  # processors that raised on this frame

    @property
    def latency(self) -> float:
        """Seconds from capture to poses."""
        return self.info.ready - self.info.captured

    @property
    def processed_latency(self) -> float:
        """Seconds from capture to the processors' actions."""
        return self.done - self.info.captured


class LivePipeline:
    """A `PoseModel` with an optional dynamic crop and processors, for frames of a live source.

    Each input shape (the whole frame, the crop window) gets its own reused input buffer, so
    `PoseModel.infer` runs it on a session fixed to that shape; `warmup` builds those sessions
    before the first real frame. ``color`` is the frames' channel order.
    """

    def __init__(self, model: PoseModel, *, crop: DynamicCrop | None = None, processors: Sequence[Processor] = (),
                 color: str = "bgr", on_error: ErrorHandler | None = None) -> None:
        if crop is not None and model.spec.preprocess.crop is not None:
            raise ValueError(f"{model.path}: the model's spec crops every frame to {model.spec.preprocess.crop} "
                             "(x1, x2, y1, y2); dynamic cropping would crop twice. Turn dynamic cropping off, or "
                             "export the model without a fixed crop")
        self.model = model
        self.crop = crop
        self.processors = list(processors)
        self.color = color
        self.on_error = on_error
        self.error_counts: dict[str, int] = {}
        self.first_errors: dict[str, str] = {}
        self._buffers: dict[tuple[int, int], np.ndarray] = {}
        self._frame_shape: tuple[int, int] | None = None
        self._names = [processor_name(p) for p in self.processors]

    # -- set-up ---------------------------------------------------------------------------------
    def crop_step(self) -> int:
        """Window sizes are multiples of this many frame pixels: the model's padding multiple
        seen through its resize, so a window becomes a tensor without padding."""
        spec = self.model.spec
        multiple = spec.input.size_multiple if spec.input.size is None else 32
        scale = spec.preprocess.scale if spec.preprocess.resize == "scale" else 1.0
        return max(1, math.ceil(multiple / scale))

    def crop_align(self) -> int:
        """The crop corner's multiple: an integer downscale factor of the model (1 otherwise)."""
        pre = self.model.spec.preprocess
        if pre.resize != "scale" or pre.scale >= 1:
            return 1
        factor = 1.0 / pre.scale
        return int(round(factor)) if abs(factor - round(factor)) < 1e-6 else 1

    def start(self, height: int, width: int) -> None:
        """Get ready for frames of this size (called by `warmup` and on the first frame)."""
        self._frame_shape = (height, width)
        if self.crop is not None:
            self.crop.start(height, width, step=self.crop_step(), pcutoff=self.model.spec.pcutoff,
                            align=self.crop_align())

    def warmup(self, height: int, width: int, runs: int = 2) -> float:
        """Build and run the sessions for the whole frame (and a fixed crop size) before capture;
        returns the seconds spent. Without this the first frames pay onnxruntime's set-up."""
        began = time.perf_counter()
        self.start(height, width)
        shapes = [(height, width)]
        if self.crop is not None and self.crop.window is not None:
            shapes.append((self.crop.window[1], self.crop.window[0]))
        for h, w in shapes:
            blank = np.zeros((h, w, 3), np.uint8)
            for _ in range(max(1, runs)):
                self._infer(blank)
        return time.perf_counter() - began

    # -- one frame ------------------------------------------------------------------------------
    def _infer(self, image: np.ndarray) -> Poses:
        plan = self.model.plan_for(*image.shape[:2])
        buf = self._buffers.get(plan.tensor)
        if buf is None:
            buf = self._buffers[plan.tensor] = np.empty((1, *plan.tensor, 3), np.uint8)
        batch = self.model.prepare((image,), self.color, out=buf)
        return self.model.postprocess(self.model.infer(batch), batch)

    def __call__(self, frame: np.ndarray, index: int = 0, captured: float | None = None,
                 capture_time: float | None = None) -> LiveResult:
        """Poses for one frame (BGR by default, any size), then the processors.

        ``captured`` (time.perf_counter) and ``capture_time`` (unix time) default to now.
        """
        if captured is None:
            captured = time.perf_counter()
        if capture_time is None:
            capture_time = time.time() - (time.perf_counter() - captured)
        height, width = frame.shape[:2]
        if self._frame_shape != (height, width):
            self.start(height, width)
        box = self.crop.next_box(height, width) if self.crop is not None else None
        if box is None:
            poses = self._infer(frame)
        else:
            x1, x2, y1, y2 = box
            poses = self._infer(frame[y1:y2, x1:x2])  # a view: no copy
            poses.coords[..., 0] += x1
            poses.coords[..., 1] += y1
        poses.frame_indices = np.array([index], np.int64)
        ready = time.perf_counter()
        if self.crop is not None:
            self.crop.update(poses.coords[0].reshape(-1, 3))  # every animal stays in the window
        info = FrameInfo(index, capture_time, captured, ready, self.model.spec.pcutoff, box)
        processed, actions, errors = self._process(poses, info)
        return LiveResult(index, poses, processed, actions, box, info, time.perf_counter(), errors)

    def _process(self, poses: Poses, info: FrameInfo) -> tuple[Poses, list[str], list[str]]:
        current, actions, errors = poses, [], []
        for name, processor in zip(self._names, self.processors):
            try:
                out = processor(current, info)
            except Exception as exc:  # a processor's failure must not stop the capture
                count = self.error_counts[name] = self.error_counts.get(name, 0) + 1
                if name not in self.first_errors:
                    self.first_errors[name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                errors.append(name)
                if self.on_error is not None:
                    self.on_error(name, exc, count)
                continue
            if isinstance(out, Poses):
                current = out
            elif out is not None:
                actions.append(str(out))
        return current, actions, errors

    def close(self) -> list[str]:
        """Close the processors that have ``close()`` (triggers switch off); returns the
        failures as messages (each processor is closed even if another one fails)."""
        problems = []
        for name, processor in zip(self._names, self.processors):
            close = getattr(processor, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    problems.append(f"processor {name}: close() failed: {exc}")
        return problems
