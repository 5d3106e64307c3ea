#!/usr/bin/env python
"""CPU speed of exported models against what this CPU can do, in one run.

For the default model and the ResNet-50 model, fp32 and int8 exports: end-to-end `analyze`
frames/s on the openfield video (640x480), GFLOP per frame, achieved GFLOP/s, and the machine's
own fp32 matmul GFLOP/s measured in the same run (the reference for "close to the limit").

    python benchmarks/cpu_speed.py --default-run RUN --resnet-run RUN [--threads 2] [--frames 600]
    python benchmarks/cpu_speed.py --candidate RUN --candidate RUN ...   # the default-model table

Each run directory is exported to fp32 and int8 (int8 calibrated on the run's project frames;
its test error change against fp32 is printed). `--frames` analyses only the first N frames
(re-encoded to a temporary mp4v file, whose decoding is cheaper than the original h264: use it
only for slow models, where decoding is a negligible share) so that those finish in reasonable time.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

THREADS = "2"
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, THREADS)  # before numpy loads its BLAS

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "data" / "openfield" / "videos" / "m3v1mp4.mp4"


def matmul_gflops(threads: int, n: int = 4096, repeats: int = 5) -> dict[str, float]:
    """The best fp32 GEMM rate of numpy's BLAS and torch on `threads` threads."""
    out = {}
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    out["numpy sgemm"] = 2 * n ** 3 / best / 1e9
    import torch

    torch.set_num_threads(threads)
    t = torch.from_numpy(a)
    t @ t
    best = min(_timed(lambda: t @ t) for _ in range(repeats))
    out["torch sgemm"] = 2 * n ** 3 / best / 1e9
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def trim_video(video: Path, frames: int, out: Path) -> Path:
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30
    writer = None
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, frame.shape[1::-1])
        writer.write(frame)
    cap.release()
    if writer is None:
        raise SystemExit(f"cannot read {video}")
    writer.release()
    return out


def model_gflop(run, height: int, width: int) -> float:
    """GFLOP per frame of the run's network at the input tensor size a frame becomes."""
    from posezoo.runtime import geometry
    from posezoo.training.torch.nets import count_flops, create_model

    spec = run.spec
    plan = geometry.plan(height, width, spec.input, spec.preprocess)
    net = create_model(run.cfg.model.name, len(spec.keypoints), **run.cfg.model.kwargs)
    return count_flops(net, plan.tensor)


def describe(run) -> str:
    """The network and its arguments, e.g. ``resnet_slim width=0.75 @0.5x``."""
    args = " ".join(f"{k}={v}" for k, v in sorted(run.cfg.model.kwargs.items()))
    return " ".join(p for p in (run.cfg.model.name, args, f"@{run.cfg.input.scale:g}x") if p)


def train_minutes(run) -> float:
    """Training time of the run, from the last row of its log."""
    with open(run.path / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    return float(rows[-1]["elapsed_s"]) / 60 if rows else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--default-run", type=Path, help="run of the default (lite) model")
    parser.add_argument("--resnet-run", type=Path, help="run of the ResNet-50 model")
    parser.add_argument("--candidate", type=Path, action="append", default=[],
                        help="a training run measured like the default model (repeatable)")
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--frames", type=int, default=100_000,
                        help="frames analysed for the default model (default: the whole original video)")
    parser.add_argument("--resnet-frames", type=int, default=120,
                        help="frames for the slow ResNet-50 (default 120, from an mp4v re-encoded clip)")
    parser.add_argument("--threads", type=int, default=int(THREADS))
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    runs = [("default", args.default_run, args.frames), ("resnet50", args.resnet_run, args.resnet_frames)]
    runs += [(f"cand{i}", path, args.frames) for i, path in enumerate(args.candidate, 1)]
    runs = [r for r in runs if r[1] is not None]
    if not runs:
        parser.error("give --default-run, --resnet-run or --candidate")

    from posezoo.export import export
    from posezoo.runtime import PoseModel
    from posezoo.runtime.video import analyze_video, load_meta
    from posezoo.training.run import load_run

    ref = matmul_gflops(args.threads)
    peak = max(ref.values())
    print("machine reference, fp32 matmul 4096x4096 on {} threads: {}".format(
        args.threads, ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in ref.items())))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        cap = cv2.VideoCapture(str(args.video))
        height, width = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        cap.release()
        for label, run_dir, frames in runs:
            run = load_run(run_dir)
            total = int(cv2.VideoCapture(str(args.video)).get(cv2.CAP_PROP_FRAME_COUNT))
            clip = args.video if frames >= total else trim_video(args.video, frames, tmpdir / f"clip{frames}.mp4")
            gflop = model_gflop(run, height, width)
            result = export(run.path, tmpdir / f"{label}.onnx", int8=True, force=True, progress=lambda _m: None)
            for precision, path in (("fp32", result.path), ("int8", result.variants["int8"])):
                model = PoseModel.load(path, device="cpu", threads=args.threads)
                h5 = analyze_video(model, clip, tmpdir / f"{label}-{precision}", batch_size=args.batch_size,
                                   progress=False, overwrite=True)
                meta = load_meta(h5)
                fps = meta["timing"]["frames_per_second"]
                prov = model.spec.provenance
                test = prov["metrics"]["export_test"]["rmse"]
                rows.append((label, describe(run), precision, fps, gflop, fps * gflop, test,
                             prov.get("variant_accuracy", {}).get("rmse_change_px"), train_minutes(run)))
    print(f"\nend-to-end analyze on {args.video.name} ({width}x{height}), {args.threads} threads, batch {args.batch_size}")
    print(f"{'model':<9} {'net':<28} {'prec':<5} {'frames/s':>9} {'GFLOP/frame':>11} {'GFLOP/s':>8} "
          f"{'of matmul':>9} {'test rmse':>9} {'vs fp32':>8} {'train min':>9}")
    for label, net, precision, fps, gflop, achieved, test, change, minutes in rows:
        change_s = f"{change:+.2f}" if change is not None else "-"
        print(f"{label:<9} {net:<28} {precision:<5} {fps:>9.1f} {gflop:>11.2f} {achieved:>8.1f} "
              f"{achieved / peak:>8.0%} {test:>9.2f} {change_s:>8} {minutes:>9.1f}")
    print("(int8 GFLOP/s counts the same multiply-adds as fp32: 'of matmul' compares with the fp32 GEMM rate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
