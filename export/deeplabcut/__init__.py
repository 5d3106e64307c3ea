"""Import trained DeepLabCut models (DeepLabCut 3 PyTorch, DeepLabCut 2 TensorFlow) into posezoo.

`from_deeplabcut(path, "model.onnx")` rebuilds the network in plain torch with DeepLabCut's weight
names (no deeplabcut import), bakes DeepLabCut's normalisation and decode into the graph and
writes one self-describing .onnx file after a parity gate; `is_deeplabcut_model` lets
``posezoo export PATH`` tell a DeepLabCut model from a posezoo run directory.
"""
from .convert import from_deeplabcut
from .errors import DeepLabCutModelError
from .source import LAYOUTS, is_deeplabcut_model, locate

__all__ = ["DeepLabCutModelError", "LAYOUTS", "from_deeplabcut", "is_deeplabcut_model", "locate"]
