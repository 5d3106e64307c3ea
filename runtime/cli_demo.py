"""`posezoo demo`: the whole pipeline on a synthetic project, nothing downloaded.

Synthetic DeepLabCut project + video -> train -> export (parity gate) -> analyze -> evaluate ->
labeled video and plots, each step timed, ending with the error against the video's known truth.
"""
from __future__ import annotations

import argparse
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .cli import CommandError, require_extra

# Sized to finish in a few minutes on 2 CPU cores.
DEMO_PROJECT = {"n_frames": 100, "video_frames": 300, "image_size": (320, 240), "seed": 0}
# A half-width `lite` at full resolution: small (about 2 MB), quick to train, accurate here.
DEMO_TRAIN = {"model": "lite", "model.width": 0.5, "epochs": 150, "batch_size": 8, "eval_every": 50,
              "scale": 1.0, "input.train_size": [160, 160], "split.train_fraction": 0.8}


@contextmanager
def _step(title: str, timings: dict[str, float]) -> Iterator[None]:
    print(f"\n== {title}", flush=True)
    t0 = time.perf_counter()
    yield
    timings[title] = time.perf_counter() - t0
    print(f"   done in {timings[title]:.1f} s", flush=True)


def run_demo(output_dir: Path, backend: str = "torch", epochs: int | None = None) -> dict[str, Any]:
    import numpy as np

    from posezoo.export import export
    from posezoo.training.api import train
    from posezoo.training.project import load_project
    from posezoo.training.synthetic import VIDEO_NAME, load_video_truth, make_project

    from .draw import label_video
    from .evaluate import evaluate_model, format_metrics
    from .model import PoseModel
    from .plots import plot_results
    from .results import read_results
    from .video import analyze_video

    output_dir = output_dir.resolve()
    timings: dict[str, float] = {}
    with _step("1/6 synthetic DeepLabCut project and video", timings):
        project_dir = make_project(output_dir / "synthetic-mouse", overwrite=True, **DEMO_PROJECT)
        video = project_dir / "videos" / f"{VIDEO_NAME}.mp4"
        print(f"   {project_dir} ({DEMO_PROJECT['n_frames']} labeled frames, {video.name}: "
              f"{DEMO_PROJECT['video_frames']} frames)")
    with _step(f"2/6 train ({backend}, {DEMO_TRAIN['model']})", timings):
        opts = dict(DEMO_TRAIN, epochs=epochs or DEMO_TRAIN["epochs"])
        shutil.rmtree(output_dir / "run", ignore_errors=True)  # a re-run replaces the earlier demo
        run_dir = train(project_dir, backend=backend, output=output_dir / "run", **opts)
        print(f"   run directory: {run_dir}")
    with _step("3/6 export to ONNX with the parity gate", timings):
        exported = export(run_dir, output_dir / "model.onnx", progress=lambda m: print(f"   {m}"))
        parity = exported.spec.provenance["parity"]
        print(f"   parity: max {parity['max_px_diff']:.4f} px over {parity['n_frames']} frames (tolerance "
              f"{parity['tolerance_px']} px)")
    model = PoseModel.load(exported.path)
    with _step("4/6 analyze the video", timings):
        h5 = analyze_video(model, video, output_dir / "analysis", csv=True, overwrite=True)
        print(f"   {h5}\n   {h5.with_suffix('.csv')}")
    with _step("5/6 evaluate on the project's held-out frames", timings):
        from posezoo.training.run import load_run

        run = load_run(run_dir)
        project = load_project(project_dir)
        test = list(run.split.test)
        metrics = evaluate_model(model, [project.load_image(i) for i in test], project.keypoints[test])
        print(format_metrics(metrics, model.keypoints, title="   test split"))
    with _step("6/6 labeled video and plots", timings):
        labeled = label_video(h5, video, output_dir / "analysis" / f"{VIDEO_NAME}_labeled.mp4",
                              pcutoff=model.spec.pcutoff, skeleton=model.spec.skeleton, progress=False)
        plots = plot_results(h5, output_dir / "analysis" / "plots")
        print(f"   {labeled}\n   plots: {', '.join(p.name for p in plots)}")

    truth = load_video_truth(project_dir)
    pred = read_results(h5).coords[..., :2]
    error = np.linalg.norm(pred - truth, axis=-1)
    per_kp = np.nanmean(error, axis=0)
    print("\n== result")
    print(f"   video error against the known truth: mean {np.nanmean(error):.2f} px, median "
          f"{np.nanmedian(error):.2f} px over {len(truth)} frames x {truth.shape[1]} keypoints")
    print("   per keypoint: " + ", ".join(f"{k} {e:.2f}" for k, e in zip(model.keypoints, per_kp)))
    print(f"   total {sum(timings.values()):.0f} s; outputs in {output_dir}")
    return {"video_error_px": float(np.nanmean(error)), "test": metrics, "timings": timings,
            "model": str(exported.path), "results": str(h5)}


def _cmd_demo(args: argparse.Namespace) -> int:
    require_extra({"torch": "torch", "tf": "tensorflow"}[args.backend], args.backend)
    require_extra("onnx", args.backend)
    if args.output_dir.exists() and any(args.output_dir.iterdir()) and not (args.output_dir / "synthetic-mouse").exists():
        raise CommandError(f"{args.output_dir} exists and is not a posezoo demo folder; choose another --output-dir")
    run_demo(args.output_dir, args.backend, args.epochs)
    return 0


def add_demo_command(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="run the whole pipeline on a synthetic project (no download)",
        description="Generate a synthetic DeepLabCut project and video, train a model, export it with the "
                    "parity gate, analyse the video, evaluate, and draw a labeled video and plots. Prints "
                    "each step with its timing and ends with the error against the video's known truth. "
                    "Takes a few minutes on 2 CPU cores.")
    p.add_argument("--output-dir", type=Path, default=Path("posezoo-demo"), help="where everything goes "
                   "(default ./posezoo-demo; an earlier demo there is replaced)")
    p.add_argument("--backend", choices=["torch", "tf"], default="torch", help="training framework (default torch)")
    p.add_argument("--epochs", type=int, help=f"training epochs (default {DEMO_TRAIN['epochs']})")
    p.set_defaults(handler=_cmd_demo)
