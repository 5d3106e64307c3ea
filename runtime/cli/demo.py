"""`posezoo demo`: the whole pipeline on a synthetic project (`posezoo.export.demo`)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import CommandError, require_extra


def _cmd_demo(args: argparse.Namespace) -> int:
    require_extra({"torch": "torch", "tf": "tensorflow"}[args.backend], args.backend)
    require_extra("onnx", args.backend)
    if args.output_dir.exists() and any(args.output_dir.iterdir()) and not (args.output_dir / "synthetic-mouse").exists():
        raise CommandError(f"{args.output_dir} exists and is not a posezoo demo folder; choose another --output-dir")
    from posezoo.export.demo import run_demo

    if args.animals < 1:
        raise CommandError(f"--animals must be 1 or more, got {args.animals}")
    run_demo(args.output_dir, args.backend, args.epochs, animals=args.animals)
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="run the whole pipeline on a synthetic project (no download)",
        description="Generate a synthetic DeepLabCut project and video, train a model, export it with the "
                    "parity gate, analyse the video, evaluate, and draw a labeled video and plots. Prints "
                    "each step with its timing and ends with the error against the video's known truth. "
                    "Takes a few minutes on 2 CPU cores.")
    p.add_argument("--output-dir", type=Path, default=Path("posezoo-demo"), help="where everything goes "
                   "(default ./posezoo-demo; an earlier demo there is replaced)")
    p.add_argument("--backend", choices=["torch", "tf"], default="torch", help="training framework (default torch)")
    p.add_argument("--epochs", type=int, help="training epochs (default 150)")
    p.add_argument("--animals", type=int, default=1,
                   help="mice per frame (default 1); 2 or more runs the multi-animal pipeline: a bottom-up "
                        "model with part-affinity fields, assembly in the runtime")
    p.set_defaults(handler=_cmd_demo)
