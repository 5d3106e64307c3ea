#!/usr/bin/env python
"""Live latency: capture-to-poses percentiles and dropped frames of ``run_live`` at paced input,
with and without dynamic cropping, per model, side by side with the bare session, in one run.

Frames (640x480 from the openfield video, decoded into memory first so decoding does not compete
with the model) are handed to the live loop at 30, 60 and 120 frames/s by a paced `FramesSource`,
exactly as a camera would hand them over: the loop runs as ``posezoo live`` runs it (capture
thread, latest-frame-wins mailbox, inference thread, results streamed to an .h5 and timestamps).
Latency is capture -> poses in frame pixels (the timestamps table's ``latency_ms``). Beside each
row, the bare session (``session.run`` on a prepared tensor of the same size) called at the same
pace from one thread: what the machine gives with no live loop around the model.

Before each model's runs, one unreported warm-up pass builds the sessions for the whole frame and
for the crop window. The crop window is sized from the model's own detections; a model that
detects nothing confidently (a 1-epoch export, used because speed does not depend on the
weights) gets a fixed window of the size the first model chose, with threshold 0 so it always
crops, and the table says so.

    python benchmarks/live_latency.py --model lite.onnx --model resnet50.onnx \\
        --video ../shared/data/openfield/videos/m3v1mp4.mp4
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from frames import read_frames


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def pct(values: list[float] | np.ndarray) -> tuple[float, float, float]:
    p50, p95, p99 = np.percentile(np.asarray(values), [50, 95, 99])
    return float(p50), float(p95), float(p99)


def bare(model, image: np.ndarray, n: int) -> tuple[float, float, float]:
    """``session.run`` on an already prepared tensor, back to back: the floor."""
    tensor = model.prepare([image], "bgr").tensor
    name_in, name_out = model.spec.input.name, model.spec.outputs["keypoints"].name
    for _ in range(5):
        model.session.run([name_out], {name_in: tensor})
    out: list[float] = []
    began = time.perf_counter()
    while len(out) < n and (len(out) < 20 or time.perf_counter() - began < 5.0):  # slow models: 5 s at most
        start = time.perf_counter()
        model.session.run([name_out], {name_in: tensor})
        out.append((time.perf_counter() - start) * 1e3)
    return pct(out)


def bare_paced(model, image: np.ndarray, rate: float, seconds: float) -> tuple[float, float, float]:
    """``session.run`` called at ``rate`` from one thread, nothing else: the same pacing as the
    live runs without the live loop, so the table tells the machine's jitter from the loop's."""
    tensor = model.prepare([image], "bgr").tensor
    name_in, name_out = model.spec.input.name, model.spec.outputs["keypoints"].name
    interval, out = 1.0 / rate, []
    tick = time.perf_counter()
    for _ in range(max(1, int(rate * seconds))):
        now = time.perf_counter()
        if tick > now:
            time.sleep(tick - now)
        start = time.perf_counter()
        model.session.run([name_out], {name_in: tensor})
        out.append((time.perf_counter() - start) * 1e3)
        tick = max(tick + interval, time.perf_counter())
    return pct(out)


def live(model, frames: list[np.ndarray], rate: float, seconds: float, crop, folder: Path) -> dict[str, object]:
    import pandas as pd

    from posezoo.runtime.live import FramesSource, run_live

    n = max(1, int(rate * seconds))
    out = folder / f"run-{time.perf_counter_ns()}.h5"
    rep = run_live(model, FramesSource(frames, fps=rate, repeat=n // len(frames) + 1), out, frames=n, crop=crop,
                   progress=False, report=lambda message: None)
    ts = pd.read_csv(rep.timestamps)
    done = ts[ts["analysed"] == 1]
    crops = done["crop_x1"].notna()
    last = done[crops].iloc[-1] if crops.any() else None
    return {"lat": pct(done["latency_ms"]) if len(done) else (float("nan"),) * 3, "captured": rep.captured,
            "dropped": rep.dropped, "cropped": float(crops.mean()) if len(done) else 0.0,
            "window": None if last is None else (int(last["crop_x2"] - last["crop_x1"]),
                                                 int(last["crop_y2"] - last["crop_y1"]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, action="append", required=True,
                        help="an exported model (repeat: the default model first, then e.g. ResNet-50)")
    parser.add_argument("--video", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
                        / "openfield" / "videos" / "m3v1mp4.mp4", help="frames come from here (640x480 openfield)")
    parser.add_argument("--rates", type=float, nargs="+", default=[30, 60, 120],
                        help="input frames/s (default 30 60 120)")
    parser.add_argument("--seconds", type=float, default=10.0, help="paced input per run (default 10 s)")
    parser.add_argument("--frames", type=int, default=150, help="distinct frames decoded and replayed (default 150)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: physical cores)")
    parser.add_argument("--spin", action="store_true",
                        help="inference threads spin between frames (default: they sleep, as in posezoo live)")
    parser.add_argument("--margin", type=int, default=20, help="crop margin (default 20 px, posezoo live's default)")
    args = parser.parse_args()

    from posezoo.runtime import PoseModel
    from posezoo.runtime.live import DynamicCrop

    frames = read_frames(args.video, args.frames)
    h, w = frames[0].shape[:2]
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {cpu_name()}, {os.cpu_count()} CPUs, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"frames {w}x{h} from {args.video.name} ({len(frames)} replayed), {args.seconds:g} s per run, "
          f"device {args.device}, threads {args.threads or 'default'}, spin {args.spin}\n")
    rows: list[str] = []
    window: tuple[int, int] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for path in args.model:
            model = PoseModel.load(path, device=args.device, threads=args.threads, spin=args.spin)
            crop_note = "auto"
            # warm-up (unreported), which also finds the window the model's detections give
            probe = live(model, frames, 30, 2.0, DynamicCrop(margin=args.margin), folder)
            if probe["window"] is None or probe["cropped"] < 0.5:
                size = window or (192, 192)
                crop_note = f"fixed {size[0]}x{size[1]}, threshold 0 (the model detects nothing confidently)"

                def make_crop(size=size):
                    return DynamicCrop(margin=args.margin, size=size, threshold=0.0)

                live(model, frames, 30, 1.0, make_crop(), folder)  # warm the fixed window
            else:
                window = window or probe["window"]

                def make_crop():
                    return DynamicCrop(margin=args.margin)

            crop_size = probe["window"] if crop_note == "auto" else size
            b_full = bare(model, frames[0], 200)
            b_crop = bare(model, np.ascontiguousarray(frames[0][:crop_size[1], :crop_size[0]]), 200)  # back to back
            print(f"{model.name} ({path.name}) on {model.device}: crop window {crop_size[0]}x{crop_size[1]} "
                  f"({crop_note})")
            print(f"  bare session, whole frame:  p50 {b_full[0]:6.2f}  p95 {b_full[1]:6.2f}  p99 {b_full[2]:6.2f} ms")
            print(f"  bare session, crop window:  p50 {b_crop[0]:6.2f}  p95 {b_crop[1]:6.2f}  p99 {b_crop[2]:6.2f} ms")
            crop_image = np.ascontiguousarray(frames[0][:crop_size[1], :crop_size[0]])
            for rate in args.rates:
                for label, crop, image in (("whole frame", None, frames[0]), ("dynamic crop", make_crop(), crop_image)):
                    ref = bare_paced(model, image, rate, args.seconds / 2)
                    r = live(model, frames, rate, args.seconds, crop, folder)
                    p50, p95, p99 = r["lat"]  # type: ignore[misc]
                    line = (f"  {rate:5.0f} Hz  {label:12s}  p50 {p50:6.2f}  p95 {p95:6.2f}  p99 {p99:6.2f} ms  "
                            f"dropped {r['dropped']:4d} / {r['captured']:4d}"
                            + (f"  (cropped {r['cropped']:.0%})" if crop is not None else "")
                            + f"   | bare session at {rate:g} Hz: p50 {ref[0]:6.2f}  p99 {ref[2]:6.2f} ms")
                    print(line, flush=True)
                    rows.append(f"| {model.name} | {rate:g} Hz | {label} | {p50:.2f} | {p95:.2f} | {p99:.2f} | "
                                f"{r['dropped']} / {r['captured']} | {ref[0]:.2f} / {ref[2]:.2f} |")
            print()
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| model | input | frames | p50 ms | p95 ms | p99 ms | dropped / captured "
          "| bare session, same pace: p50 / p99 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
