"""The TensorFlow backend (Keras 3): networks and the `Trainer` the shared loop drives.

The same functions as `posezoo.training.torch`, so `posezoo.training.loop` drives either.
"""
from __future__ import annotations

from typing import Any

from . import nets
from .nets import create_model, list_models, model_arguments
from .train import TFTrainer


def trainer(run: Any) -> TFTrainer:
    return TFTrainer(run)


def model_stride(cfg: Any) -> int:
    """Output stride of the configured network, read from its registry entry (nothing is
    built); an unknown model name or argument raises ValueError listing the TF choices."""
    return nets.model_stride(cfg.model.name, **cfg.model.kwargs)


__all__ = ["create_model", "list_models", "model_arguments", "model_stride", "trainer"]
