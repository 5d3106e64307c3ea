#!/usr/bin/env python
"""Multi-animal video analysis speed: end-to-end `analyze` of a 640x480 video with 3 mice,
assembly included, measured side by side with its parts in one run.

1. the graph alone: prepared batches through ``PoseModel.infer`` (the session ``analyze`` uses);
2. assembly alone: ``PoseModel.postprocess`` on those outputs (candidates + affinities ->
   animals, numpy/scipy), ms per frame;
3. end to end: ``analyze_video`` on the whole video (decode thread, graph, assembly, streamed
   .h5), frames/s from its _meta.json; the target (issue: multi-animal) is >= 100 frames/s on
   2 cores with the default model.

The model should be trained (an untrained one finds no candidates, which makes assembly
trivially fast): ``benchmarks/multianimal_accuracy.py`` leaves a run to export.

    python benchmarks/multianimal_speed.py --model runs/.../model.onnx [--video V.mp4] [--threads 2] \
        [--reference single.onnx]

``--reference`` runs a single-animal model (the default recipe's) through the same two
measurements on the same video, interleaved, so the multi-animal cost is a ratio measured under
the same load (on a shared machine the absolute figures swing with the other processes).

Without ``--video`` a synthetic 3-mouse 640x480 video of ``--video-frames`` frames is written.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frames import prepared_batches, read_frames  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="an exported multi-animal model")
    parser.add_argument("--video", type=Path, default=None)
    parser.add_argument("--video-frames", type=int, default=1200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--reference", type=Path, default=None, help="a single-animal model to compare with")
    args = parser.parse_args()

    from posezoo.runtime.model import PoseModel
    from posezoo.runtime.video import analyze_video, load_meta

    tmp = Path(tempfile.mkdtemp(prefix="posezoo-multispeed-"))
    video = args.video
    if video is None:
        from posezoo.training.synthetic_multi import VIDEO_NAME, make_multi_project

        t0 = time.perf_counter()
        project = make_multi_project(tmp / "project", n_frames=1, video_frames=args.video_frames, seed=7)
        video = project / "videos" / f"{VIDEO_NAME}.mp4"
        print(f"wrote {video} ({args.video_frames} frames, 640x480, 3 mice) in {time.perf_counter() - t0:.0f} s")
    model = PoseModel.load(args.model, device="cpu", threads=args.threads)
    if model.spec.multi is None:
        raise SystemExit(f"{args.model} is a single-animal model")
    load0 = os.getloadavg()[0]

    frames = read_frames(video, 256)
    batches = prepared_batches(model, frames, args.batch_size)
    for batch in batches[:2]:
        model.infer(batch)
    t0 = time.perf_counter()
    raws = [model.infer(batch) for batch in batches]
    graph_s = time.perf_counter() - t0
    n = sum(b.count for b in batches)
    t0 = time.perf_counter()
    found = 0
    for batch, raw in zip(batches, raws):
        poses = model.postprocess(raw, batch)
        found += int(sum(1 for f in poses.coords for a in f if (a[:, 2] == a[:, 2]).any()))
    assembly_s = time.perf_counter() - t0

    def end_to_end(m: PoseModel) -> tuple[float, int]:
        meta = load_meta(analyze_video(m, video, tmp / "out", batch_size=args.batch_size, progress=False,
                                       overwrite=True))
        return meta["timing"]["frames_per_second"], meta.get("frames_written")

    ref = PoseModel.load(args.reference, device="cpu", threads=args.threads) if args.reference else None
    e2e, written = end_to_end(model)
    if ref is not None:
        ref_batches = prepared_batches(ref, frames, args.batch_size)
        for batch in ref_batches[:2]:
            ref.infer(batch)
        t0 = time.perf_counter()
        for batch in ref_batches:
            ref.postprocess(ref.infer(batch), batch)
        ref_graph = n / (time.perf_counter() - t0)
        ref_e2e, _ = end_to_end(ref)
        e2e = (e2e + end_to_end(model)[0]) / 2  # before and after the reference: the same load
    load1 = os.getloadavg()[0]
    print(f"\nmodel {args.model.name}: {len(model.spec.multi.graph)} PAF edges, {model.spec.multi.candidates} candidates "
          f"per keypoint, {args.threads} threads, batch {args.batch_size}")
    print(f"graph alone      {n / graph_s:8.1f} frames/s  ({1e3 * graph_s / n:.2f} ms/frame)")
    print(f"assembly alone   {n / assembly_s:8.1f} frames/s  ({1e3 * assembly_s / n:.2f} ms/frame; "
          f"{found / n:.2f} animals found per frame)")
    print(f"analyze end to end {e2e:8.1f} frames/s over {written} frames of {video.name} "
          f"(target >= 100: {'met' if e2e >= 100 else 'NOT met'})")
    if ref is not None:
        print(f"single-animal reference {args.reference.name}: graph + decode {ref_graph:.1f} frames/s, analyze "
              f"{ref_e2e:.1f} frames/s; multi-animal / single-animal: graph + assembly "
              f"{1 / (graph_s / n + assembly_s / n) / ref_graph:.2f}, end to end {e2e / ref_e2e:.2f}")
    print(f"load average (1 min) {load0:.2f} before, {load1:.2f} after, {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
