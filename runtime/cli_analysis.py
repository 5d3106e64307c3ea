"""`posezoo analyze`, `evaluate`, `label-video` and `plot`: the commands users run most.

Handlers import their modules only when run, so `posezoo --help` stays fast; training code is
imported only by `evaluate` (projects and training runs), never by the runtime's modules.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

from .cli import CommandError

_DEVICE_HELP = "auto, cpu, cuda, cuda:N or tensorrt (default auto: a GPU when onnxruntime has one)"
_MODEL_HELP = "an exported .onnx file or zoo:NAME[@VERSION]"


# -- analyze --------------------------------------------------------------------------------------
def _cmd_analyze(args: argparse.Namespace) -> int:
    from .video import FrameLossWarning, analyze_videos, expand_videos

    if args.nwb:
        from .nwb import require_nwb

        require_nwb()
    videos = expand_videos(args.videos)
    model = load_model(args.model, args)
    print(f"model {model.name} on {model.device}; {len(videos)} video(s)")
    failed = 0
    for video in videos:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FrameLossWarning)
            warnings.simplefilter("always", UserWarning)
            (outcome,) = analyze_videos(model, [video], args.output_dir, batch_size=args.batch_size, csv=args.csv,
                                        nwb=args.nwb, overwrite=args.overwrite, resume=not args.no_resume,
                                        progress=not args.quiet, static=not args.no_static)
        for w in caught:
            print(f"warning: {w.message}")
        if outcome.status == "skipped":
            print(f"skipped {video}: {outcome.path} exists (use --overwrite to analyse it again)")
        elif outcome.status == "failed":
            failed += 1
            print(f"FAILED  {video}: {outcome.error}")
        else:
            meta = outcome.meta or {}
            fps = (meta.get("timing") or {}).get("frames_per_second")
            resumed = f", resumed at frame {meta['resumed_from_frame']}" if meta.get("resumed_from_frame") else ""
            print(f"done    {video} -> {outcome.path}  ({meta.get('frames_written', '?')} frames, "
                  f"{fps if fps is not None else '?'} frames/s{resumed})")
    if failed:
        print(f"{failed} of {len(videos)} video(s) failed")
        return 1
    return 0


# -- evaluate -------------------------------------------------------------------------------------
def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.yaml").is_file() and (path / "snapshots").is_dir()


def _cmd_evaluate(args: argparse.Namespace) -> int:
    target = Path(args.model)
    if args.project is None:
        if not _is_run_dir(target):
            raise CommandError(f"{target}: give MODEL and PROJECT, or one training run directory (a folder with "
                               "config.yaml and snapshots/)")
        return _evaluate_run(target, args)
    from .evaluate import evaluate_with_predictions, format_metrics
    from .metrics import to_jsonable

    try:
        from posezoo.training.project import Split, load_project, make_split
    except ImportError as exc:  # the training package ships with posezoo; a broken install names itself
        raise CommandError(f"cannot read DeepLabCut projects: {exc}") from None
    project = load_project(args.project)
    model = load_model(args.model, args)
    missing = [k for k in model.keypoints if k not in project.bodyparts]
    if missing:
        raise CommandError(f"{args.project}: the project has no bodyparts {missing} of model {model.name} "
                           f"(project: {project.bodyparts})")
    if args.split_file:
        split = Split.load(args.split_file)
        source = str(args.split_file)
    else:
        split = make_split(len(project), train_fraction=project.training_fraction, seed=0)
        source = f"TrainingFraction {project.training_fraction:g}, seed 0"
    bad = [i for i in split.train + split.test if not 0 <= i < len(project)]
    if bad:
        raise CommandError(f"{source}: split indices {bad[:5]} are outside the project's {len(project)} images")
    indices = {"test": split.test, "train": split.train, "all": list(range(len(project)))}[args.split]
    if not indices:
        raise CommandError(f"the {args.split} split is empty ({source})")
    order = [project.bodyparts.index(k) for k in model.keypoints]
    gt = project.keypoints[indices][:, order]
    pcutoff = args.pcutoff if args.pcutoff is not None else project.pcutoff
    metrics, pred = evaluate_with_predictions(model, (project.load_image(i) for i in indices), gt, color="rgb",
                                              pcutoff=pcutoff, batch_size=args.batch_size)
    print(format_metrics(metrics, model.keypoints,
                         title=f"{model.name} on {args.project}: {args.split} split, {len(indices)} images"
                               + ("" if args.split == "all" else f" ({source})")))
    if args.json:
        from .files import atomic_output

        doc = {"model": model.name, "model_path": str(model.path), "project": str(args.project),
               "split": args.split, "split_source": source, "images": [project.images[i] for i in indices],
               "metrics": to_jsonable(metrics)}
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.json}")
    if args.save_frames:
        _save_frames(Path(args.save_frames), project, indices, gt, pred, pcutoff)
    return 0


def _save_frames(folder: Path, project: Any, indices: Sequence[int], gt: Any, pred: Any, pcutoff: float) -> None:
    import cv2

    from .draw import draw_comparison
    from .files import atomic_output

    folder.mkdir(parents=True, exist_ok=True)
    for row, i in enumerate(indices):
        frame = cv2.cvtColor(project.load_image(i), cv2.COLOR_RGB2BGR)
        draw_comparison(frame, gt[row], pred[row], pcutoff=pcutoff)
        name = project.images[i].replace("/", "_").rsplit(".", 1)[0] + ".png"
        with atomic_output(folder / name) as tmp:
            ok, data = cv2.imencode(".png", frame)
            if not ok:
                raise RuntimeError(f"{folder / name}: PNG encoding failed")
            tmp.write_bytes(data.tobytes())
    print(f"wrote {len(indices)} frames to {folder} (+ label, dot prediction >= pcutoff, x below)")


def _evaluate_run(run_dir: Path, args: argparse.Namespace) -> int:
    from .evaluate import format_metrics
    from .spec import Spec

    try:
        from posezoo.training.api import evaluate
    except ImportError as exc:
        raise CommandError(f"evaluating a training run needs its backend: {exc}; "
                           'pip install "posezoo[torch]" or "posezoo[tf]"') from None
    result = evaluate(run_dir)
    spec_file = run_dir / "spec.json"
    keypoints = Spec.from_json(spec_file.read_text(), str(spec_file)).keypoints if spec_file.is_file() else []
    splits = ["test", "train"] if args.split == "all" else [args.split]
    for split in splits:
        metrics = result.get(split) or {}
        if metrics:
            names = keypoints or [f"#{k}" for k in range(len(metrics.get("per_keypoint_rmse") or []))]
            print(format_metrics(metrics, names, title=f"{run_dir} ({result.get('snapshot', 'best')} snapshot): "
                                                       f"{split} split"))
    if args.json:
        from .metrics import to_jsonable
        from .files import atomic_output

        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(to_jsonable(result), indent=2))
        print(f"wrote {args.json}")
    return 0


# -- label-video and plot -------------------------------------------------------------------------
def _config_defaults(config: Path | None) -> tuple[list[list[str]], float | None]:
    """Skeleton and pcutoff from a DeepLabCut config.yaml (both optional there)."""
    if config is None:
        return [], None
    import yaml

    try:
        cfg = yaml.safe_load(Path(config).read_text()) or {}
    except FileNotFoundError:
        raise CommandError(f"config not found: {config}") from None
    except yaml.YAMLError as exc:
        raise CommandError(f"{config}: not valid YAML ({exc})") from None
    skeleton = cfg.get("skeleton") or []
    if not isinstance(skeleton, list) or not all(isinstance(e, list) and len(e) == 2 for e in skeleton):
        raise CommandError(f"{config}: 'skeleton' must be a list of [bodypart, bodypart] pairs")
    pcutoff = cfg.get("pcutoff")
    return [[str(a), str(b)] for a, b in skeleton], float(pcutoff) if pcutoff is not None else None


def _is_table(path: str) -> bool:
    return Path(path).suffix.lower() in (".h5", ".hdf5", ".csv")


def _cmd_label_video(args: argparse.Namespace) -> int:
    from .draw import label_video

    skeleton, pcutoff = _config_defaults(args.config)
    if _is_table(args.source):
        results = Path(args.source)
    else:  # a model: analyse first (kept and reused, as DeepLabCut does), then draw
        from .video import analyze_video

        model = load_model(args.source, args)
        results = analyze_video(model, args.video, args.output_dir, batch_size=args.batch_size,
                                progress=not args.quiet)
        skeleton = skeleton or model.spec.skeleton
        pcutoff = pcutoff if pcutoff is not None else model.spec.pcutoff
    if args.skeleton:
        skeleton = [list(edge) for edge in args.skeleton]
    pcutoff = args.pcutoff if args.pcutoff is not None else (pcutoff if pcutoff is not None else 0.6)
    out = label_video(results, args.video, args.output, pcutoff=pcutoff, skeleton=skeleton, codec=args.codec,
                      progress=not args.quiet)
    print(f"wrote {out}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from .plots import plot_results

    _, pcutoff = _config_defaults(args.config)
    pcutoff = args.pcutoff if args.pcutoff is not None else (pcutoff if pcutoff is not None else 0.6)
    for path in plot_results(args.results, args.output_dir, pcutoff=pcutoff):
        print(f"wrote {path}")
    return 0


# -- parsers --------------------------------------------------------------------------------------
def _add_runtime_options(p: argparse.ArgumentParser, batch: int = 8) -> None:
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    p.add_argument("--threads", type=_positive, default=None,
                   help="CPU threads for inference (default: the physical cores)")
    p.add_argument("--batch-size", type=_positive, default=batch, help=f"frames per inference call (default {batch})")
    p.add_argument("--no-spin", action="store_true",
                   help="inference threads sleep instead of spinning between batches, leaving the CPU to "
                        "acquisition software beside the analysis (measured: 3-7%% fewer frames/s)")
    p.add_argument("--optimization", choices=("none", "basic", "extended", "all"), default="all",
                   help="onnxruntime graph optimisation level (default all; lower levels measured 1.5-1.7x "
                        "slower, for debugging only)")
    p.add_argument("--no-arena", action="store_true",
                   help="no onnxruntime CPU memory arena: less memory held (ResNet-50: 25%% less), 5-12%% slower")


def load_model(ref: str, args: argparse.Namespace) -> Any:
    """The PoseModel named on the command line, with the runtime options of `_add_runtime_options`."""
    from .model import PoseModel

    return PoseModel.load(ref, device=args.device, threads=args.threads, spin=not args.no_spin,
                          optimization=args.optimization, arena=not args.no_arena)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def add_analysis_commands(sub: Any) -> None:
    p = sub.add_parser(
        "analyze", help="analyse videos: keypoints for every frame (DeepLabCut-layout .h5)",
        description="Run a model on every frame of each video and write <video><scorer>.h5 (DeepLabCut's "
                    "layout and naming; scorer DLC_posezoo_<model name>) plus <same name>_meta.json. Frames are "
                    "decoded in the background while the previous batch runs; results stream to disk, so memory "
                    "stays flat for any video length. A frame that cannot be decoded gets a NaN row (row i is "
                    "always frame i) and is reported. Interrupted? Run the same command again: it resumes from "
                    "the .partial file. Existing results are skipped unless --overwrite. Exit code 1 when any "
                    "video failed (the others are still analysed).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  posezoo analyze model.onnx session1.mp4 session2.mp4 --csv\n"
               "  posezoo analyze zoo:mouse-topview videos/ --output-dir results --device cuda")
    p.add_argument("model", help=_MODEL_HELP)
    p.add_argument("videos", nargs="+", help="video files, or folders of videos")
    p.add_argument("--output-dir", type=Path, default=None, help="where results go (default: beside each video)")
    _add_runtime_options(p)
    p.add_argument("--csv", action="store_true", help="also write the .csv table")
    p.add_argument("--nwb", action="store_true", help='also write NWB (ndx-pose); needs pip install "posezoo[nwb]"')
    p.add_argument("--overwrite", action="store_true", help="analyse again even when results exist")
    p.add_argument("--no-resume", action="store_true", help="discard a .partial file instead of continuing it")
    p.add_argument("--no-static", action="store_true",
                   help="run every batch through the general dynamic-shape session instead of one fixed to the "
                        "video's frame size and batch size")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(handler=_cmd_analyze)

    p = sub.add_parser(
        "evaluate", help="accuracy of a model on a project's labeled frames (RMSE, mAP, mAR)",
        description="Run MODEL on the labeled frames of a DeepLabCut PROJECT and print RMSE (mean pixel error, "
                    "DeepLabCut's definition), RMSE over keypoints with score >= pcutoff, OKS mAP/mAR and a "
                    "per-keypoint table. The split is read from --split-file (a training run's split.json), "
                    "else drawn like DeepLabCut: the config's TrainingFraction with seed 0. With a single "
                    "training run directory instead, its best snapshot is evaluated by the training backend.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  posezoo evaluate model.onnx ~/dlc/openfield --split test --save-frames eval_frames\n"
               "  posezoo evaluate model.onnx ~/dlc/openfield --split-file runs/of/split.json --json m.json\n"
               "  posezoo evaluate runs/of")
    p.add_argument("model", help=_MODEL_HELP + ", or a training run directory (then leave out PROJECT)")
    p.add_argument("project", nargs="?", default=None, help="DeepLabCut project folder or its config.yaml")
    p.add_argument("--split", choices=("test", "train", "all"), default="test", help="frames to use (default test)")
    p.add_argument("--split-file", type=Path, default=None, help="split.json with 'train' and 'test' index lists")
    p.add_argument("--pcutoff", type=_probability, default=None, help="score cutoff (default: the project's)")
    p.add_argument("--json", type=Path, default=None, help="also write the metrics to this JSON file")
    p.add_argument("--save-frames", type=Path, default=None,
                   help="write each frame with labels (+) and predictions (dot, x under pcutoff) to this folder")
    _add_runtime_options(p)
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser(
        "label-video", help="draw keypoints and skeleton onto a video",
        description="Draw keypoints (those with likelihood >= pcutoff) and the skeleton onto VIDEO, into a new "
                    "video (default <results name>_labeled.mp4). SOURCE is a results table (.h5/.csv from "
                    "`posezoo analyze` or DeepLabCut) or a model, which analyses the video first (results are "
                    "kept). The skeleton comes from the model's spec, a DeepLabCut --config, or --skeleton.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  posezoo label-video model.onnx session1.mp4\n"
               "  posezoo label-video session1DLC_resnet50_x.h5 session1.mp4 --config ~/dlc/x/config.yaml")
    p.add_argument("source", help="results .h5/.csv, or a model (.onnx / zoo:NAME)")
    p.add_argument("video", help="the video the results belong to")
    p.add_argument("--output", "-o", type=Path, default=None, help="output video (.mp4 or .avi)")
    p.add_argument("--output-dir", type=Path, default=None, help="where a model's results go (default: beside the video)")
    p.add_argument("--pcutoff", type=_probability, default=None,
                   help="hide keypoints under this likelihood (default: model spec, config, else 0.6)")
    p.add_argument("--skeleton", nargs=2, action="append", metavar=("BODYPART", "BODYPART"),
                   help="a skeleton edge to draw; repeat for more (replaces the model's / config's)")
    p.add_argument("--config", type=Path, default=None, help="DeepLabCut config.yaml for skeleton and pcutoff")
    p.add_argument("--codec", default="mp4v", help="four-character video codec (default mp4v)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    _add_runtime_options(p)
    p.set_defaults(handler=_cmd_label_video)

    p = sub.add_parser(
        "plot", help="plot trajectories and likelihoods of a results table (PNG)",
        description="Write trajectory.png, plot-likelihood.png, plot.png (x, y over time) and hist.png "
                    "(frame-to-frame displacement) for a results table, as DeepLabCut's plot_trajectories does. "
                    "Points under pcutoff are left out except in the likelihood plot.")
    p.add_argument("results", type=Path, help="results .h5/.csv")
    p.add_argument("--output-dir", type=Path, default=None,
                   help="folder for the PNGs (default plot-poses/<video>/ beside the results)")
    p.add_argument("--pcutoff", type=_probability, default=None, help="likelihood cutoff (default: config, else 0.6)")
    p.add_argument("--config", type=Path, default=None, help="DeepLabCut config.yaml to take pcutoff from")
    p.set_defaults(handler=_cmd_plot)
