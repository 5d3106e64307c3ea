"""`posezoo analyze`, `evaluate`, `label-video` and `plot`: the commands users run most."""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from . import scale
from .common import MODEL_HELP, CommandError, add_runtime_options, load_model, positive, probability


# -- analyze --------------------------------------------------------------------------------------
def _cmd_analyze(args: argparse.Namespace) -> int:
    from posezoo.runtime.decode import expand_videos
    from posezoo.runtime.track import TrackerSettings
    from posezoo.runtime.video import FrameLossWarning, analyze_videos

    if scale.requested(args):  # chunks, shards or a cluster engine
        return scale.run(args)
    if args.nwb:
        from posezoo.runtime.io.nwb import require_nwb

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
                                        progress=not args.quiet,
                                        tracking=None if args.no_tracking else TrackerSettings())
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


def _cmd_track(args: argparse.Namespace) -> int:
    from posezoo.runtime.track import TrackerSettings
    from posezoo.runtime.video import track_results

    model = load_model(args.model, args)
    if model.spec.multi is None:
        raise CommandError(f"{model.path}: a single-animal model; tracking names several animals per frame")
    if args.colour_weight < 0:
        raise CommandError(f"--colour-weight must be >= 0, got {args.colour_weight}")
    settings = TrackerSettings(max_gap=args.max_gap, min_length=args.min_length, colour_weight=args.colour_weight)
    for detections in args.detections:
        if not detections.name.endswith("_detections.h5"):
            raise CommandError(f"{detections}: expected a <video><scorer>_detections.h5 table written by analyze")
        final = detections.with_name(detections.name[: -len("_detections.h5")] + ".h5")
        outcome = track_results(model, detections, final, settings=settings, csv=args.csv, nwb=args.nwb)
        speed = (outcome.meta or {}).get("tracking", {}).get("frames_per_second")
        print(f"tracked {detections} -> {final}  ({speed} frames/s)")
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
    from posezoo.runtime.draw import write_comparison_frames
    from posezoo.runtime.evaluate import evaluate_model, format_metrics
    from posezoo.runtime.files import write_json_atomic
    from posezoo.runtime.metrics import to_jsonable
    from posezoo.training.project import evaluation_split, load_project

    model = load_model(args.model, args)
    project = load_project(args.project)
    names = model.keypoints + model.spec.unique_keypoints
    missing = [k for k in names if k not in project.keypoints + project.labels.unique_keypoints]
    if missing:
        raise CommandError(f"{args.project}: the project has no bodyparts {missing} of model {model.name} "
                           f"(project: {project.keypoints})")
    split, source = evaluation_split(project, args.split_file)
    indices = {"test": split.test, "train": split.train, "all": list(range(len(project)))}[args.split]
    if not indices:
        raise CommandError(f"the {args.split} split is empty ({source})")
    labels = project.labels[indices].select(keypoints=names)
    pcutoff = args.pcutoff if args.pcutoff is not None else project.pcutoff
    metrics, pred = evaluate_model(model, (project.load_image(i) for i in indices), labels, pcutoff=pcutoff,
                                   batch_size=args.batch_size)
    print(format_metrics(metrics, metrics["keypoints"],
                         title=f"{model.name} on {args.project}: {args.split} split, {len(indices)} images"
                               + ("" if args.split == "all" else f" ({source})")))
    if args.json:
        write_json_atomic(args.json, {"model": model.name, "model_path": str(model.path), "project": str(args.project),
                                      "split": args.split, "split_source": source, "images": labels.images,
                                      "metrics": to_jsonable(metrics)})
        print(f"wrote {args.json}")
    if args.save_frames:
        written = write_comparison_frames(args.save_frames, (project.load_image(i) for i in indices), labels, pred,
                                          pcutoff=pcutoff)
        print(f"wrote {len(written)} frames to {args.save_frames} (+ label, dot prediction >= pcutoff, x below)")
    return 0


def _evaluate_run(run_dir: Path, args: argparse.Namespace) -> int:
    from posezoo.runtime.evaluate import format_metrics
    from posezoo.runtime.files import write_json_atomic
    from posezoo.runtime.metrics import to_jsonable

    try:
        from posezoo.training.api import evaluate
    except ImportError as exc:
        raise CommandError(f"evaluating a training run needs its backend: {exc}; "
                           'pip install "posezoo[torch]" or "posezoo[tf]"') from None
    result = evaluate(run_dir)
    splits = ["test", "train"] if args.split == "all" else [args.split]
    for split in splits:
        metrics = result.get(split) or {}
        if metrics:
            print(format_metrics(metrics, metrics["keypoints"],
                                 title=f"{run_dir} ({result.get('snapshot', 'best')} snapshot): {split} split"))
    if args.json:
        write_json_atomic(args.json, to_jsonable(result))
        print(f"wrote {args.json}")
    return 0


