"""The PyTorch backend: networks, training loop, framework-side inference."""
from __future__ import annotations

from typing import Any

from .nets import create_model, list_models, model_arguments
from .train import final_metrics, fit


def model_stride(cfg: Any) -> int:
    """Output stride of the configured network (built once on the CPU; cheap for our models)."""
    return int(create_model(cfg.model.name, 1, **cfg.model.kwargs).stride)


__all__ = ["create_model", "final_metrics", "fit", "list_models", "model_arguments", "model_stride"]
