#!/usr/bin/env python
"""Which int8 layout runs fastest on this CPU, and what each costs in accuracy, in one run.

A training run is exported to fp32 once, then quantised (static, per-channel weights, calibrated
on the run's training frames) as QDQ and as QOperator, each with u8 and with s8 activations.
Every model runs the same prepared openfield frames (640x480 -> its input tensor) through a
static-shape session, fp32 first and last so drift on a shared machine shows; test RMSE is on
the run's held-out frames.

    python benchmarks/int8_formats.py --run RUN [--run RUN] [--frames 128] [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from frames import prepared_batches, read_frames

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "data" / "openfield" / "videos" / "m3v1mp4.mp4"
LAYOUTS = [("qdq", "u8"), ("qdq", "s8"), ("qoperator", "u8"), ("qoperator", "s8")]


def frames_per_second(path: Path, images: list, batch: int, threads: int, repeats: int = 3) -> float:
    from posezoo.runtime import PoseModel

    model = PoseModel.load(path, device="cpu", threads=threads)
    batches = prepared_batches(model, images, batch)
    model.infer(batches[0])
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for prepared in batches:
            model.infer(prepared)
        best = min(best, time.perf_counter() - t0)
    return len(batches) * batch / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, action="append", required=True, help="a training run (repeatable)")
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import onnx

    from posezoo.export import export
    from posezoo.export.core import held_out_metrics
    from posezoo.export.variants import calibration_frames, quantize_int8
    from posezoo.runtime.spec import embed_spec, read_spec
    from posezoo.training.run import load_run

    images = read_frames(args.video, args.frames)
    for run_dir in args.run:
        run = load_run(run_dir)
        with tempfile.TemporaryDirectory() as tmp:
            tmpdir = Path(tmp)
            fp32 = export(run.path, tmpdir / "fp32.onnx", progress=lambda _m: None).path
            spec = read_spec(fp32)
            models = [("fp32", "-", fp32)]
            for fmt, act in LAYOUTS:
                work = tmpdir / f"{fmt}-{act}"
                work.mkdir()
                quantized = quantize_int8(fp32, calibration_frames(run), work, quant_format=fmt, activations=act)
                embed_spec(quantized, spec)
                path = tmpdir / f"{fmt}-{act}.onnx"
                onnx.save(quantized, path)
                models.append((fmt, act, path))
            models.append(("fp32 (again)", "-", fp32))
            rows = [(fmt, act, frames_per_second(path, images, args.batch_size, args.threads),
                     held_out_metrics(run, path)["rmse"]) for fmt, act, path in models]
        base_fps = rows[0][2]
        base_rmse = rows[0][3]
        print(f"\n{run.cfg.model.name} {run.cfg.model.kwargs or ''} @{run.cfg.input.scale:g}x ({run.path}); "
              f"{len(images)} frames of {args.video.name}, batch {args.batch_size}, {args.threads} threads, static session")
        print(f"{'layout':<13} {'acts':<4} {'frames/s':>9} {'vs fp32':>8} {'test rmse':>9} {'change':>7}")
        for fmt, act, fps, rmse in rows:
            print(f"{fmt:<13} {act:<4} {fps:>9.1f} {fps / base_fps:>7.2f}x {rmse:>9.2f} {rmse - base_rmse:>+7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