# -- label-video and plot -------------------------------------------------------------------------
def _config_defaults(config: Path | None) -> tuple[list[tuple[str, str]] | None, float | None]:
    """Skeleton and pcutoff from a DeepLabCut config.yaml, when one is given."""
    if config is None:
        return None, None
    from posezoo.runtime.io.dlc import read_dlc_config

    cfg = read_dlc_config(config)
    return cfg.skeleton, cfg.pcutoff


def _is_table(path: str) -> bool:
    return Path(path).suffix.lower() in (".h5", ".hdf5", ".csv", ".nwb")


def _cmd_label_video(args: argparse.Namespace) -> int:
    from posezoo.runtime.draw import label_video, labeled_video_path
    from posezoo.runtime.poses import DEFAULT_PCUTOFF

    skeleton, pcutoff = _config_defaults(args.config)
    if _is_table(args.source):
        results = Path(args.source)
    else:  # a model: analyse first (kept and reused, as DeepLabCut does), then draw
        from posezoo.runtime.video import analyze_video

        model = load_model(args.source, args)
        results = analyze_video(model, args.video, args.output_dir, batch_size=args.batch_size,
                                progress=not args.quiet)
        skeleton = skeleton if skeleton is not None else [(a, b) for a, b in model.spec.skeleton]
        pcutoff = pcutoff if pcutoff is not None else model.spec.pcutoff
    if args.skeleton:
        skeleton = [(a, b) for a, b in args.skeleton]
    poses = _results_with_extras(results)
    pcutoff = next(p for p in (args.pcutoff, pcutoff, DEFAULT_PCUTOFF) if p is not None)
    out = label_video(poses, args.video, args.output or labeled_video_path(results), pcutoff=pcutoff,
                      skeleton=poses.skeleton if skeleton is None else skeleton, codec=args.codec, trail=args.trail,
                      progress=not args.quiet)
    print(f"wrote {out}")
    return 0


def _results_with_extras(results: Path) -> Any:
    """A results table with what posezoo keeps beside it: the skeleton (from the analysis
    sidecar) and tracked unique keypoints (from <name>_unique.h5)."""
    from posezoo.runtime.io import load_poses
    from posezoo.runtime.video import load_meta, unique_path

    poses = load_poses(results)
    try:
        skeleton = load_meta(results).get("model", {}).get("skeleton") or []
    except (OSError, ValueError):
        skeleton = []
    unique = unique_path(results)
    if unique.is_file() and not poses.unique_keypoints:
        extra = load_poses(unique)
        if len(extra) == len(poses):
            poses.unique, poses.unique_keypoints = extra.coords[:, 0], list(extra.keypoints)
    names = set(poses.keypoints) | set(poses.unique_keypoints)
    poses.skeleton = [(a, b) for a, b in skeleton if a in names and b in names]
    return poses


def _cmd_plot(args: argparse.Namespace) -> int:
    from posezoo.runtime.plots import default_plot_dir, plot_poses
    from posezoo.runtime.poses import DEFAULT_PCUTOFF

    _, pcutoff = _config_defaults(args.config)
    pcutoff = next(p for p in (args.pcutoff, pcutoff, DEFAULT_PCUTOFF) if p is not None)
    poses = _results_with_extras(args.results)
    out = args.output_dir or default_plot_dir(args.results, poses.scorer)
    for path in plot_poses(poses, out, pcutoff=pcutoff, title=Path(args.results).name):
        print(f"wrote {path}")
    return 0


