#!/usr/bin/env python
"""onnxruntime (through PoseModel) against PyTorch eager: same trained model, same frames, CPU.

Both paths take the same decoded frames and return keypoints in frame pixels (geometry, network,
decoding): PyTorch through the training code's own inference path, onnxruntime through the
exported file. Runs alternate (torch, onnx, torch, onnx, ...) so machine noise hits both alike;
the median of each is reported. Target: the ONNX path at least 1.5x faster.

    python benchmarks/runtime_vs_framework.py --run RUN_DIR [--video VIDEO] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from frames import read_frames

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "data" / "openfield" / "videos" / "m3v1mp4.mp4"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a torch training run directory")
    parser.add_argument("--video", type=Path, default=VIDEO, help="frames come from this video (BGR)")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    from posezoo.export import export
    from posezoo.runtime import PoseModel
    from posezoo.training.loop import load_predictor
    from posezoo.training.predict import predict_frames
    from posezoo.training.run import load_run

    torch.set_num_threads(args.threads)
    run = load_run(args.run)
    if run.backend != "torch":
        raise SystemExit("this benchmark compares against PyTorch eager: give a torch run")
    spec, (_, forward) = run.spec, load_predictor(run)
    frames = read_frames(args.video, args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        path = export(run.path, Path(tmp) / "model.onnx", progress=lambda _m: None).path
        model = PoseModel.load(path, device="cpu", threads=args.threads)

        def torch_path() -> np.ndarray:
            with torch.inference_mode():
                return predict_frames(forward, frames, spec, color="bgr", batch_size=args.batch_size).coords

        def onnx_path() -> np.ndarray:
            return np.concatenate([model.predict(frames[i:i + args.batch_size]).coords
                                   for i in range(0, len(frames), args.batch_size)])

        diff = np.abs(torch_path()[..., :2] - onnx_path()[..., :2]).max()  # also the warm-up
        times: dict[str, list[float]] = {"pytorch eager": [], "onnxruntime": []}
        for _ in range(args.repeats):
            for name, fn in (("pytorch eager", torch_path), ("onnxruntime", onnx_path)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)

    h, w = frames[0].shape[:2]
    print(f"model {spec.name} ({run.cfg.model.name}), {len(frames)} frames {w}x{h}, batch {args.batch_size}, "
          f"{args.threads} threads; max keypoint difference {diff:.4f} px")
    fps = {name: len(frames) / statistics.median(t) for name, t in times.items()}
    for name, value in fps.items():
        print(f"{name:>14}: {value:8.1f} frames/s  (median of {args.repeats})")
    print(f"ratio onnxruntime / pytorch: {fps['onnxruntime'] / fps['pytorch eager']:.2f}x (target >= 1.5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
