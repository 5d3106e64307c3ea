"""onnxruntime sessions: device choice, honest provider reporting, CPU tuning."""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|tensorrt)(?::(\d+))?$")


class ModelLoadError(RuntimeError):
    """The model file could not be opened as an onnxruntime session."""


def physical_cores() -> int:
    """Physical cores available to this process (SMT siblings share one core's FP units)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        text = Path("/proc/cpuinfo").read_text()
        siblings = re.search(r"^siblings\s*:\s*(\d+)", text, re.M)
        cores = re.search(r"^cpu cores\s*:\s*(\d+)", text, re.M)
        if siblings and cores and int(siblings.group(1)) > int(cores.group(1)):
            return max(1, logical * int(cores.group(1)) // int(siblings.group(1)))
    except OSError:
        pass
    return max(1, logical)


def providers_for(device: str) -> tuple[list[Any], str]:
    """Map a device string to onnxruntime providers; returns (providers, requested kind).

    Providers that this onnxruntime build lacks are dropped *before* the session is created, so
    a machine without CUDA gets one clear warning (from `active_device`) instead of onnxruntime's
    error log.
    """
    match = _DEVICE_RE.match(device.strip().lower())
    if not match:
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or tensorrt")
    kind, index = match.group(1), int(match.group(2) or 0)
    available = set(ort.get_available_providers())
    cuda = (CUDA, {"device_id": index})
    wanted: list[Any]
    if kind == "cpu":
        wanted = [CPU]
    elif kind == "tensorrt":
        wanted = [(TENSORRT, {"device_id": index, "trt_engine_cache_enable": True,
                              "trt_engine_cache_path": str(_trt_cache_dir())}), cuda, CPU]
    else:  # cuda or auto
        wanted = [cuda, CPU]
    usable = [p for p in wanted if (p[0] if isinstance(p, tuple) else p) in available]
    return usable, kind


def _trt_cache_dir() -> Path:
    import platformdirs

    path = Path(os.environ.get("POSEZOO_HOME") or platformdirs.user_cache_dir("posezoo")) / "tensorrt"
    path.mkdir(parents=True, exist_ok=True)
    return path


_LEVELS = {"none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
           "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
           "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
           "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


@dataclass(frozen=True)
class SessionSettings:
    """CPU tuning of an onnxruntime session; each default is the measured best for video analysis
    on a lab PC (``benchmarks/session_tuning.py`` prints every setting's effect).

    ``threads``: intra-op threads, None = the physical cores (SMT siblings add no FP units).
    ``spin``: worker threads busy-wait between runs. Off frees the cores for acquisition software
    between batches, at a small cost in frames/s. ``optimization``: onnxruntime's graph
    optimisation level (none, basic, extended, all). ``arena``: onnxruntime's CPU memory arena.
    ``static``: batches in reused buffers (video, the single-frame path) run on a session fixed
    to their shape with bound buffers (``runtime/static.py``; measured faster for video).
    """

    threads: int | None = None
    spin: bool = True
    optimization: str = "all"
    arena: bool = True
    static: bool = True

    def __post_init__(self) -> None:
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {self.threads!r}")
        if self.optimization not in _LEVELS:
            raise ValueError(f"optimization must be one of {sorted(_LEVELS)}, got {self.optimization!r}")

    def options(self) -> ort.SessionOptions:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: fallbacks are reported once, by us
        opts.intra_op_num_threads = self.threads or physical_cores()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = _LEVELS[self.optimization]
        opts.enable_cpu_mem_arena = self.arena
        if not self.spin:  # leave the cores to acquisition software between batches
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts


def open_session(path: str | Path, providers: Sequence[Any] | None = None,
                 options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory, not an .onnx model file")
    try:
        return ort.InferenceSession(str(path), sess_options=options or SessionSettings().options(),
                                    providers=list(providers or [CPU]))
    except Exception as exc:  # onnxruntime raises several exception types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path}: onnxruntime cannot load this file as an ONNX model ({first[:300]}); "
                             "is it a complete .onnx file? Re-download or re-export it") from None


def active_device(session: ort.InferenceSession, requested: str, kind: str) -> str:
    """What really runs, after onnxruntime's own silent fallbacks; warns once on a downgrade."""
    active = session.get_providers()
    if TENSORRT in active:
        device = "tensorrt"
    elif CUDA in active:
        opts = session.get_provider_options().get(CUDA, {})
        device = f"cuda:{opts.get('device_id', 0)}"
    else:
        device = "cpu"
    if kind in ("cuda", "tensorrt") and device == "cpu" or kind == "tensorrt" and device != "tensorrt":
        have = ", ".join(ort.get_available_providers())
        warnings.warn(f"device {requested!r} was requested but the model runs on {device} (this onnxruntime "
                      f"offers: {have}). For CUDA install posezoo[gpu] (onnxruntime-gpu) with matching CUDA "
                      "and cuDNN libraries; see the README's GPU section.", RuntimeWarning, stacklevel=3)
    return device
