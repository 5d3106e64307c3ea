"""The whole pipeline on a synthetic project, nothing downloaded: what `posezoo demo` runs.

Synthetic DeepLabCut project + video -> train -> export (parity gate) -> analyze -> evaluate ->
labeled video and plots, each step timed, ending with the error against the video's known truth.
It lives in the export package because it is the one package that may use all the others.
"""
from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from posezoo.runtime.draw import label_video
from posezoo.runtime.evaluate import evaluate_model, format_metrics
from posezoo.runtime.io import load_poses
from posezoo.runtime.model import PoseModel
from posezoo.runtime.plots import plot_poses
from posezoo.runtime.video import analyze_video
from posezoo.training.api import train
from posezoo.training.project import load_project
from posezoo.training.run import load_run
from posezoo.training.synthetic import VIDEO_NAME, load_video_truth, make_project

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


def run_demo(output_dir: Path, backend: str = "torch", epochs: int | None = None) -> dict[str, Any]:
    """Run every step into ``output_dir`` (an earlier demo there is replaced); returns the figures."""
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
        print(format_metrics(metrics, model.keypoints, title="   test split"))
    with _step("6/6 labeled video and plots", timings):
        poses = load_poses(h5)
        labeled = label_video(poses, video, output_dir / "analysis" / f"{VIDEO_NAME}_labeled.mp4",
                              pcutoff=model.spec.pcutoff, skeleton=model.spec.skeleton, progress=False)
        plots = plot_poses(poses, output_dir / "analysis" / "plots", title=h5.name)
        print(f"   {labeled}\n   plots: {', '.join(p.name for p in plots)}")

    truth = load_video_truth(project_dir).xy
    error = np.linalg.norm(poses.xy - truth, axis=-1)[:, 0]
    per_kp = np.nanmean(error, axis=0)
    print("\n== result")
    print(f"   video error against the known truth: mean {np.nanmean(error):.2f} px, median "
          f"{np.nanmedian(error):.2f} px over {len(truth)} frames x {truth.shape[2]} keypoints")
    print("   per keypoint: " + ", ".join(f"{k} {e:.2f}" for k, e in zip(model.keypoints, per_kp)))
    print(f"   total {sum(timings.values()):.0f} s; outputs in {output_dir}")
    return {"video_error_px": float(np.nanmean(error)), "test": metrics, "timings": timings,
            "model": str(exported.path), "results": str(h5)}
