"""PoseModel: one .onnx file (or zoo reference) in, keypoints in frame pixels out."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from . import geometry
from .onnxfile import OnnxFileError, graph_sha256_of_file
from .session import ModelLoadError, SessionSettings, active_device, open_session, providers_for
from .static import StaticSession
from .spec import GRAPH_HASH_KEY, Spec, SpecError, spec_from_session

Frames = np.ndarray | Sequence[np.ndarray]


def resolve_model_path(ref: str | Path) -> Path:
    """A path, or ``zoo:NAME[@VERSION]`` resolved (and downloaded if needed) through the zoo."""
    text = str(ref)
    if text.startswith("zoo:"):
        from posezoo.zoo import resolve_model  # imported on demand: the zoo is optional at runtime

        return Path(resolve_model(text))
    return Path(text).expanduser()


class PoseModel:
    """An onnxruntime session plus the spec that says how to feed it and read it."""

    def __init__(self, session: Any, spec: Spec, path: Path, device: str,
                 settings: SessionSettings = SessionSettings()) -> None:
        self.session = session
        self.spec = spec
        self.path = path
        self.device = device
        self.settings = settings
        self._input = spec.input.name
        self._output = spec.outputs["keypoints"].name
        self._plans: dict[tuple[int, int], geometry.Plan] = {}
        self._batch_dynamic = "batch" in spec.input.dynamic_axes
        self._local = threading.local()  # per-thread single-frame input buffer (see __call__)
        self._static: dict[tuple[int, int, int], StaticSession] = {}

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, device: str = "auto", threads: int | None = None, *,
             spin: bool = True, optimization: str = "all", arena: bool = True) -> "PoseModel":
        """Open a model. ``device``: auto, cpu, cuda, cuda:N or tensorrt; ``threads`` defaults
        to the physical cores; ``spin=False`` frees the cores between calls (beside acquisition);
        ``optimization`` and ``arena``: see :class:`SessionSettings`."""
        path = resolve_model_path(path)
        providers, kind = providers_for(device)
        settings = SessionSettings(threads, spin, optimization, arena)
        session = open_session(path, providers, settings.options())
        spec = spec_from_session(session, path)
        _check_graph(session, spec, path)
        return cls(session, spec, path, active_device(session, device, kind), settings)

    @property
    def keypoints(self) -> list[str]:
        return list(self.spec.keypoints)

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"PoseModel({self.spec.name!r}, keypoints={len(self.spec.keypoints)}, device={self.device!r})"

    # -- inference ----------------------------------------------------------------------------
    def __call__(self, frame: np.ndarray, color: str = "bgr") -> np.ndarray:
        """One frame -> (K, 3) keypoints: the low-latency path.

        Real-time loops call this at camera rate with frames of one size, so the plan and the
        input buffer are cached (per thread: concurrent callers never share a buffer) and only
        the graph run remains; ``warmup`` moves onnxruntime's first-run cost before the loop.
        """
        if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.dtype == np.uint8
                and frame.shape[2] == 3 and frame.shape[0] and frame.shape[1]):
            return self.predict(frame, color=color)[0]  # the general path names the problem
        p = self._plans.get(frame.shape[:2]) or self.plan_for(*frame.shape[:2])
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.shape[1:3] != p.tensor:
            buf = self._local.buf = np.empty((1, *p.tensor, 3), np.uint8)
        self.prepare_batch((frame,), p, color, out=buf)
        return p.to_frame(self.run_tensor(buf)[0])

    def warmup(self, height: int | None = None, width: int | None = None, runs: int = 2) -> float:
        """Run a blank frame ``runs`` times so the first real frame meets a warm session.

        onnxruntime allocates and picks kernels on the first run of a shape (much slower than
        the next ones). Size defaults to the model's fixed input size; returns seconds spent.
        """
        if height is None or width is None:
            if self.spec.input.size is None:
                raise ValueError(f"{self.path}: the model takes any frame size; pass the camera's "
                                 "height and width to warmup()")
            height, width = self.spec.input.size
        start = time.perf_counter()
        blank = np.zeros((height, width, 3), np.uint8)
        for _ in range(max(1, runs)):
            self(blank)
        return time.perf_counter() - start

    def predict(self, frames: Frames, color: str = "bgr") -> np.ndarray:
        """Frames (HxWx3 uint8, one or a batch, sizes may differ) -> (N, K, 3) x, y, score in
        each frame's own pixels. ``color`` is the frames' channel order: "bgr" (OpenCV) or "rgb"."""
        batch = _as_frame_list(frames)
        color = color.lower()
        if color not in ("bgr", "rgb"):
            raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
        out = np.empty((len(batch), len(self.spec.keypoints), 3), np.float32)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, frame in enumerate(batch):
            groups.setdefault(frame.shape[:2], []).append(i)
        for shape, idx in groups.items():
            p = self.plan_for(*shape)
            tensor = self.prepare_batch([batch[i] for i in idx], p, color)
            out[idx] = p.to_frame(self.run_tensor(tensor))
        return out

    def plan_for(self, height: int, width: int) -> geometry.Plan:
        key = (height, width)
        if key not in self._plans:
            self._plans[key] = geometry.plan(height, width, self.spec.input, self.spec.preprocess)
        return self._plans[key]

    def prepare_batch(self, frames: Iterable[np.ndarray], p: geometry.Plan, color: str = "bgr",
                      out: np.ndarray | None = None) -> np.ndarray:
        """Frames of one size -> the input tensor (N, H, W, 3) uint8 (written into ``out`` if given)."""
        frames = list(frames)
        if out is None:
            out = np.empty((len(frames), *p.tensor, 3), np.uint8)
        color = color.lower()
        if color not in ("bgr", "rgb"):
            raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
        swap = color != self.spec.input.color.lower()
        for i, frame in enumerate(frames):
            geometry.apply(frame, p, self.spec.preprocess, swap, out[i])
        return out[:len(frames)]

    def static_session(self, batch: int, height: int, width: int) -> StaticSession | None:
        """A session fixed to batches of ``batch`` frames of ``height`` x ``width`` (cached), or None
        when the graph's batch size is fixed to another value."""
        tensor = self.plan_for(height, width).tensor
        key = (batch, *tensor)
        if key not in self._static:
            dim = self.session.get_inputs()[0].shape[0]
            if isinstance(dim, int) and dim != batch:
                return None
            self._static[key] = StaticSession(self, batch, *tensor)
        return self._static[key]

    def run_tensor(self, tensor: np.ndarray) -> np.ndarray:
        """Run prepared input (N, H, W, 3) -> keypoints (N, K, 3) in tensor pixels."""
        if self._batch_dynamic or len(tensor) == 1:
            return self.session.run([self._output], {self._input: tensor})[0]
        return np.concatenate([self.session.run([self._output], {self._input: tensor[i:i + 1]})[0]
                               for i in range(len(tensor))])


