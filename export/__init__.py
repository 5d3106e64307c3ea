"""Exporters: a training run -> one self-describing .onnx file (+ fp16 / int8 variants)."""
from .core import ExportError, Exported, export

__all__ = ["ExportError", "Exported", "export"]
