"""The default recipe on projects that look nothing alike: how accurate is posezoo out of the box?

Trains the default recipe from scratch (nothing but the project and a fixed split) on openfield
(the real DeepLabCut project, fixed split, when ../shared/data/openfield is present) and on
synthetic projects that vary image size (320-1600 px), animal size, labelled frames (16-120),
keypoint count (4-27) and how many keypoints are labelled. A synthetic project's test set is 40
frames apart from its training frames (16 training frames leave too few to test on otherwise).
Prints the mean, median and worst keypoint's mean error per project (image pixels), the input
scale and crop the recipe chose, the training time, and how many of the test frames' unlabelled
(hidden) keypoints the model still reports above pcutoff ("hidden>p": lower is better).

    python benchmarks/accuracy_suite.py                      # every project, default budget (long)
    python benchmarks/accuracy_suite.py --only mouse-16 many-27 --steps 3000
    python benchmarks/accuracy_suite.py --set input.scale=0.5 --set input.train_size=[160,160]   # a variant
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


def _hidden_confident(run_dir: Path) -> float | None:
    """The share of the test frames' unlabelled keypoints (hidden, or out of view) that the model
    still reports above pcutoff: a confident point where there is none. None when all are labelled."""
    from posezoo.training.loop import load_predictor
    from posezoo.training.run import load_run

    run = load_run(run_dir)
    test = list(run.split.test)
    hidden = np.isnan(run.project.labels[test].coords[..., 0])
    if not hidden.any():
        return None
    predict, _ = load_predictor(run)
    scores = predict(run.frames(test)).coords[..., 2]
    return float((scores[hidden] >= run.project.pcutoff).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"projects to run: openfield {' '.join(SYNTHETIC)}")
    parser.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic projects")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "accuracy-suite")
    args = parser.parse_args()

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
        metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        per_kp = np.array([np.nan if v is None else v for v in metrics["per_keypoint_rmse"]], float)
        worst = int(np.nanargmax(per_kp))
        row = {"project": name, "keypoints": len(per_kp), "train_frames": frames - len(test),
               "scale": cfg["input"]["scale"], "crop": cfg["input"]["train_size"][0],
               "batch": cfg["train"]["batch_size"],
               "mean_px": metrics["rmse"], "median_kp_px": float(np.nanmedian(per_kp)),
               "worst_kp": f"{metrics['keypoints'][worst]} {per_kp[worst]:.1f}", "pcutoff_px": metrics["rmse_pcutoff"],
               "minutes": minutes}
        row["hidden_confident"] = _hidden_confident(run_dir)
        results.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'project':<18} {'kp':>3} {'frames':>6} {'scale':>5} {'crop':>4} {'batch':>5} {'mean px':>8} "
          f"{'median kp':>9} {'worst keypoint':>22} {'>pcutoff':>8} {'hidden>p':>8} {'min':>5}")
    for r in results:
        hidden = "" if r["hidden_confident"] is None else f"{100 * r['hidden_confident']:.0f}%"
        print(f"{r['project']:<18} {r['keypoints']:>3} {r['train_frames']:>6} {r['scale']:>5} {r['crop']:>4} "
              f"{r['batch']:>5} {r['mean_px']:>8.2f} {r['median_kp_px']:>9.2f} {r['worst_kp']:>22} "
              f"{(r['pcutoff_px'] or float('nan')):>8.2f} {hidden:>8} {r['minutes']:>5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
