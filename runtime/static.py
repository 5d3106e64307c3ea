"""A session specialised to one input shape, with its input and output bound to fixed buffers.

Video analysis feeds one frame size at one batch size for hours. Fixing the graph's free
dimensions (batch, height, width) when the session is created lets onnxruntime resolve every
shape once at optimisation time instead of on each run, and IO binding hands it the caller's
input buffer and a preallocated output, so a run allocates nothing. What that buys is measured by
``benchmarks/session_tuning.py``; ``analyze`` uses it for every video (``static=False`` opts out).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .session import open_session

if TYPE_CHECKING:
    from .model import PoseModel


class StaticSession:
    """Runs ``(batch, height, width, 3)`` uint8 tensors of one shape through a model.

    ``run`` returns a view of the bound output buffer: it is overwritten by the next run, so
    callers convert it (``Plan.to_frame`` makes a new array) before running again.
    """

    def __init__(self, model: PoseModel, batch: int, height: int, width: int) -> None:
        if batch < 1 or height < 1 or width < 1:
            raise ValueError(f"a static shape needs positive sizes, got batch={batch} {height}x{width}")
        self.shape = (batch, height, width, 3)
        dims = model.session.get_inputs()[0].shape
        if any(isinstance(d, int) and d != s for d, s in zip(dims, self.shape)):
            raise ValueError(f"{model.path}: the graph input is {dims}, which cannot take {self.shape}")
        options = model.settings.options()
        for name, size in zip(dims, self.shape):
            if isinstance(name, str) and name:
                options.add_free_dimension_override_by_name(name, size)
        provider_options = model.session.get_provider_options()
        providers = [(p, provider_options.get(p, {})) for p in model.session.get_providers()]
        self.session = open_session(model.path, providers, options)
        self._input = model.spec.input.name
        out = model.spec.outputs["keypoints"].name
        self.output = np.empty((batch, len(model.spec.keypoints), 3), np.float32)
        self._binding = self.session.io_binding()
        self._binding.bind_output(out, "cpu", 0, np.float32, self.output.shape, self.output.ctypes.data)
        self._bound_input = 0  # address of the buffer the input is bound to

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """Run one full batch; ``tensor`` must be C-contiguous uint8 of exactly ``self.shape``."""
        if tensor.shape != self.shape or tensor.dtype != np.uint8 or not tensor.flags.c_contiguous:
            raise ValueError(f"static session takes C-contiguous uint8 {self.shape}, got {tensor.dtype} "
                             f"{tensor.shape}")
        address = tensor.ctypes.data
        if address != self._bound_input:  # the decoder cycles through a few pooled buffers
            self._binding.bind_input(self._input, "cpu", 0, np.uint8, self.shape, address)
            self._bound_input = address
        self.session.run_with_iobinding(self._binding)
        return self.output
