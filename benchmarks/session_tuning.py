#!/usr/bin/env python
"""The effect of each onnxruntime session setting, measured side by side in one run.

Every configuration runs in its own fresh process (so peak memory is its own), one after the
other, and the whole sweep is repeated (``--repeats``; the median is printed) so that background
load on a shared machine hits all settings alike. Columns:

- bare frames/s: batches of prepared openfield frames (640x480 -> the model's input tensor)
  fed back to back to the session, after a warm-up;
- CPU cores busy at 30 Hz: single frames paced at a camera's 30 frames/s, as live analysis beside
  acquisition software runs; the process's CPU seconds per wall second (what it takes from the
  acquisition software). Spinning threads keep cores busy between frames;
- load s: session creation; peak RSS MB: the process's VmHWM;
- end to end frames/s (``--e2e``): ``analyze_video`` on the whole video, with its CPU cores used.

    python benchmarks/session_tuning.py --model default.onnx [--model resnet50.onnx] [--e2e]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "data" / "openfield" / "videos" / "m3v1mp4.mp4"

#: name -> (PoseModel.load keyword arguments, static-shape path)
SETTINGS: dict[str, tuple[dict, bool]] = {
    "default (2 threads, spin, all, arena, static)": ({}, True),
    "threads 1": ({"threads": 1}, True),
    "spin off": ({"spin": False}, True),
    "optimization none": ({"optimization": "none"}, True),
    "optimization basic": ({"optimization": "basic"}, True),
    "optimization extended": ({"optimization": "extended"}, True),
    "arena off": ({"arena": False}, True),
    "dynamic shapes (no static/IO binding)": ({}, False),
}
E2E = ("default (2 threads, spin, all, arena, static)", "spin off", "dynamic shapes (no static/IO binding)")


def worker(model_path: str, kwargs: dict, static: bool, video: str, frames: int, batch: int, e2e: bool) -> dict:
    from frames import prepared_batches, read_frames

    from posezoo.runtime import PoseModel

    kwargs = {"threads": 2, "static": static, **kwargs}
    t0 = time.perf_counter()
    model = PoseModel.load(model_path, device="cpu", **kwargs)
    load_s = time.perf_counter() - t0
    result: dict = {"load_s": load_s}
    if e2e:
        from posezoo.runtime.video import analyze_video, load_meta

        with tempfile.TemporaryDirectory() as tmp:
            c0, w0 = _cpu(), time.perf_counter()
            h5 = analyze_video(model, video, tmp, batch_size=batch, progress=False, overwrite=True)
            result["e2e_fps"] = load_meta(h5)["timing"]["frames_per_second"]
            result["e2e_cores"] = (_cpu() - c0) / (time.perf_counter() - w0)
        result["rss_mb"] = _peak_rss_mb()
    else:
        images = read_frames(Path(video), frames)
        batches = prepared_batches(model, images, batch)
        for prepared in batches[:2]:
            model.infer(prepared)
        t0 = time.perf_counter()
        for prepared in batches:
            model.infer(prepared)
        result["bare_fps"] = len(batches) * batch / (time.perf_counter() - t0)
        result["rss_mb"] = _peak_rss_mb()  # before the single-frame session below adds its own
        # paced single frames at 30 Hz: CPU taken from everything else on the machine
        one = prepared_batches(model, images[:1], 1)[0]
        model.infer(one)
        period, n = 1 / 30, 60
        c0, w0 = _cpu(), time.perf_counter()
        for i in range(n):
            model.infer(one)
            time.sleep(max(0.0, w0 + (i + 1) * period - time.perf_counter()))
        result["paced_cores"] = (_cpu() - c0) / (time.perf_counter() - w0)
    return result


def _peak_rss_mb() -> float:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(status["VmHWM"].split()[0]) / 1024


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="an exported .onnx (repeatable)")
    parser.add_argument("--video", default=str(VIDEO))
    parser.add_argument("--frames", type=int, default=256, help="prepared frames for the bare measurement")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--e2e", action="store_true", help="also end-to-end analyze of the whole video")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(worker(**job)))
        return 0
    if not Path(args.video).is_file():
        print(f"video not found: {args.video}", file=sys.stderr)
        return 2
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    for model_path in args.model:
        jobs = [(name, False) for name in SETTINGS] + ([(name, True) for name in E2E] if args.e2e else [])
        results: dict[tuple[str, bool], list[dict]] = {job: [] for job in jobs}
        for _ in range(args.repeats):
            for name, e2e in jobs:
                kwargs, static = SETTINGS[name]
                job = dict(model_path=model_path, kwargs=kwargs, static=static, video=args.video,
                           frames=args.frames, batch=args.batch_size, e2e=e2e)
                out = subprocess.run([sys.executable, __file__, "--model", model_path, "--worker", json.dumps(job)],
                                     capture_output=True, text=True, env=env, check=False)
                if out.returncode:
                    print(out.stderr, file=sys.stderr)
                    return 1
                results[(name, e2e)].append(json.loads(out.stdout.strip().splitlines()[-1]))
        med = {job: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for job, runs in results.items()}
        base = med[(next(iter(SETTINGS)), False)]
        print(f"\n{Path(model_path).name}: bare = {args.frames} prepared frames, batch {args.batch_size}; "
              f"median of {args.repeats} fresh processes per setting")
        print(f"{'setting':<42} {'bare fps':>9} {'vs default':>10} {'cores busy @30Hz':>16} {'load s':>7} "
              f"{'peak RSS MB':>11}")
        for name in SETTINGS:
            m = med[(name, False)]
            print(f"{name:<42} {m['bare_fps']:>9.1f} {m['bare_fps'] / base['bare_fps']:>9.2f}x "
                  f"{m['paced_cores']:>16.2f} {m['load_s']:>7.2f} {m['rss_mb']:>11.1f}")
        if args.e2e:
            e2e_base = med[(E2E[0], True)]
            print(f"\nend-to-end analyze of {Path(args.video).name}")
            print(f"{'setting':<42} {'frames/s':>9} {'vs default':>10} {'CPU cores used':>14} {'peak RSS MB':>11}")
            for name in E2E:
                m = med[(name, True)]
                print(f"{name:<42} {m['e2e_fps']:>9.1f} {m['e2e_fps'] / e2e_base['e2e_fps']:>9.2f}x "
                      f"{m['e2e_cores']:>14.2f} {m['rss_mb']:>11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
