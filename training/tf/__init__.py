"""The TensorFlow backend (Keras 3): networks, training loop, framework-side inference.

The same functions as `posezoo.training.torch`, so `posezoo.training.api` drives either.
"""
from __future__ import annotations

from typing import Any

from . import nets
from .infer import predict_frames
from .nets import create_model, list_models, model_arguments
from .train import final_metrics, fit, load_model


def model_stride(cfg: Any) -> int:
    """Output stride of the configured network, read from its registry entry (nothing is
    built); an unknown model name or argument raises ValueError listing the TF choices."""
    return nets.model_stride(cfg.model.name, **cfg.model.kwargs)


__all__ = ["create_model", "final_metrics", "fit", "list_models", "load_model", "model_arguments",
           "model_stride", "predict_frames"]
