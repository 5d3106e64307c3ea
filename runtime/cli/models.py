"""`posezoo inspect` and `posezoo predict`: a model's spec, and keypoints on image files."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import CommandError, MODEL_HELP, add_runtime_options, load_model


def _cmd_inspect(args: argparse.Namespace) -> int:
    from posezoo.runtime.model import PoseModel
    from posezoo.runtime.summary import describe_model

    model = PoseModel.load(args.model, device="cpu")
    print(model.spec.to_json(indent=2) if args.json else describe_model(model))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import cv2

    from posezoo.runtime.io import save_poses
    from posezoo.runtime.poses import Poses

    if args.output.suffix.lower() not in (".csv", ".h5"):
        raise CommandError(f"{args.output}: the output table must end in .csv or .h5")
    model = load_model(args.model, args)
    frames = []
    for image in args.images:
        frame = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if frame is None:
            raise CommandError(f"cannot read image {image} (missing, or not an image OpenCV can decode)")
        frames.append(frame)
    poses = Poses.concat([model.predict(frames[i:i + args.batch_size])
                          for i in range(0, len(frames), args.batch_size)])
    poses.images = [str(image) for image in args.images]
    save_poses(poses, args.output)
    print(f"wrote {len(frames)} predictions to {args.output}")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("inspect", help="show a model's embedded spec",
                       description="Print the spec embedded in an exported model: keypoints, input "
                                   "geometry, outputs, provenance and the export's parity result.")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--json", action="store_true", help="print the raw spec as JSON")
    p.set_defaults(handler=_cmd_inspect)

    p = sub.add_parser("predict", help="predict keypoints on images",
                       description="Run a model on image files and write a DeepLabCut-layout table "
                                   "(rows = images, columns scorer/bodyparts/coords x, y, likelihood).")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("images", nargs="+", type=Path, help="image files (png, jpg, ...)")
    p.add_argument("--output", "-o", type=Path, required=True, help="output table: .csv or .h5")
    add_runtime_options(p)
    p.set_defaults(handler=_cmd_predict)
