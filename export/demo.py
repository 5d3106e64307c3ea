"""The whole pipeline on a synthetic project, nothing downloaded: what `posezoo demo` runs.

Synthetic DeepLabCut project + video -> train -> export (parity gate) -> analyze -> evaluate ->
labeled video and plots, each step timed, ending with the error against the video's known truth.
It lives in the export package because it is the one package that may use all the others.
"""
from __future__ import annotations

import shutil
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from posezoo.runtime.draw import label_video
from posezoo.runtime.evaluate import evaluate_model, format_metrics
from posezoo.runtime.io import load_poses
from posezoo.runtime.model import PoseModel
from posezoo.runtime.plots import plot_poses
from posezoo.runtime.track_metrics import tracking_scores
from posezoo.runtime.video import analyze_video
from posezoo.training.api import train
from posezoo.training.project import load_project
from posezoo.training.run import load_run
from posezoo.training.synthetic import VIDEO_NAME, load_video_truth, make_project
from posezoo.training.synthetic_multi import VIDEO_NAME as MULTI_VIDEO
from posezoo.training.synthetic_multi import load_multi_truth, make_multi_project

from .core import export

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


def run_demo(output_dir: Path, backend: str = "torch", epochs: int | None = None, animals: int = 1) -> dict[str, Any]:
    """Run every step into ``output_dir`` (an earlier demo there is replaced); returns the figures.
    ``animals`` > 1 runs the multi-animal pipeline (bottom-up model, assembly) on that many mice."""
    output_dir = output_dir.resolve()
    timings: dict[str, float] = {}
    with _step("1/6 synthetic DeepLabCut project and video", timings):
        # a re-run replaces the earlier demo, whose labeled-data (of another kind) would stay
        shutil.rmtree(output_dir / "synthetic-mouse", ignore_errors=True)
        if animals > 1:
            project_dir = make_multi_project(output_dir / "synthetic-mouse", animals=animals, overwrite=True,
                                             **DEMO_PROJECT)
            video = project_dir / "videos" / f"{MULTI_VIDEO}.mp4"
        else:
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
        exported = export(run_dir, output_dir / "model.onnx", overwrite=True, progress=lambda m: print(f"   {m}"))
        parity = exported.spec.provenance["parity"]
        print(f"   parity: max {parity['max_px_diff']:.4f} px over {parity['n_frames']} frames (tolerance "
              f"{parity['tolerance_px']} px)")
    model = PoseModel.load(exported.path)
    with _step("4/6 analyze the video", timings):
        h5 = analyze_video(model, video, output_dir / "analysis", csv=True, overwrite=True)
        print(f"   {h5}\n   {h5.with_suffix('.csv')}")
    with _step("5/6 evaluate on the project's held-out frames", timings):
        run = load_run(run_dir)
        project = load_project(project_dir)
        test = list(run.split.test)
        metrics, _ = evaluate_model(model, [project.load_image(i) for i in test], project.labels[test])
        print(format_metrics(metrics, metrics["keypoints"], title="   test split"))
    with _step("6/6 labeled video and plots", timings):
        poses = load_poses(h5)
        labeled = label_video(poses, video, output_dir / "analysis" / f"{video.stem}_labeled.mp4",
                              pcutoff=model.spec.pcutoff, skeleton=model.spec.skeleton, progress=False)
        plots = plot_poses(poses, output_dir / "analysis" / "plots", title=h5.name)
        print(f"   {labeled}\n   plots: {', '.join(p.name for p in plots)}")

    truth_poses = load_multi_truth(project_dir) if animals > 1 else load_video_truth(project_dir)
    truth = truth_poses.xy
    error = _matched_error(poses.xy, truth)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a model that found nothing: NaN, said as such
        per_kp = np.nanmean(error, axis=(0, 1))
        mean_error, median_error = np.nanmean(error), np.nanmedian(error)
    print("\n== result")
    found = f", {np.isfinite(error).any(-1).sum()} of {np.isfinite(truth).all(-1).any(-1).sum()} animals found" \
        if animals > 1 else ""
    print(f"   video error against the known truth: mean {mean_error:.2f} px, median "
          f"{median_error:.2f} px over {len(truth)} frames x {truth.shape[2]} keypoints{found}")
    print("   per keypoint: " + ", ".join(f"{k} {e:.2f}" for k, e in zip(model.keypoints, per_kp)))
    identities = tracking_scores(truth_poses, poses) if animals > 1 else None
    if identities is not None:
        print(f"   identities against the true tracks: IDF1 {identities['idf1']:.3f}, MOTA {identities['mota']:.3f}, "
              f"{identities['switches']} identity switches")
    print(f"   total {sum(timings.values()):.0f} s; outputs in {output_dir}")
    return {"video_error_px": float(mean_error), "test": metrics, "timings": timings,
            "model": str(exported.path), "results": str(h5), "tracking": identities}


def _matched_error(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(frames, animals, K) pixel error of each true animal's keypoints to the predicted animal it
    is paired with in its frame (Hungarian on mean distance: rows carry no identity before
    tracking); NaN where the animal or keypoint was not found."""
    from scipy.optimize import linear_sum_assignment

    out = np.full(truth.shape[:3], np.nan)
    for f in range(len(truth)):
        d = np.linalg.norm(truth[f, :, None] - pred[f, None], axis=-1)  # (true, predicted, K)
        both = np.isfinite(d)
        cost = np.where(both.any(-1), np.where(both, d, 0).sum(-1) / np.maximum(both.sum(-1), 1), 1e6)
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols):
            if cost[r, c] < 1e6:
                out[f, r] = d[r, c]
    return out
