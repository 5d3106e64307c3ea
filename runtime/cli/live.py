"""`posezoo live`: poses from a camera as it films, with processors (triggers) and a live view."""
from __future__ import annotations

import argparse
import re
import warnings
from pathlib import Path
from typing import Any

from .common import BODY_CHECK_HELP, DEVICE_HELP, MODEL_HELP, positive, probability


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match.group(1)), int(match.group(2))) < 1:
        raise argparse.ArgumentTypeError(f"give WIDTHxHEIGHT in pixels, e.g. 192x192, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _cmd_live(args: argparse.Namespace) -> int:
    from posezoo.runtime.live import (CallableSource, CameraSource, DynamicCrop, VideoSource, load_processor,
                                      run_live)
    from posezoo.runtime.live.processors import load_object
    from posezoo.runtime.model import PoseModel

    crop = None
    if args.crop or args.crop_size or args.crop_margin is not None or args.crop_threshold is not None:
        crop = DynamicCrop(margin=20 if args.crop_margin is None else args.crop_margin,
                           threshold=args.crop_threshold, size=args.crop_size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        processors = [load_processor(target, kwargs) for target, *kwargs in args.processor or []]
    for w in caught:
        print(f"warning: {w.message}")
    model = PoseModel.load(args.model, device=args.device, threads=args.threads, spin=args.spin,
                           body_check=not args.no_body_check)
    if args.camera is not None:
        source: Any = CameraSource(args.camera, width=args.width, height=args.height, fps=args.fps)
    elif args.video is not None:
        source = VideoSource(args.video, fps=args.fps)
    else:
        read = load_object(args.source)
        if isinstance(read, type):
            read = read()  # a class: its instances are the callables
        source = CallableSource(read, fps=args.fps, name=args.source.rpartition(":")[2])
    print(f"model {model.name} on {model.device}; source {source.name}"
          + (f" at {source.fps:g} frames/s" if source.fps else "")
          + ("; dynamic cropping" if crop is not None else "")
          + (f"; processors: {', '.join(type(p).__name__ for p in processors)}" if processors else ""))
    print("Ctrl-C stops the session; the results are complete whenever it stops.")
    report = run_live(model, source, args.output, output_dir=args.output_dir, crop=crop, processors=processors,
                      display=args.display, record=args.record, duration=args.duration, frames=args.frames,
                      csv=args.csv, overwrite=args.overwrite, progress=not args.quiet)
    print(report.summary())
    return 0 if report.complete else 1


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "live", help="live analysis: poses from a camera as it films, processors/triggers, live view",
        description="Run MODEL on a camera (or a video file standing in for one) as the frames arrive. The newest "
                    "frame always wins: frames that arrive while the model is busy are dropped and counted, never "
                    "queued, so latency cannot build up. Results go to a DeepLabCut-layout .h5 with one row per "
                    "captured frame (NaN for dropped ones), <name>_timestamps.csv (capture time, latency, crop, "
                    "processor actions per frame) and <name>_meta.json. Ctrl-C (or SIGTERM) stops the session with "
                    "complete files. Exit code 0 when the session ran as asked; 1 when the source ended early (a "
                    "camera that disconnected, a truncated video, before --duration/--frames) or a processor raised "
                    "(the results are complete either way); 2 on errors.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  posezoo live model.onnx --camera 0 --display --record session1.mp4\n"
               "  posezoo live model.onnx --video test.mp4 --crop --duration 60\n"
               "  posezoo live model.onnx --camera 0 --crop \\\n"
               "      --processor RegionTrigger keypoint=snout 'rectangle=(0,0,100,100)' output=serial:/dev/ttyACM0\n"
               "  posezoo live model.onnx --camera 0 --processor mylab/laser.py:Laser port=/dev/ttyUSB0\n\n"
               "processors: RegionTrigger, AngleTrigger, OneEuroFilter (built in), or module:Class /\n"
               "path/file.py:Class; KEY=VALUE arguments are Python literals or text. Outputs for triggers:\n"
               "output=log (a logging stand-in), output=serial:PORT (writes 1/0; needs pyserial),\n"
               "output='serial:PORT?line=rts' (toggles RTS or DTR), output='serial:PORT?on=O&off=X&baud=9600'.")
    p.add_argument("model", help=MODEL_HELP)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, metavar="INDEX", help="OpenCV camera index (0 = the first camera)")
    src.add_argument("--video", type=Path, metavar="FILE",
                     help="a video file standing in for a camera, played in real time (at --fps or its own rate)")
    src.add_argument("--source", metavar="MODULE:NAME",
                     help="your frame source: a function (or class whose instances are callables) returning a "
                          "BGR frame per call and None at the end; module:name or path/file.py:name")
    p.add_argument("--fps", type=_positive_float, default=None,
                   help="frame rate: asked of the camera; the pace of --video (default its own rate) and --source")
    p.add_argument("--width", type=positive, default=None, help="camera frame width to ask for")
    p.add_argument("--height", type=positive, default=None, help="camera frame height to ask for")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--output", "-o", type=Path, default=None,
                     help="results .h5 (default: <recording>DLC_posezoo_<model>.h5 beside --record, else "
                          "<source>-live-<date-time>DLC_posezoo_<model>.h5 in --output-dir)")
    out.add_argument("--output-dir", type=Path, default=None,
                     help="folder for the default results name (default: here)")
    p.add_argument("--csv", action="store_true", help="also write the .csv table")
    p.add_argument("--overwrite", action="store_true", help="replace existing results / recording of the same name")
    p.add_argument("--display", action="store_true",
                   help="show the frames with keypoints, latency and frame rate (q or Esc stops); on a machine "
                        "without a display a message says so and the session runs headless")
    p.add_argument("--record", type=Path, default=None, metavar="OUT.mp4",
                   help="record every captured frame (.mp4, .avi, .mkv, .mov); the results' row i is its frame i")
    p.add_argument("--processor", nargs="+", action="append", metavar=("TARGET", "KEY=VALUE"),
                   help="run a processor on every result (repeatable, in order): a built-in name, module:Class or "
                        "path/file.py:Class, then its KEY=VALUE arguments")
    p.add_argument("--crop", action="store_true",
                   help="dynamic cropping: after a full-frame detection, run on a window around the animal "
                        "(faster), back to the full frame when it is lost")
    p.add_argument("--crop-margin", type=int, default=None, metavar="PX",
                   help="pixels kept around the detected keypoints (default 20; implies --crop)")
    p.add_argument("--crop-threshold", type=probability, default=None, metavar="P",
                   help="score a keypoint needs to count as detected (default: the model's pcutoff; implies --crop)")
    p.add_argument("--crop-size", type=_size, default=None, metavar="WxH",
                   help="a fixed crop window instead of one sized from the first detection (warmed up before "
                        "capture; implies --crop)")
    p.add_argument("--duration", type=_positive_float, default=None, metavar="SECONDS", help="stop after this long")
    p.add_argument("--frames", type=positive, default=None, metavar="N", help="stop after N captured frames")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--threads", type=positive, default=None,
                   help="CPU threads for inference (default: the physical cores)")
    p.add_argument("--spin", action="store_true",
                   help="inference threads spin between frames instead of sleeping: a little less latency, but "
                        "they keep a core busy that camera and acquisition software may need (default: sleep)")
    p.add_argument("--no-body-check", action="store_true", help=BODY_CHECK_HELP)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    p.set_defaults(handler=_cmd_live)