def _as_frame_list(frames: Frames) -> list[np.ndarray]:
    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        items = list(frames)
    elif isinstance(frames, np.ndarray):
        items = [frames]
    elif isinstance(frames, (list, tuple)):
        items = list(frames)
    else:
        raise TypeError(f"frames must be a numpy array or a list of arrays, got {type(frames).__name__}")
    if not items:
        raise ValueError("no frames given")
    for i, frame in enumerate(items):
        if not isinstance(frame, np.ndarray):
            raise TypeError(f"frame {i} is a {type(frame).__name__}, expected a numpy array (H, W, 3) uint8")
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {i} has shape {frame.shape}, expected (height, width, 3)")
        if frame.dtype != np.uint8:
            raise ValueError(f"frame {i} has dtype {frame.dtype}, expected uint8 (0..255 pixel values)")
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise ValueError(f"frame {i} is empty ({frame.shape})")
    return items


def _check_graph(session: Any, spec: Spec, path: Path) -> None:
    """Refuse a file whose graph and spec do not belong together."""
    meta = session.get_modelmeta().custom_metadata_map
    if GRAPH_HASH_KEY in meta:
        try:
            actual = graph_sha256_of_file(path)
        except OnnxFileError as exc:
            raise ModelLoadError(str(exc)) from None
        if actual != meta[GRAPH_HASH_KEY]:
            raise ModelLoadError(f"{path}: the model graph was modified after export (graph sha256 "
                                 f"{actual[:12]}... != recorded {meta[GRAPH_HASH_KEY][:12]}...); re-export it")
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != spec.input.name:
        raise SpecError(f"{path}: spec field 'input.name' is {spec.input.name!r} but the graph's inputs are "
                        f"{[i.name for i in inputs]}")
    if inputs[0].type != "tensor(uint8)" or len(inputs[0].shape) != 4:
        raise SpecError(f"{path}: the graph input {inputs[0].name!r} is {inputs[0].type} {inputs[0].shape}; "
                        "the spec says uint8 NHWC frames")
    outputs = {o.name: o for o in session.get_outputs()}
    for key, out in spec.outputs.items():
        if out.name not in outputs:
            raise SpecError(f"{path}: spec field 'outputs.{key}.name' is {out.name!r} but the graph's outputs "
                            f"are {sorted(outputs)}")
    shape = outputs[spec.outputs["keypoints"].name].shape
    k = len(spec.keypoints)
    if len(shape) != 3 or (isinstance(shape[1], int) and shape[1] != k) or (isinstance(shape[2], int) and shape[2] != 3):
        raise SpecError(f"{path}: the keypoints output has shape {shape}, but the spec lists {k} keypoints "
                        f"and expects (batch, {k}, 3)")
