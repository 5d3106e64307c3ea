"""Frames/s on the CPU, measured once at pack time and stored in the entry with what it ran on.

A short, honest figure: the session is warmed up first (onnxruntime picks kernels and allocates
on the first runs of a shape), then single frames of the sample's size go through
`PoseModel.predict`, the whole host-side path a user's call takes (resize, pad, graph, map back).
The CPU's name and the thread count are recorded because the figure means nothing without them.
"""
from __future__ import annotations

import platform
import re
import statistics
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_FRAME = (480, 640)  # (height, width) of a common lab camera, when no sample is given
FRAMES = 20
WARMUP = 3
MIN_SECONDS = 1.0  # fast models run for at least this long, so timer and scheduler noise stay small


def cpu_name() -> str:
    """The CPU model as the OS reports it (Linux /proc/cpuinfo, else `platform`)."""
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if match:
            return " ".join(match.group(1).split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _onnxruntime_version() -> str:
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def measure_speed(model_path: str | Path, frame: np.ndarray | None = None, *, frames: int = FRAMES,
                  warmup: int = WARMUP, min_seconds: float = MIN_SECONDS,
                  threads: int | None = None) -> dict[str, Any]:
    """Time single-frame predictions on the CPU after `warmup` untimed ones: at least `frames`
    of them, and more until `min_seconds` have passed.

    `frame` is a BGR image (the sample); without one a blank frame of the model's fixed input
    size, else DEFAULT_FRAME, is used (the graph's cost does not depend on pixel values).
    `threads` defaults to the physical cores, as `PoseModel.load` does.
    """
    from posezoo.runtime import PoseModel
    from posezoo.runtime.session import physical_cores

    if frames < 1 or warmup < 0:
        raise ValueError(f"need frames >= 1 and warmup >= 0, got {frames} and {warmup}")
    threads = threads or physical_cores()
    model = PoseModel.load(model_path, device="cpu", threads=threads)
    if frame is None:
        h, w = model.spec.input.size or DEFAULT_FRAME
        frame = np.zeros((h, w, 3), np.uint8)
    batch = [frame]
    for _ in range(warmup):
        model.predict(batch, color="bgr")
    times: list[float] = []
    while len(times) < frames or sum(times) < min_seconds:
        start = time.perf_counter()
        model.predict(batch, color="bgr")
        times.append(time.perf_counter() - start)
    return {
        "frames_per_second": round(len(times) / sum(times), 1),
        "ms_per_frame_median": round(statistics.median(times) * 1000, 2),
        "device": "cpu",
        "cpu": cpu_name(),
        "threads": threads,
        "frame_size": [int(frame.shape[0]), int(frame.shape[1])],
        "batch": 1,
        "frames": len(times),
        "warmup": warmup,
        "onnxruntime": _onnxruntime_version(),
        "measured": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    }
