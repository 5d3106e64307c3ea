#!/usr/bin/env python
"""What each way of spreading `posezoo analyze` costs on this machine, measured side by side.

Every mode analyses the same tiny videos (so the analysis itself is a small, equal part of each
unit) with K1 and K2 units, in ``--rounds`` rounds that take the modes in turn (so a change in
the machine's load touches them all); the fit T(K) = start-up + K x per-unit through the median
times gives each mode's fixed cost and its cost per unit, beside a plain in-process
`analyze_videos` of the same videos:

- plain: `analyze_videos` in this process (the model already loaded);
- local: `posezoo analyze` as a fresh process (the cost of one job-array task or shard: Python,
  imports, model load);
- shard: N such processes with `--shard I/N` at once;
- ray: a Ray cluster started on 127.0.0.1 (its start-up printed on its own), then the Ray
  engine's driver connecting to it and running one task per unit;
- slurm-local: the SLURM engine through submitit's local executor (the array's tasks are local
  processes; on a real cluster the queue wait comes on top and is not measurable here).

And the cost of reaching a chunk's first frame by decoding (seeking is inexact): frames/s of
decode-and-drop against frames/s of analysis, on a 640x480 video.

    python benchmarks/scale_overhead.py [--model M.onnx] [--k1 4] [--k2 16] [--rounds 3] [--shards 2]

The model defaults to the built-in zoo model (a real network). Prints the load average too: on a
shared 2-core machine every figure moves with it.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
BUILTIN = REPO / "zoo" / "models" / "synthetic-mouse" / "1.0.0" / "synthetic-mouse.onnx"


def write_video(path: Path, frames: int, size: tuple[int, int], seed: int) -> None:
    h, w = size
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    for i in range(frames):
        frame = np.full((h, w, 3), 60, np.uint8)
        x, y = (int(v) for v in rng.integers(20, [w - 20, h - 20]))
        cv2.circle(frame, (x, y), 12, (200, 200, 200), -1)
        writer.write(frame)
    writer.release()


def videos(folder: Path, k: int, frames: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(k):
        path = folder / f"v{i:03d}.mp4"
        if not path.exists():
            write_video(path, frames, (240, 320), i)
        out.append(path)
    return out


def timed(fn) -> float:  # noqa: ANN001
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def fit(t1: float, t2: float, k1: int, k2: int) -> tuple[float, float]:
    per = (t2 - t1) / (k2 - k1)
    return t1 - k1 * per, per


def cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "posezoo.runtime.cli", *map(str, args)]


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def start_ray(temp: Path) -> tuple[subprocess.Popen, str, dict[str, str], float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RAY_ADDRESS="", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    ray = str(Path(sys.executable).with_name("ray"))
    began = time.perf_counter()
    head = subprocess.Popen([ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--temp-dir", str(temp), "--include-dashboard", "false", "--disable-usage-stats"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    probe = [sys.executable, "-c", f"import ray; ray.init(address='{address}', log_to_driver=False)"]
    while subprocess.run(probe, env=env, capture_output=True).returncode:
        if head.poll() is not None:
            raise SystemExit("the Ray head node did not start")
        time.sleep(0.5)
    return head, address, env, time.perf_counter() - began


def stop(head: subprocess.Popen) -> None:
    head.send_signal(signal.SIGTERM)
    try:
        head.wait(60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def decode_cost(work: Path, model: Path) -> tuple[float, float]:
    """Frames/s of decode-and-drop (a chunk's way to its first frame) and of analysis."""
    from posezoo.runtime.decode import indexed_frames, open_video
    from posezoo.runtime.model import PoseModel
    from posezoo.runtime.video import analyze_video

    video = work / "vga.mp4"
    write_video(video, 600, (480, 640), 99)
    cap, info = open_video(video)
    began = time.perf_counter()
    for _ in indexed_frames(cap, info, start=info.frame_count):  # every frame grabbed, none converted
        pass
    drop = info.frame_count / (time.perf_counter() - began)
    cap.release()
    loaded = PoseModel.load(model, device="cpu")
    seconds = timed(lambda: analyze_video(loaded, video, work / "vga", progress=False, overwrite=True))
    return drop, info.frame_count / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=BUILTIN)
    parser.add_argument("--k1", type=int, default=4)
    parser.add_argument("--k2", type=int, default=16)
    parser.add_argument("--frames", type=int, default=8, help="frames per tiny video (default 8)")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from posezoo.runtime.model import PoseModel
    from posezoo.runtime.scale import Job, make_plan
    from posezoo.runtime.video import analyze_videos

    work = Path(tempfile.mkdtemp(prefix="pzscale"))
    load = os.getloadavg()
    rows: list[tuple[str, float, float]] = []
    head: subprocess.Popen | None = None
    ray_start: float | None = None
    try:
        sets = {k: videos(work / f"videos{k}", k, args.frames) for k in (args.k1, args.k2)}
        model = PoseModel.load(args.model, device="cpu", threads=1)

        modes: dict[str, Callable[[int], float]] = {}

        def plain(k: int) -> float:
            return timed(lambda: analyze_videos(model, sets[k], work / f"plain{k}", progress=False, overwrite=True))

        plain(args.k1)  # warm the session's shapes
        modes["plain (in process)"] = plain

        def local(k: int) -> float:
            return timed(lambda: run(cli("analyze", args.model, sets[k][0].parent, "--output-dir", work / f"local{k}",
                                         "--threads", 1, "-q", "--overwrite")))

        modes["local: one fresh process"] = local

        def shard(k: int) -> float:
            def go() -> None:
                procs = [subprocess.Popen(cli("analyze", args.model, sets[k][0].parent, "--output-dir",
                                              work / f"shard{k}", "--threads", 1, "-q", "--overwrite", "--shard",
                                              f"{i}/{args.shards}"), stdout=subprocess.DEVNULL)
                         for i in range(args.shards)]
                if any(p.wait() for p in procs):
                    raise SystemExit("a shard failed")
            return timed(go)

        modes[f"shard: {args.shards} processes"] = shard
        if importlib.util.find_spec("ray") is not None:
            temp = Path(tempfile.mkdtemp(prefix="pzray", dir="/tmp"))
            head, address, env, ray_start = start_ray(temp)

            def ray(k: int) -> float:
                return timed(lambda: run(cli("analyze", args.model, sets[k][0].parent, "--output-dir",
                                             work / f"ray{k}", "-q", "--overwrite", "--engine", "ray",
                                             "--address", address), env))

            ray(args.k1)  # the first driver also starts the cluster's worker processes
            modes["ray: driver + 1 task/unit"] = ray
        if importlib.util.find_spec("submitit") is not None:
            from posezoo.runtime.scale.slurm_engine import SlurmOptions, run_slurm

            def slurm(k: int) -> float:
                job = Job(str(args.model), str(work / f"slurm{k}"), overwrite=True)
                plan = make_plan(sets[k])
                options = SlurmOptions(folder=work / f"jobs{k}", cluster="local", cpus_per_task=1, max_tasks=2,
                                       poll_s=0.2)
                return timed(lambda: run_slurm(job, plan, options, progress=False))

            modes["slurm-local: array of 2 tasks"] = slurm
        times: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for name, measure in modes.items():
                for k in (args.k1, args.k2):
                    times.setdefault((name, k), []).append(measure(k))
        for name in modes:
            rows.append((name, *fit(float(np.median(times[name, args.k1])), float(np.median(times[name, args.k2])),
                                    args.k1, args.k2)))
        if head is not None:
            stop(head)
            shutil.rmtree(temp, ignore_errors=True)
            head = None
        drop, analyse = decode_cost(work, args.model)
    finally:
        if head is not None:
            stop(head)
        shutil.rmtree(work, ignore_errors=True)

    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f"; {os.cpu_count()} CPUs")
    print(f"units: tiny videos of {args.frames} frames (320x240), K = {args.k1} and {args.k2}, median of {args.rounds} "
          f"rounds; model {args.model.name}")
    print(f"{'mode':34} {'start-up s':>11} {'per unit s':>11} {'per unit vs plain':>18}")
    base = rows[0][2]
    for name, start, per in rows:
        print(f"{name:34} {start:11.2f} {per:11.3f} {per / base:17.1f}x")
    if ray_start is not None:
        print(f"ray cluster start (ray start --head, once per cluster): {ray_start:.1f} s")
    print(f"reaching a chunk's first frame: {drop:.0f} frames/s decoded and dropped vs {analyse:.0f} frames/s "
          f"analysed (640x480 mp4v): a chunk starting at frame s pays s / {drop:.0f} s before its first frame")


if __name__ == "__main__":
    main()
