"""The `posezoo` command line.

Light commands run on the runtime alone; training and export commands import their backend only
inside the handler, with a message naming the extra to install when it is missing.
"""
from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


class CommandError(Exception):
    """A user-facing failure: printed without a traceback, exit code 2."""


def version() -> str:
    try:
        return metadata.version("posezoo")
    except metadata.PackageNotFoundError:
        return "unknown"


def require_extra(module: str, extra: str) -> None:
    """Fail with the install command when an optional backend is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise CommandError(f"this command needs {module}, which is not installed: "
                           f'pip install "posezoo[{extra}]"')


# -- inspect ----------------------------------------------------------------------------------------
def _cmd_inspect(args: argparse.Namespace) -> int:
    from .model import PoseModel

    model = PoseModel.load(args.model, device="cpu")
    spec = model.spec
    if args.json:
        print(spec.to_json(indent=2))
        return 0
    print(describe_model(model))
    return 0


def describe_model(model: Any) -> str:
    """A readable summary of a model's spec and graph, for `posezoo inspect`."""
    spec = model.spec
    inp, pre, dec, prov = spec.input, spec.preprocess, spec.decode, spec.provenance
    size = "x".join(map(str, inp.size[::-1])) if inp.size else f"dynamic (padded to a multiple of {inp.size_multiple})"
    resize = {"none": "none", "scale": f"scale x{pre.scale:g}", "fit": "letterbox into the fixed size"}[pre.resize]
    lines = [
        f"model        {spec.name}   ({model.path}, {Path(model.path).stat().st_size / 1e6:.2f} MB)",
        f"spec         schema {spec.schema_version}",
        f"keypoints    {len(spec.keypoints)}: {', '.join(spec.keypoints)}",
        f"skeleton     {', '.join('-'.join(p) for p in spec.skeleton) or '(none)'}",
        f"pcutoff      {spec.pcutoff:g}",
        f"input        {inp.name}: {inp.dtype} {inp.layout} {inp.color}, size {size}, "
        f"dynamic axes: {', '.join(inp.dynamic_axes) or 'none'}",
        f"preprocess   crop {pre.crop or 'none'}; resize {resize} ({pre.interpolation}); pad value {pre.pad_value}",
        "outputs      " + "; ".join(f"{o.name} {o.shape}: {o.meaning}" for o in spec.outputs.values()),
        f"decode       {dec.method}, stride {dec.stride}, offset {dec.offset:g}, locref scale {dec.locref_scale:g}",
    ]
    for key in ("backend", "framework_versions", "model", "dataset", "train_config_sha256", "weights_sha256",
                "precision", "created"):
        if key in prov:
            lines.append(f"{key:<12} {_short(prov[key])}")
    for key in ("metrics", "parity", "variant_accuracy"):
        if key in prov:
            lines.append(f"{key:<12} {_short(prov[key])}")
    graph_in = ", ".join(f"{i.name} {i.type} {i.shape}" for i in model.session.get_inputs())
    graph_out = ", ".join(f"{o.name} {o.type} {o.shape}" for o in model.session.get_outputs())
    lines += [f"graph in     {graph_in}", f"graph out    {graph_out}"]
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# -- predict ----------------------------------------------------------------------------------------
def _cmd_predict(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from .model import PoseModel
    from .results import write_image_predictions

    model = PoseModel.load(args.model, device=args.device)
    frames, names = [], []
    for image in args.images:
        frame = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if frame is None:
            raise CommandError(f"cannot read image {image} (missing, or not an image OpenCV can decode)")
        frames.append(frame)
        names.append(str(image))
    coords = np.concatenate([model.predict(frames[i:i + args.batch_size])
                             for i in range(0, len(frames), args.batch_size)])
    write_image_predictions(args.output, names, coords, model.keypoints, scorer=model.name)
    print(f"wrote {len(names)} predictions to {args.output}")
    return 0


# -- parser -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posezoo",
        description="Animal pose estimation: train on a DeepLabCut project, export one .onnx file, "
                    "analyse video anywhere. Run `posezoo COMMAND --help` for each command.")
    parser.add_argument("--version", action="version", version=f"posezoo {version()}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("inspect", help="show a model's embedded spec",
                       description="Print the spec embedded in an exported model: keypoints, input "
                                   "geometry, outputs, provenance and the export's parity result.")
    p.add_argument("model", help="an .onnx file or zoo:NAME[@VERSION]")
    p.add_argument("--json", action="store_true", help="print the raw spec as JSON")
    p.set_defaults(handler=_cmd_inspect)

    p = sub.add_parser("predict", help="predict keypoints on images",
                       description="Run a model on image files and write a DeepLabCut-layout table "
                                   "(rows = images, columns scorer/bodyparts/coords x, y, likelihood).")
    p.add_argument("model", help="an .onnx file or zoo:NAME[@VERSION]")
    p.add_argument("images", nargs="+", type=Path, help="image files (png, jpg, ...)")
    p.add_argument("--output", "-o", type=Path, required=True, help="output table: .csv or .h5")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or tensorrt (default auto)")
    p.add_argument("--batch-size", type=int, default=8, help="images per inference call (default 8)")
    p.set_defaults(handler=_cmd_predict)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list[Callable[[Any], None]]:
    """Command groups that live beside their code; each adds its sub-parsers."""
    from posezoo.zoo.cli import add_zoo_commands

    from .cli_analysis import add_analysis_commands
    from .cli_demo import add_demo_command
    from .cli_train import add_training_commands

    return [add_analysis_commands, add_training_commands, add_demo_command, add_zoo_commands]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("posezoo: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # user-facing errors: message, no traceback
        if args.debug or not _is_user_error(exc):
            raise
        print(f"posezoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _is_user_error(exc: Exception) -> bool:
    return isinstance(exc, (CommandError, FileNotFoundError, ValueError, PermissionError, RuntimeError,
                            json.JSONDecodeError, OSError))


if __name__ == "__main__":
    raise SystemExit(main())