# -- parsers --------------------------------------------------------------------------------------
def add_commands(sub: Any) -> None:
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
               "  posezoo analyze zoo:mouse-topview videos/ --output-dir results --device cuda\n"
               "  posezoo analyze model.onnx videos/ --output-dir results --shard $SLURM_ARRAY_TASK_ID/64\n"
               "  posezoo analyze model.onnx videos/ --output-dir results --engine ray --address auto "
               "--chunk-frames 20000")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("videos", nargs="+", help="video files, or folders of videos")
    p.add_argument("--output-dir", type=Path, default=None, help="where results go (default: beside each video)")
    add_runtime_options(p)
    p.add_argument("--csv", action="store_true", help="also write the .csv table")
    p.add_argument("--nwb", action="store_true", help='also write NWB (ndx-pose); needs pip install "posezoo[nwb]"')
    p.add_argument("--overwrite", action="store_true", help="analyse again even when results exist")
    p.add_argument("--no-resume", action="store_true", help="discard a .partial file instead of continuing it")
    p.add_argument("--no-tracking", action="store_true",
                   help="multi-animal models: keep each frame's animals in the order they were found instead of "
                        "tracking them into the project's individuals (<video><scorer>_detections.h5 always holds "
                        "them; `posezoo track` tracks it later)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    scale.add_options(p)
    p.set_defaults(handler=_cmd_analyze)

    p = sub.add_parser(
        "track", help="track the animals of multi-animal detections again (other settings, after a merge)",
        description="Name each frame's animals (a multi-animal analysis's <video><scorer>_detections.h5) by the "
                    "model's individuals, all video long: tracklets linked frame to frame by Kalman-predicted "
                    "keypoints and the Hungarian algorithm (cut where animals merge or part), then stitched to the "
                    "individuals by motion, body size, colour (measured at the keypoints while analysing, kept in "
                    "_detections.h5.appearance) and identity-head votes (when the model has one). Writes "
                    "<video><scorer>.h5 (and _unique.h5 for unique keypoints); `posezoo analyze` does this itself.")
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("detections", nargs="+", type=Path, help="_detections.h5 tables")
    p.add_argument("--max-gap", type=positive, default=15,
                   help="frames a tracklet may go unseen before it ends (default 15)")
    p.add_argument("--min-length", type=positive, default=10,
                   help="leave out tracklets spanning fewer frames that met another animal (default 10): brief "
                        "fragments where animals tangle, where a wrong name costs more than a gap; above 1 also the "
                        "first frame of a tracklet that began beside another animal; 1 keeps every detected animal")
    p.add_argument("--colour-weight", type=float, default=1.0,
                   help="how much a difference in colour counts when naming tracklets (default 1; 0 ignores "
                        "colour, e.g. where animals are marked differently on some days only)")
    p.add_argument("--csv", action="store_true", help="also write the .csv table")
    p.add_argument("--nwb", action="store_true", help='also write NWB (ndx-pose); needs pip install "posezoo[nwb]"')
    add_runtime_options(p)
    p.set_defaults(handler=_cmd_track)

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
    p.add_argument("model", help=MODEL_HELP + ", or a training run directory (then leave out PROJECT)")
    p.add_argument("project", nargs="?", default=None, help="DeepLabCut project folder or its config.yaml")
    p.add_argument("--split", choices=("test", "train", "all"), default="test", help="frames to use (default test)")
    p.add_argument("--split-file", type=Path, default=None, help="split.json with 'train' and 'test' index lists")
    p.add_argument("--pcutoff", type=probability, default=None, help="score cutoff (default: the project's)")
    p.add_argument("--json", type=Path, default=None, help="also write the metrics to this JSON file")
    p.add_argument("--save-frames", type=Path, default=None,
                   help="write each frame with labels (+) and predictions (dot, x under pcutoff) to this folder")
    add_runtime_options(p)
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
    p.add_argument("--pcutoff", type=probability, default=None,
                   help="hide keypoints under this likelihood (default: model spec, config, else DeepLabCut's 0.6)")
    p.add_argument("--skeleton", nargs=2, action="append", metavar=("BODYPART", "BODYPART"),
                   help="a skeleton edge to draw; repeat for more (replaces the model's / config's)")
    p.add_argument("--config", type=Path, default=None, help="DeepLabCut config.yaml for skeleton and pcutoff")
    p.add_argument("--trail", type=int, default=0, metavar="N",
                   help="draw each animal's path over its last N frames (default 0: none)")
    p.add_argument("--codec", default="mp4v", help="four-character video codec (default mp4v)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    add_runtime_options(p)
    p.set_defaults(handler=_cmd_label_video)

    p = sub.add_parser(
        "plot", help="plot trajectories and likelihoods of a results table (PNG)",
        description="Write trajectory.png, plot-likelihood.png, plot.png (x, y over time) and hist.png "
                    "(frame-to-frame displacement) for a results table, as DeepLabCut's plot_trajectories does. "
                    "Points under pcutoff are left out except in the likelihood plot.")
    p.add_argument("results", type=Path, help="results .h5/.csv")
    p.add_argument("--output-dir", type=Path, default=None,
                   help="folder for the PNGs (default plot-poses/<video>/ beside the results)")
    p.add_argument("--pcutoff", type=probability, default=None, help="likelihood cutoff (default: config, else DeepLabCut's 0.6)")
    p.add_argument("--config", type=Path, default=None, help="DeepLabCut config.yaml to take pcutoff from")
    p.set_defaults(handler=_cmd_plot)
