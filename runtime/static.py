"""A session specialised to one input shape, with its input and outputs bound to fixed buffers.

Video analysis feeds one frame size at one batch size for hours. Fixing the graph's free
dimensions (batch, height, width) when the session is created lets onnxruntime resolve every
shape once at optimisation time instead of on each run, and IO binding hands it the caller's
input buffer and preallocated outputs, so a run allocates nothing. `PoseModel.infer` switches to
one of these for a shape it sees again; ``benchmarks/session_tuning.py`` measures what it buys.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .session import open_session


class StaticSession:
    """Runs ``(batch, height, width, 3)`` uint8 tensors of one shape through a model file.

    ``outputs`` maps each output name to its shape at this input shape. ``run`` returns views of
    the bound output buffers: the next run overwrites them, so callers copy what they keep (the
    lock makes concurrent callers wait for each other, not share a buffer mid-run).
    """

    def __init__(self, path: str | Path, providers: list[Any], options: ort.SessionOptions, *, input_name: str,
                 graph_input_shape: list[Any], shape: tuple[int, int, int, int],
                 outputs: dict[str, tuple[int, ...]]) -> None:
        if min(shape[:3]) < 1:
            raise ValueError(f"a static shape needs positive sizes, got {shape}")
        if any(isinstance(d, int) and d != s for d, s in zip(graph_input_shape, shape)):
            raise ValueError(f"{path}: the graph input is {graph_input_shape}, which cannot take {shape}")
        self.shape = shape
        for name, size in zip(graph_input_shape, shape):
            if isinstance(name, str) and name:
                options.add_free_dimension_override_by_name(name, size)
        self.session = open_session(path, providers, options)
        self._input = input_name
        self.outputs = {name: np.empty(out_shape, np.float32) for name, out_shape in outputs.items()}
        self._binding = self.session.io_binding()
        for name, buf in self.outputs.items():
            self._binding.bind_output(name, "cpu", 0, np.float32, buf.shape, buf.ctypes.data)
        self._bound_input = 0  # address of the buffer the input is bound to
        self.lock = threading.Lock()

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Run one full batch; ``tensor`` must be C-contiguous uint8 of exactly ``self.shape``.
        Hold ``lock`` from this call until the outputs are copied when threads share the session."""
        if tensor.shape != self.shape or tensor.dtype != np.uint8 or not tensor.flags.c_contiguous:
            raise ValueError(f"static session takes C-contiguous uint8 {self.shape}, got {tensor.dtype} "
                             f"{tensor.shape}")
        address = tensor.ctypes.data
        if address != self._bound_input:  # the decoder cycles through a few pooled buffers
            self._binding.bind_input(self._input, "cpu", 0, np.uint8, self.shape, address)
            self._bound_input = address
        self.session.run_with_iobinding(self._binding)
        return self.outputs
