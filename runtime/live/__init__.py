"""Live analysis: camera in, poses and triggers out, with measured latency.

``run_live`` (and `LiveSession`) run the threaded loop: a `FrameSource` (camera, a video file
standing in for one, your callable), latest-frame-wins inference through `LivePipeline` (the
model, optional `DynamicCrop`, processors), results streamed to DeepLabCut's table with capture
timestamps beside it, an optional view and recording. `LivePipeline` alone is the frame-by-frame
API for your own acquisition loop.
"""
from .crop import DynamicCrop
from .display import OpenCVWindow, display_problem, draw_overlay
from .loop import LatestFrame, LiveError, LiveReport, LiveSession, default_results_path, open_source, run_live
from .outputs import LogOutput, SerialOutput, TTLOutput, open_output
from .pipeline import LivePipeline, LiveResult
from .processors import AngleTrigger, FrameInfo, OneEuroFilter, Processor, RegionTrigger, Trigger, load_processor
from .results import TIMESTAMP_COLUMNS, timestamps_path
from .sources import CallableSource, CameraSource, FrameSource, FramesSource, SourceError, VideoSource

__all__ = ["AngleTrigger", "CallableSource", "CameraSource", "DynamicCrop", "FrameInfo", "FrameSource",
           "FramesSource", "LatestFrame", "LiveError", "LivePipeline", "LiveReport", "LiveResult", "LiveSession",
           "LogOutput", "OneEuroFilter", "OpenCVWindow", "Processor", "RegionTrigger", "SerialOutput", "SourceError",
           "TIMESTAMP_COLUMNS", "TTLOutput", "Trigger", "VideoSource", "default_results_path", "display_problem",
           "draw_overlay", "load_processor", "open_output", "open_source", "run_live", "timestamps_path"]
