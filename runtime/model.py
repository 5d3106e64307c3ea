"""PoseModel: the only road from pixels to poses.

``prepare`` (the spec's host geometry, into reusable input buffers) -> ``infer`` (onnxruntime; a
batch in a reused buffer runs on a session fixed to its shape, with bound buffers) ->
``postprocess`` (back to frame pixels, as `Poses`). ``predict`` chains the three for frames of any sizes; video
analysis, export's parity gate and int8 calibration, and the benchmarks call these and nothing
else.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import geometry
from .body import BodyCheck
from .poses import Poses
from .session import ModelLoadError, SessionSettings, active_device, open_session, providers_for
from .spec import Spec, SpecError, spec_from_session
from .static import StaticSession

Frames = np.ndarray | Sequence[np.ndarray]
#: Fixed-shape sessions kept per model (each holds its own optimised graph and buffers).
STATIC_SESSIONS = 4
RESOLVERS = "posezoo.resolvers"  # entry-point group: "zoo", "imagenet" -> the zoo's resolvers
#: A zoo entry packed with its training snapshot keeps it beside its model as ``weights.<the
#: snapshot's suffix>`` (.pt, .weights.h5); ``posezoo train --init zoo:NAME`` starts from it.
WEIGHTS_STEM = "weights."


def resolve_model_path(ref: str | Path) -> Path:
    """A path, or ``SCHEME:NAME`` (e.g. ``zoo:NAME[@VERSION]``) resolved by the package that
    registered that scheme as a ``posezoo.resolvers`` entry point (the zoo registers ``zoo`` for
    models and ``imagenet`` for public backbone weights)."""
    text = str(ref)
    scheme, sep, _ = text.partition(":")
    if sep and len(scheme) > 1 and scheme.isidentifier():  # a Windows drive letter is one character
        from importlib.metadata import entry_points

        found = [ep for ep in entry_points(group=RESOLVERS) if ep.name == scheme]
        if not found:
            raise ModelLoadError(f"{text}: no resolver for '{scheme}:' references is installed (posezoo's base "
                                 "install provides zoo:NAME[@VERSION]; reinstall posezoo)")
        return Path(found[0].load()(text))
    return Path(text).expanduser()


@dataclass
class Batch:
    """Frames of one size prepared for the graph: ``tensor`` rows past ``count`` are padding.

    ``pooled`` marks a caller's reusable buffer (video decoding, the single-frame path): its
    shape will come again, so `PoseModel.infer` runs it on a session fixed to that shape.
    """

    tensor: np.ndarray  # (B, H, W, 3) uint8, C-contiguous
    plan: geometry.Plan
    count: int
    pooled: bool = False


class PoseModel:
    """An onnxruntime session plus the spec that says how to feed it and read it."""

    def __init__(self, session: Any, spec: Spec, path: Path, device: str,
                 settings: SessionSettings = SessionSettings(), body_check: bool = True) -> None:
        self.session = session
        self.spec = spec
        self.path = path
        self.device = device
        self.settings = settings
        # The spec's body plan, where it has one: a single-animal model's check
        # (`posezoo.runtime.body`), a multi-animal one's keypoint distances in assembly. Off for
        # video whose animals are much larger or smaller in pixels than in the labelled frames.
        shape = spec.assembly is not None and spec.assembly.nearest is not None
        self.body_check = body_check and (spec.body is not None or shape)
        self._body = BodyCheck(spec) if self.body_check and spec.body is not None else None
        self._input = spec.input.name
        self._output = spec.outputs["keypoints"].name
        # A multi-animal graph is read for its candidates and affinities (+ identity), which
        # assembly turns into animals; a single-animal one for its keypoints.
        self._multi = [spec.outputs[key].name for key in ("candidates", "affinities", "identity")
                       if key in spec.outputs] if spec.multi is not None else []
        self._plans: dict[tuple[int, int], geometry.Plan] = {}
        self._graph_batch = session.get_inputs()[0].shape[0]
        self._local = threading.local()  # per-thread single-frame input buffer (see __call__)
        self._static: OrderedDict[tuple[int, ...], StaticSession] = OrderedDict()
        self._static_lock = threading.Lock()

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, device: str = "auto", threads: int | None = None, *, spin: bool = True,
             optimization: str = "all", arena: bool = True, static: bool = True,
             body_check: bool = True) -> PoseModel:
        """Open a model. ``device``: auto, cpu, cuda, cuda:N or tensorrt; ``threads`` defaults
        to the physical cores; ``spin=False`` frees the cores between calls (beside acquisition);
        ``optimization``, ``arena`` and ``static``: see :class:`SessionSettings`;
        ``body_check=False`` skips the spec's body plan (`posezoo.runtime.body`; a multi-animal
        model's keypoint distances in `posezoo.runtime.assemble`)."""
        path = resolve_model_path(path)
        providers, kind = providers_for(device)
        settings = SessionSettings(threads, spin, optimization, arena, static)
        session = open_session(path, providers, settings.options())
        spec = spec_from_session(session, path)
        _check_graph(session, spec, path)
        return cls(session, spec, path, active_device(session, device, kind), settings, body_check)

    @property
    def keypoints(self) -> list[str]:
        return list(self.spec.keypoints)

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"PoseModel({self.spec.name!r}, keypoints={len(self.spec.keypoints)}, device={self.device!r})"

    # -- the three steps ----------------------------------------------------------------------
    def plan_for(self, height: int, width: int) -> geometry.Plan:
        """Where a frame of this size lands in the input tensor (cached per size)."""
        key = (height, width)
        if key not in self._plans:
            self._plans[key] = geometry.plan(height, width, self.spec.input, self.spec.preprocess)
        return self._plans[key]

    def prepare(self, frames: Iterable[np.ndarray], color: str = "bgr", out: np.ndarray | None = None) -> Batch:
        """Frames of one size -> a `Batch` (written into ``out``, a reusable (B, H, W, 3) uint8
        buffer with B >= the number of frames, when given)."""
        frames = list(frames)
        if not frames:
            raise ValueError("no frames given")
        swap = _swap(color, self.spec)
        p = self.plan_for(*frames[0].shape[:2])
        pooled = out is not None
        if out is None:
            out = np.empty((len(frames), *p.tensor, 3), np.uint8)
        elif out.shape[1:] != (*p.tensor, 3) or len(out) < len(frames):
            raise ValueError(f"the buffer has shape {out.shape}; {len(frames)} frames of this size need "
                             f"({len(frames)}+, {p.tensor[0]}, {p.tensor[1]}, 3)")
        for i, frame in enumerate(frames):
            if frame.shape[:2] != frames[0].shape[:2]:
                raise ValueError(f"frame {i} is {frame.shape[1]}x{frame.shape[0]}, frame 0 is "
                                 f"{frames[0].shape[1]}x{frames[0].shape[0]}: prepare takes frames of one size")
            geometry.apply(frame, p, self.spec.preprocess, swap_rb=swap, out=out[i])
        return Batch(out, p, len(frames), pooled=pooled)

    def infer(self, batch: Batch) -> Any:
        """Run a batch -> the graph's keypoints (count, K, 3) in tensor pixels (a new array); for a
        multi-animal model a dict of its candidates, affinities (and identity) outputs by name.

        A pooled batch runs through a session fixed to its buffer's shape (when
        ``settings.static``), which always runs the whole buffer; others run on the general
        dynamic-shape session (the two agree to float rounding, not always bit for bit).
        """
        tensor = batch.tensor
        fixed = self._static_for(tensor.shape) if self.settings.static and batch.pooled else None
        if self._multi:
            return self._infer_multi(batch, fixed)
        if fixed is not None:
            with fixed.lock:
                return fixed.run(tensor)[self._output][:batch.count].copy()
        tensor = tensor[:batch.count]
        if not isinstance(self._graph_batch, int) or len(tensor) == self._graph_batch:
            return self.session.run([self._output], {self._input: tensor})[0]
        return np.concatenate([self.session.run([self._output], {self._input: tensor[i:i + 1]})[0]
                               for i in range(len(tensor))])

    def _infer_multi(self, batch: Batch, fixed: StaticSession | None) -> dict[str, np.ndarray]:
        if fixed is not None:
            with fixed.lock:
                out = fixed.run(batch.tensor)
                return {name: out[name][:batch.count].copy() for name in self._multi}
        tensor = batch.tensor[:batch.count]
        if not isinstance(self._graph_batch, int) or len(tensor) == self._graph_batch:
            return dict(zip(self._multi, self.session.run(self._multi, {self._input: tensor})))
        parts = [self.session.run(self._multi, {self._input: tensor[i:i + 1]}) for i in range(len(tensor))]
        return {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(self._multi)}

    def layout(self, n_frames: int = 0) -> Poses:
        """``n_frames`` frames of absent poses with this model's names: what its results look like
        (a multi-animal model's individuals and unique keypoints included)."""
        return Poses.empty(n_frames, self.spec.keypoints, self.spec.individuals, dtype=np.float32,
                           skeleton=self.spec.skeleton, unique_keypoints=self.spec.unique_keypoints,
                           scorer=self.name, model=self.name)

    def postprocess(self, raw: Any, batch: Batch) -> Poses:
        """Graph output in tensor pixels -> `Poses` in the frames' own pixels; a multi-animal
        model's candidates are assembled into animals here (`posezoo.runtime.assemble`, within
        the spec's keypoint distances), a single-animal one's keypoints pass the body-plan check
        (`posezoo.runtime.body`)."""
        if self._multi:
            from .assemble import poses_from_candidates

            spec = self.spec
            names = [spec.outputs[key].name for key in ("candidates", "affinities")]
            ident = raw.get(spec.outputs["identity"].name) if "identity" in spec.outputs else None
            return poses_from_candidates(spec, batch.plan.to_frame(raw[names[0]][:batch.count]),
                                         raw[names[1]][:batch.count], ident, shape=self.body_check)
        poses = self.layout(0)
        coords = batch.plan.to_frame(raw[:batch.count])[:, None]
        poses.coords = self._body(coords) if self._body is not None else coords
        return poses

    # -- conveniences on top --------------------------------------------------------------------
    def predict(self, frames: Frames, color: str = "bgr") -> Poses:
        """Frames (HxWx3 uint8, one or a batch, sizes may differ) -> `Poses` in each frame's own
        pixels. ``color`` is the frames' channel order: "bgr" (OpenCV) or "rgb"."""
        items = _as_frame_list(frames)
        _swap(color, self.spec)
        out = self.layout(len(items))
        groups: dict[tuple[int, int], list[int]] = {}
        for i, frame in enumerate(items):
            groups.setdefault(frame.shape[:2], []).append(i)
        for idx in groups.values():
            batch = self.prepare([items[i] for i in idx], color)
            part = self.postprocess(self.infer(batch), batch)
            out.coords[idx] = part.coords
            if out.unique is not None:
                out.unique[idx] = part.unique
        return out

    def __call__(self, frame: np.ndarray, color: str = "bgr") -> Poses:
        """One frame -> its `Poses`: the low-latency path.

        Real-time loops call this at camera rate with frames of one size, so the plan and the
        input buffer are cached (per thread: concurrent callers never share a buffer); ``warmup``
        moves onnxruntime's first-run costs before the loop.
        """
        if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.dtype == np.uint8
                and frame.shape[2] == 3 and frame.shape[0] and frame.shape[1]):
            return self.predict(frame, color=color)  # the general path names the problem
        p = self._plans.get(frame.shape[:2]) or self.plan_for(*frame.shape[:2])
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.shape[1:3] != p.tensor:
            buf = self._local.buf = np.empty((1, *p.tensor, 3), np.uint8)
        batch = self.prepare((frame,), color, out=buf)
        return self.postprocess(self.infer(batch), batch)

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

    def static_shapes(self) -> list[tuple[int, ...]]:
        """Input shapes that run on fixed-shape sessions now."""
        return list(self._static)

    def _static_for(self, shape: tuple[int, ...]) -> StaticSession | None:
        with self._static_lock:
            fixed = self._static.get(shape)
            if fixed is not None:
                self._static.move_to_end(shape)
                return fixed
            if isinstance(self._graph_batch, int) and self._graph_batch != shape[0]:
                return None
            provider_options = self.session.get_provider_options()
            providers = [(p, provider_options.get(p, {})) for p in self.session.get_providers()]
            fixed = StaticSession(self.path, providers, self.settings.options(), input_name=self._input,
                                  graph_input_shape=self.session.get_inputs()[0].shape, shape=shape,  # type: ignore[arg-type]
                                  outputs=self._static_outputs(shape))
            self._static[shape] = fixed
            if len(self._static) > STATIC_SESSIONS:
                self._static.popitem(last=False)
            return fixed

    def _static_outputs(self, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Output shapes at an input shape: fixed by the spec (multi-animal: candidates per
        keypoint, edges, individuals), so a static session can bind them before it runs."""
        n, spec = shape[0], self.spec
        if spec.multi is None:
            return {self._output: (n, len(spec.keypoints), 3)}
        m, channels = spec.multi, len(spec.keypoints) + len(spec.unique_keypoints)
        shapes = {"candidates": (n, channels, m.candidates, 3),
                  "affinities": (n, len(m.graph), m.candidates, m.candidates),
                  "identity": (n, channels, m.candidates, len(m.individuals))}
        return {spec.outputs[key].name: shapes[key] for key in ("candidates", "affinities", "identity")
                if key in spec.outputs}


def _swap(color: str, spec: Spec) -> bool:
    color = color.lower()
    if color not in ("bgr", "rgb"):
        raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
    return color != spec.input.color.lower()


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
    """Refuse a file whose graph and spec do not belong together (`spec_from_session` has
    already checked that neither was edited after export)."""
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
