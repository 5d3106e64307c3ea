"""`posezoo train` and `posezoo export`: the work is in posezoo.training and posezoo.export.

Handlers import their backend only when run, so the light install's `--help` still works and a
missing backend gets a message naming the extra to install.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import CommandError, require_extra


def _parse_sets(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--set expects KEY=VALUE (e.g. train.epochs=50), got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    if args.resume and args.output is None:
        raise CommandError("--resume needs --output RUN_DIR (the run to continue)")
    if not args.resume and args.project is None:
        raise CommandError("give the DeepLabCut project directory (or its config.yaml) to train on")
    if args.backend:
        require_extra({"torch": "torch", "tf": "tensorflow"}[args.backend], args.backend)
    if args.devices > 1 and args.backend != "tf" and "WORLD_SIZE" not in os.environ:
        return _under_torchrun(args)
    from posezoo.training.api import train

    overrides = _parse_sets(args.set)
    if args.time_limit is not None:
        overrides["train.time_limit_minutes"] = args.time_limit or None  # 0: no limit
    if args.devices > 1 and args.backend == "tf":
        overrides["train.devices"] = args.devices
    t0 = time.perf_counter()
    run_dir = train(args.project, backend=args.backend, output=args.output, config=args.config,
                    resume=args.resume, progress=not args.quiet, model=args.model, init=args.init,
                    steps=args.steps, epochs=args.epochs,
                    batch_size=args.batch_size, **overrides)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun, rank 0 reports
    _print_metrics(run_dir)
    print(f"run directory: {run_dir}  ({time.perf_counter() - t0:.0f} s)")
    print(f"next: posezoo export {run_dir}")
    return 0


def _under_torchrun(args: argparse.Namespace) -> int:
    """`--devices N`: the same command again, as N processes under torchrun on this machine."""
    if args.output is None:
        raise CommandError("--devices needs --output RUN_DIR: every process must name the same run directory")
    require_extra("torch", "torch")
    argv, skip = [], False
    for item in args.argv:  # the command as given, less --devices
        if skip:
            skip = False
        elif item == "--devices":
            skip = True
        elif not item.startswith("--devices="):
            argv.append(item)
    with socket.socket() as s:  # a free port for the rendezvous, on loopback: all processes are here
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.devices),
               "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "posezoo.runtime.cli", *argv]
    print(f"starting {args.devices} training processes: {' '.join(command[2:8])} ...", flush=True)
    return subprocess.run(command).returncode


def _print_metrics(run_dir: Path) -> None:
    import json

    metrics = json.loads((Path(run_dir) / "metrics.json").read_text(encoding="utf-8"))
    for split in ("train", "test"):
        m = metrics.get(split) or {}
        if m:
            print(f"{split:>5}: rmse {_num(m['rmse'])} px  rmse_pcutoff {_num(m['rmse_pcutoff'])} px  "
                  f"mAP {_num(m['mAP'], 1)}  mAR {_num(m['mAR'], 1)}  ({m['n_images']} images)")


def _num(value: float | None, digits: int = 2) -> str:
    """A metric as JSON gives it back: null where it is undefined (no keypoint above pcutoff)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cmd_export(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("onnx") is None:
        raise CommandError('exporting needs onnx, which is not installed: pip install "posezoo[torch]" '
                           '(or "posezoo[tf]" for TensorFlow runs)')
    from posezoo.export.deeplabcut import is_deeplabcut_model

    options = {"heatmaps": args.heatmaps, "fp16": args.fp16, "int8": args.int8, "force": args.force,
               "overwrite": args.overwrite, "tolerance_px": args.tolerance}
    if is_deeplabcut_model(args.run):  # DeepLabCut 2 checkpoints also need posezoo[tf]
        from posezoo.export.deeplabcut import from_deeplabcut

        result = from_deeplabcut(args.run, args.output, snapshot=args.snapshot, **options)
    else:
        if args.snapshot not in ("best", "last"):
            raise CommandError(f"--snapshot {args.snapshot}: a posezoo run keeps 'best' and 'last'")
        from posezoo.export import export

        result = export(args.run, args.output, snapshot=args.snapshot, **options)
    print(f"exported {result.path}" + "".join(f"\n         {p}" for p in result.variants.values()))
    print(f"inspect: posezoo inspect {result.path}")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="train a model on a DeepLabCut project",
        description="Train a keypoint model on a DeepLabCut project as it is (config.yaml + "
                    "labeled-data/*/CollectedData_*.h5). The run directory gets the resolved config, "
                    "split, log.csv, snapshots (last and best) and metrics.json. The input scale, training crop and "
                    "batch are chosen from the labelled animals' size and printed at the start (README, 'Training'). "
                    "Interrupt at any time and continue with --resume.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  posezoo train ~/dlc/openfield-Pranav-2018-10-30 --output runs/of\n"
               "  posezoo train --resume --output runs/of\n"
               "  posezoo train PROJECT --config my.yaml --set input.scale=0.5 --set train.batch_size=16")
    p.add_argument("project", nargs="?", type=Path, help="DeepLabCut project directory or its config.yaml")
    p.add_argument("--backend", choices=["torch", "tf"], help="training framework (default: the config's, torch)")
    p.add_argument("--model", help="network name (e.g. lite, resnet50); see the README's table")
    p.add_argument("--steps", type=int, help="optimisation steps (default 9000: the same budget for a 16-frame and a "
                   "1,000-frame project)")
    p.add_argument("--epochs", type=int, help="passes over the training frames instead of --steps")
    p.add_argument("--init", metavar="SOURCE", help="weights to start from (fine-tuning): RUN_DIR (an earlier run "
                   "of the same model), zoo:NAME[@VERSION] (a zoo entry packed --with-weights) or imagenet (the "
                   "backbone's public ImageNet weights: resnet50, downloaded once and verified); heads of another "
                   "keypoint set start afresh")
    p.add_argument("--batch-size", type=int, help="images per step (default: from the crop size; with several processes: all of them "
                   "together)")
    p.add_argument("--time-limit", type=float, metavar="MIN", help="stop after this many minutes of training, "
                   "evaluations included; the learning-rate schedule then follows the clock (default 13.5, so the "
                   "default recipe ends within 15 minutes on a slow machine; 0 = no limit)")
    p.add_argument("--config", type=Path, help="a training config YAML (defaults are used for missing keys)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optimizer.lr=0.002 (repeatable)")
    p.add_argument("--output", "-o", type=Path, help="run directory (default: PROJECT/posezoo-runs/<time>-<model>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last snapshot")
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="train on N devices of this machine: torch starts N processes under torchrun "
                        "(DistributedDataParallel, one GPU each; gloo on CPUs), TF uses MirroredStrategy over N "
                        "GPUs in one process. --batch-size stays the global batch. Across machines, start "
                        "`torchrun ... -m posezoo.runtime.cli train ...` yourself (README, 'Clusters')")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser(
        "export", help="export a trained run to one self-describing .onnx file",
        description="Export a run to ONNX: raw uint8 frames in, decoded keypoints (N, K, 3) out, with the "
                    "spec (geometry, keypoints, provenance) embedded. A parity gate compares the framework "
                    "and onnxruntime on the project's frames and fails the export beyond the tolerance. "
                    "--fp16/--int8 write variants beside the fp32 file (model.int8.onnx), each refused if its "
                    "test error grows beyond a stated bound (fp16 0.2 px, int8 0.5 px) unless --force.")
    p.add_argument("run", type=Path, help="a run directory made by `posezoo train`, or a trained DeepLabCut model: a "
                   "DeepLabCut 3 shuffle or its train/ folder (single-animal, or multi-animal with part-affinity "
                   "fields: the animals are then assembled and tracked by `posezoo analyze`), a "
                   "deeplabcut.export_model .pt file, or a DeepLabCut 2 train/ folder")
    p.add_argument("--output", "-o", type=Path, help="the .onnx file (default: RUN/exports/model.onnx; for a "
                   "DeepLabCut model ./<Task>-dlc-<net_type>.onnx)")
    p.add_argument("--heatmaps", action="store_true", help="also expose the heatmaps as a second output")
    p.add_argument("--fp16", action="store_true", help="also write an fp16 variant (for GPUs)")
    p.add_argument("--int8", action="store_true", help="also write a static int8 variant (fast on CPUs)")
    p.add_argument("--force", action="store_true", help="write variants even if they lose accuracy beyond the bound")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model file (and its variants)")
    p.add_argument("--snapshot", default="best", help="best (default) or last; for a DeepLabCut model also an "
                   "epoch/iteration number or a negative index")
    p.add_argument("--tolerance", type=float, default=0.5, metavar="PX",
                   help="parity gate: maximum keypoint difference in pixels (default 0.5)")
    p.set_defaults(handler=_cmd_export)
