#!/usr/bin/env python
"""Multi-animal tracking against known tracks, side by side in one run.

A synthetic 3-mouse video (`training.synthetic_multi`, the project's arena and mice, ``--frames``
long, the animals meeting, touching and crossing) is analysed by a trained multi-animal model with
tracking, in a fresh process; the tracked table is scored against the video's true tracks (IDF1,
MOTA, identity switches per 1,000 frames; `runtime.track_metrics`). The same analysis of the video
4 times over (concatenated) gives the peak memory for 4x the length. Printed: the scores, frames/s
of detection and of tracking, the share of time tracking costs, and both peak RSS figures.
Targets (issue: tracking): IDF1 >= 0.95, <= 1 switch per 1,000 frames, tracking <= 10 % of the
analysis, 4x-length memory within 10 %.

    python benchmarks/tracking_quality.py --run RUN [--frames 2400] [--seed 0] [--also 2 3] [--min-length 1]

``--run`` is a multi-animal training run (exported here if it has no export) or ``--model M.onnx``;
``--also`` scores the videos of other seeds' projects too (other arenas, cameras and mice: more
crossings to get right, with a model that never saw them).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from video_throughput import make_videos

_CHILD = r"""
import json, sys, time
from pathlib import Path
from posezoo.runtime import PoseModel
from posezoo.runtime.video import analyze_video, detections_path, load_meta
from posezoo.runtime.track import TrackerSettings
model_path, video, out, min_length = sys.argv[1:5]
model = PoseModel.load(model_path, device="cpu", threads=2)
t0 = time.perf_counter()
final = analyze_video(model, video, out, progress=False, overwrite=True,
                      tracking=TrackerSettings(min_length=int(min_length)))
wall = time.perf_counter() - t0
meta, det = load_meta(final), load_meta(detections_path(final))
status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
print(json.dumps({"final": str(final), "wall_s": wall, "frames": det["frames_written"],
                  "detect_s": det["timing"]["seconds"], "track_s": meta["tracking"]["seconds"],
                  "vm_hwm_mb": int(status["VmHWM"].split()[0]) / 1024}))
"""


def analyse(model: Path, video: Path, out: Path, min_length: int) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(model), str(video), str(out), str(min_length)],
                          capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"analysis of {video} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a multi-animal training run")
    parser.add_argument("--model", type=Path, help="or an exported multi-animal model")
    parser.add_argument("--frames", type=int, default=2400, help="video length (default 2400)")
    parser.add_argument("--seed", type=int, default=0, help="the synthetic project's seed (the run's project)")
    parser.add_argument("--animals", type=int, default=3)
    parser.add_argument("--min-length", type=int, default=10,
                        help="tracking's min_length (posezoo track --min-length; default 10, as there)")
    parser.add_argument("--also", type=int, nargs="*", default=[], metavar="SEED",
                        help="score these seeds' videos too (tracking quality only)")
    args = parser.parse_args()
    if (args.run is None) == (args.model is None):
        parser.error("give --run or --model")

    from posezoo.runtime.io import load_poses
    from posezoo.runtime.track_metrics import tracking_scores
    from posezoo.training.synthetic_multi import VIDEO_NAME, load_multi_truth, make_multi_project

    model = args.model
    if model is None:
        model = args.run / "exports" / "model.onnx"
        if not model.is_file():
            from posezoo.export import export

            export(args.run, model, progress=lambda _m: None)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="posezoo-tracking-") as tmp_name:
        tmp = Path(tmp_name)
        project = make_multi_project(tmp / "session", animals=args.animals, n_frames=2, video_frames=args.frames,
                                     seed=args.seed)
        video = project / "videos" / f"{VIDEO_NAME}.mp4"
        truth = load_multi_truth(project)
        _, four, _ = make_videos(video, tmp, None)
        one = analyse(model, video, tmp / "out1", args.min_length)
        scores = tracking_scores(truth, load_poses(one["final"]))
        long = analyse(model, four, tmp / "out4", args.min_length)
        others = {}
        for seed in args.also:
            other = make_multi_project(tmp / f"session{seed}", animals=args.animals, n_frames=2,
                                       video_frames=args.frames, seed=seed)
            done = analyse(model, other / "videos" / f"{VIDEO_NAME}.mp4", tmp / f"out-{seed}", args.min_length)
            others[seed] = tracking_scores(load_multi_truth(other), load_poses(done["final"]))
    load1 = os.getloadavg()
    frames = one["frames"]
    share = one["track_s"] / (one["detect_s"] + one["track_s"])
    print(f"model {model}; video {args.frames} frames, {args.animals} mice (seed {args.seed}); CPU, 2 threads; "
          f"min_length {args.min_length}; load average {load0[0]:.1f} -> {load1[0]:.1f}")
    print(f"IDF1                  {scores['idf1']:8.3f}      (target >= 0.95)")
    print(f"MOTA                  {scores['mota']:8.3f}")
    print(f"identity switches     {scores['switches']:8d}      ({scores['switches_per_1000_frames']:.2f} per 1,000 "
          "frames; target <= 1)")
    print(f"misses / false pos.   {scores['misses']} / {scores['false_positives']} of {scores['true_animals']} "
          "true animals")
    print(f"detection             {frames / one['detect_s']:8.1f} frames/s  ({one['detect_s']:.1f} s)")
    print(f"tracking              {frames / one['track_s']:8.1f} frames/s  ({one['track_s']:.2f} s)")
    print(f"tracking's share      {100 * share:7.1f} %     of the analysis (target <= 10 %)")
    print(f"peak RSS 1x / 4x      {one['vm_hwm_mb']:.1f} / {long['vm_hwm_mb']:.1f} MB  "
          f"(ratio {long['vm_hwm_mb'] / one['vm_hwm_mb']:.3f}; target <= 1.10)")
    for seed, other in others.items():
        print(f"seed {seed} video            IDF1 {other['idf1']:.3f}, MOTA {other['mota']:.3f}, {other['switches']} switches "
              f"({other['switches_per_1000_frames']:.2f} per 1,000 frames), {other['misses']} misses")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
