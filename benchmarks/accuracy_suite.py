"""The default recipe on projects that look nothing alike: how accurate is posezoo out of the box?

Trains the default recipe from scratch (nothing but the project and a fixed split) on openfield
(the real DeepLabCut project, fixed split, when ../shared/data/openfield is present) and on
synthetic projects that vary image size (320-1600 px), animal size, labelled frames (16-120),
keypoint count (4-27), how many keypoints are labelled, and distant look-alikes of a keypoint.
A synthetic project's test set is 40 frames apart from its training frames (16 training frames
leave too few to test on otherwise). Prints the mean, median and worst keypoint's mean error per
project (image pixels), the input scale and crop the recipe chose, the training time, and what the
body-plan check does to the network's output (raw -> checked): the error above pcutoff, the share
of labelled keypoints above pcutoff, of confident look-alikes (above pcutoff, farther from their
label than a quarter of the animal: "far>p") and of unlabelled (hidden) keypoints still reported
above pcutoff ("hidden>p"); lower is better for the last two.

    python benchmarks/accuracy_suite.py                      # every project, default budget (long)
    python benchmarks/accuracy_suite.py --only mouse-16 many-27 --steps 3000
    python benchmarks/accuracy_suite.py --set input.scale=0.5 --set input.train_size=[160,160]   # a variant
    python benchmarks/accuracy_suite.py --evaluate runs/accuracy-suite/STAMP/*                  # finished runs
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OPENFIELD = REPO.parent / "shared" / "data" / "openfield"
TEST_FRAMES = 40
_SPINE = tuple(f"spine{i}" for i in range(1, 13))
_TAIL = tuple(f"tail{i}" for i in range(1, 13))
_EIGHT = ("snout", "leftear", "rightear", "neck", "bodycenter", "tailbase", "tailmid", "tailend")
# name: (training frames, synthetic.make_project keyword arguments)
SYNTHETIC: dict[str, tuple[int, dict[str, Any]]] = {
    # like a second top-view mouse project: 640x480, 4 keypoints, 16 labelled frames
    "mouse-16": (16, {"image_size": (640, 480)}),
    # small images, many frames
    "mouse-320-120": (120, {"image_size": (320, 240), "bodyparts": _EIGHT}),
    # a large animal filling a mid-size image, half of the frames with part of it hidden (unlabelled there)
    "large-animal-44": (44, {"image_size": (832, 747), "bodyparts": _EIGHT, "animal_size": 1.4,
                             "occluded_prob": 0.5}),
    # like a reaching project: 44 frames, 5 keypoints, and in 60 % of them a copy of one keypoint's
    # surroundings two animal lengths or more away, the real one hidden (unlabelled) half of those times
    "lookalike-44": (44, {"image_size": (832, 747), "bodyparts": ("snout", "leftear", "rightear", "tailbase", "tailend"),
                          "animal_size": 0.6, "lookalike_prob": 0.6}),
    # a small animal in a large image
    "small-animal-1600": (60, {"image_size": (1600, 1200), "animal_size": 0.3}),
    # 27 keypoints (side pairs, spine, tail) in a large image, 16 labelled frames
    "many-27": (16, {"image_size": (1500, 1350),
                     "bodyparts": ("snout", "leftear", "rightear", "neck", "lefthip", "righthip", "leftshoulder",
                                   "rightshoulder", "tailbase", "tailend", *_SPINE[::2], *_TAIL[:11])}),
}


def _project(name: str, root: Path, seed: int) -> tuple[Path, list[int]]:
    """A synthetic project of the suite (made once) and its test indices."""
    from posezoo.training.synthetic import make_project

    n_train, kwargs = SYNTHETIC[name]
    path = root / name
    if not (path / "config.yaml").is_file():
        make_project(path, n_frames=n_train + TEST_FRAMES, video_frames=1, seed=seed, **kwargs)
    return path, list(range(n_train, n_train + TEST_FRAMES))


def _confidence(run_dir: Path) -> dict[str, dict[str, float | None]]:
    """What the body-plan check (`posezoo.runtime.body`) changes on the test frames: for the raw
    network output and for the checked one, the error over labelled keypoints above pcutoff
    ("p_px"), the share of labelled keypoints above pcutoff farther from their label than a
    quarter of the animal ("far>p": a confident look-alike), the share of unlabelled (hidden)
    keypoints above pcutoff ("hidden>p", None when all are labelled), and the share of labelled
    keypoints above pcutoff ("found")."""
    import dataclasses

    from posezoo.runtime.body import check_body
    from posezoo.training.loop import load_predictor
    from posezoo.training.predict import predict_frames
    from posezoo.training.run import build_spec, load_run

    run = load_run(run_dir)
    test = list(run.split.test)
    spec = build_spec(run.cfg, run.project, stride=run.spec.decode.stride, name=run.spec.name, train=run.split.train)
    _, forward = load_predictor(run)
    raw = predict_frames(forward, run.frames(test), dataclasses.replace(spec, body=None)).coords[:, 0]
    labels = run.project.labels[test].coords[:, 0, :, :2]
    hidden = np.isnan(labels[..., 0])
    extent = np.nanmax(np.linalg.norm(labels[:, :, None] - labels[:, None], axis=-1), axis=(1, 2))
    error = np.linalg.norm(raw[..., :2] - labels, axis=-1)
    out = {}
    for variant, coords in (("raw", raw), ("checked", check_body(raw, spec) if spec.body else raw)):
        above = coords[..., 2] >= run.project.pcutoff
        shown = above & ~hidden
        out[variant] = {"p_px": float(error[shown].mean()) if shown.any() else None,
                        "far": float((shown & (error > extent[:, None] / 4)).sum() / max((~hidden).sum(), 1)),
                        "hidden": float((above & hidden).sum() / hidden.sum()) if hidden.any() else None,
                        "found": float(shown.sum() / max((~hidden).sum(), 1))}
    return out


def _row(name: str, run_dir: Path, minutes: float | None) -> dict[str, Any]:
    """One project's line of the table, from its run directory."""
    import yaml

    metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    per_kp = np.array([np.nan if v is None else v for v in metrics["per_keypoint_rmse"]], float)
    worst = int(np.nanargmax(per_kp))
    return {"project": name, "keypoints": len(per_kp), "train_frames": _train_frames(run_dir),
            "scale": cfg["input"]["scale"], "crop": cfg["input"]["train_size"][0], "batch": cfg["train"]["batch_size"],
            "mean_px": metrics["rmse"], "median_kp_px": float(np.nanmedian(per_kp)),
            "worst_kp": f"{metrics['keypoints'][worst]} {per_kp[worst]:.1f}", "minutes": minutes,
            "body_check": _confidence(run_dir)}


