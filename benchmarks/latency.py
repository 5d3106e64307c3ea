#!/usr/bin/env python
"""Single-frame latency for real-time use: ``model(frame)`` against the bare session, one run.

Prints the cold first call, the warm-up cost, and latency percentiles of
  - bare session: ``session.run`` on an already prepared tensor (the floor),
  - ``model(frame)``: the low-latency path (cached plan, reused input buffer),
  - ``model.predict([frame])``: the general batch path, for comparison.

    python benchmarks/latency.py --model model.onnx --video ../shared/data/openfield/videos/m3v1mp4.mp4
    python benchmarks/latency.py --model model.onnx --size 480x640 --threads 2
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from frames import read_frames


def frames_from(video: Path | None, size: tuple[int, int], n: int) -> list[np.ndarray]:
    if video is None:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(min(n, 32))]
    return read_frames(video, min(n, 64))


def percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return f"p50 {p50:7.2f}  p90 {p90:7.2f}  p99 {p99:7.2f}  max {ms.max():7.2f}  mean {ms.mean():7.2f} ms"


def timed(fn, items: list, n: int) -> list[float]:
    out = []
    for i in range(n):
        item = items[i % len(items)]
        start = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--video", type=Path, default=None, help="take frames from this video")
    parser.add_argument("--size", default="480x640", help="HxW of random frames when no --video (default 480x640)")
    parser.add_argument("--n", type=int, default=300, help="timed calls per path (default 300)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default physical cores)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-spin", action="store_true", help="threads sleep between calls (frees the cores)")
    args = parser.parse_args()
    from posezoo.runtime import PoseModel

    h, w = (int(v) for v in args.size.lower().split("x"))
    frames = frames_from(args.video, (h, w), args.n)
    h, w = frames[0].shape[:2]

    start = time.perf_counter()
    model = PoseModel.load(args.model, device=args.device, threads=args.threads, spin=not args.no_spin)
    load_s = time.perf_counter() - start
    cold = timed(model, frames, 1)[0]
    fresh = PoseModel.load(args.model, device=args.device, threads=args.threads, spin=not args.no_spin)
    warm_s = fresh.warmup(h, w)
    first_after_warmup = timed(fresh, frames, 1)[0]
    del fresh

    plan = model.plan_for(h, w)
    tensors = [model.prepare([f], "bgr").tensor for f in frames]
    name_in, name_out = model.spec.input.name, model.spec.outputs["keypoints"].name
    timed(lambda t: model.session.run([name_out], {name_in: t}), tensors, 10)
    bare = timed(lambda t: model.session.run([name_out], {name_in: t}), tensors, args.n)
    call = timed(model, frames, args.n)
    general = timed(lambda f: model.predict([f]), frames, args.n)

    print(f"model {model.name} ({args.model.name}) on {model.device}, frames {w}x{h} -> tensor "
          f"{plan.tensor[1]}x{plan.tensor[0]}, threads {args.threads or 'default'}, spin {not args.no_spin}")
    print(f"load {load_s * 1e3:.0f} ms; first call cold {cold * 1e3:.1f} ms; warmup() {warm_s * 1e3:.1f} ms, "
          f"then first call {first_after_warmup * 1e3:.1f} ms")
    print(f"bare session.run     {percentiles(bare)}")
    print(f"model(frame)         {percentiles(call)}")
    print(f"model.predict([f])   {percentiles(general)}")
    overhead = (np.median(call) - np.median(bare)) * 1e3
    print(f"model(frame) overhead over the bare session: {overhead:.2f} ms at the median")


if __name__ == "__main__":
    main()
