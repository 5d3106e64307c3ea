"""posezoo's light runtime: numpy, OpenCV, pandas and onnxruntime only (never torch or TF)."""
from .model import PoseModel
from .spec import Spec, SpecError, read_spec
from .video import analyze_video, analyze_videos

__all__ = ["PoseModel", "Spec", "SpecError", "analyze_video", "analyze_videos", "read_spec"]