def _train_frames(run_dir: Path) -> int:
    return len(json.loads((run_dir / "split.json").read_text())["train"])


def _print_table(results: list[dict[str, Any]]) -> None:
    def pct(v: float | None) -> str:
        return "" if v is None else f"{100 * v:.1f}%"

    print(f"\n{'project':<18} {'kp':>3} {'frames':>6} {'scale':>5} {'crop':>4} {'batch':>5} {'mean px':>8} "
          f"{'median kp':>9} {'worst keypoint':>22} {'min':>5}   body check: raw -> checked "
          "(px >pcutoff; found >pcutoff; far>p; hidden>p)")
    for r in results:
        raw, chk = r["body_check"]["raw"], r["body_check"]["checked"]
        minutes = "" if r["minutes"] is None else f"{r['minutes']:.1f}"
        checks = "; ".join(f"{fmt(raw[k])} -> {fmt(chk[k])}" for k, fmt in
                           (("p_px", lambda v: "" if v is None else f"{v:.2f}"), ("found", pct), ("far", pct),
                            ("hidden", pct)))
        print(f"{r['project']:<18} {r['keypoints']:>3} {r['train_frames']:>6} {r['scale']:>5} {r['crop']:>4} "
              f"{r['batch']:>5} {r['mean_px']:>8.2f} {r['median_kp_px']:>9.2f} {r['worst_kp']:>22} {minutes:>5}   "
              + checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"projects to run: openfield {' '.join(SYNTHETIC)}")
    parser.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic projects")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "accuracy-suite")
    parser.add_argument("--evaluate", nargs="+", type=Path, metavar="RUN_DIR",
                        help="train nothing: print the table for these finished runs of the suite")
    args = parser.parse_args()
    if args.evaluate:
        _print_table([_row(path.name, path, None) for path in args.evaluate])
        return 0

    import yaml

    from posezoo.training.api import train
    from posezoo.training.project import benchmark_test_indices, load_project

    names = args.only or ["openfield", *SYNTHETIC]
    unknown = [n for n in names if n != "openfield" and n not in SYNTHETIC]
    if unknown:
        parser.error(f"unknown project(s) {unknown}; choose from openfield {' '.join(SYNTHETIC)}")
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    if args.steps:
        overrides["train.steps"] = args.steps
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = []
    for name in names:
        if name == "openfield":
            if not (OPENFIELD / "config.yaml").is_file():
                print(f"openfield: skipped, the project is not at {OPENFIELD}", file=sys.stderr)
                continue
            path, test = OPENFIELD, None  # its fixed split, once its frames are counted
        else:
            path, test = _project(name, args.output / "projects", args.seed)
        frames = len(load_project(path))
        test = benchmark_test_indices(frames) if test is None else test
        run_dir = args.output / stamp / name
        t0 = time.perf_counter()
        train(path, output=run_dir, progress=False, **{**overrides, "split.test_indices": test})
        minutes = (time.perf_counter() - t0) / 60
        row = _row(name, run_dir, minutes)
        results.append(row)
        print(json.dumps(row), flush=True)
    _print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
