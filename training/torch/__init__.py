"""The PyTorch backend: networks and the `Trainer` the shared loop (`training/loop.py`) drives."""
from __future__ import annotations

from typing import Any

from .nets import create_model, list_models, model_arguments
from .train import TorchTrainer


def trainer(run: Any) -> TorchTrainer:
    return TorchTrainer(run)


def model_stride(cfg: Any) -> int:
    """Output stride of the configured network (built once on the CPU; cheap for our models)."""
    return int(create_model(cfg.model.name, 1, **cfg.model.kwargs).stride)


__all__ = ["create_model", "list_models", "model_arguments", "model_stride", "trainer"]
