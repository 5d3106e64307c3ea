"""posezoo's light runtime: numpy, OpenCV, pandas and onnxruntime only (never torch or TF)."""
from .model import PoseModel
from .spec import Spec, SpecError, read_spec

__all__ = ["PoseModel", "Spec", "SpecError", "read_spec"]
