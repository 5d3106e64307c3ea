"""posezoo's light runtime: numpy, OpenCV, pandas and onnxruntime only (never torch or TF)."""
from .io import load_poses, save_poses
from .model import PoseModel
from .poses import Poses
from .spec import Spec, SpecError, read_spec
from .video import analyze_video, analyze_videos

__all__ = ["PoseModel", "Poses", "Spec", "SpecError", "analyze_video", "analyze_videos", "load_poses", "read_spec",
           "save_poses"]
