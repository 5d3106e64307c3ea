"""Fine-tuning (``model.init``) against training from scratch, on a project with few labelled frames.

Openfield's fixed split (23 test frames, 93 training frames) is divided further: 16 training
frames (every sixth) form a small project, the other 77 a base project. Then, always tested on the
same 23 frames:

- ``scratch-16``: the default recipe from scratch on the 16 frames;
- ``base-77``: the default recipe from scratch on the other 77 frames (the model to start from);
- ``init-run-16``: the 16 frames, starting from ``base-77`` (``model.init: RUN_DIR``);
- ``base-synthetic``: the default recipe on a synthetic mouse project (same four keypoints);
- ``init-synthetic-16``: the 16 frames, starting from ``base-synthetic``.

Fine-tuning runs take ``--fine-steps`` (default 3000) steps. Prints mean error, per-keypoint
errors and minutes per run.

    python benchmarks/fine_tuning.py
    python benchmarks/fine_tuning.py --steps 3000 --fine-steps 1000   # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OPENFIELD = REPO.parent / "shared" / "data" / "openfield"
SMALL_EVERY = 6  # every sixth training frame -> 16 of 93


def _subset(project: Path, rows: list[int], out: Path) -> Path:
    """A copy of ``project`` whose labels are its rows ``rows`` (images linked, not copied)."""
    import pandas as pd

    from posezoo.training.project import load_project

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text((project / "config.yaml").read_text())
    for table in load_project(project).tables:
        frame = pd.read_hdf(table) if table.suffix == ".h5" else pd.read_csv(table, header=[0, 1, 2], index_col=0)
        folder = out / "labeled-data" / table.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        for image in table.parent.glob("*.png"):
            if not (folder / image.name).exists():
                os.symlink(image, folder / image.name)
        frame.iloc[sorted(rows)].to_csv(folder / f"{table.stem}.csv")
    return out


def _run(name: str, project: Path, out: Path, test: list[int], **overrides: Any) -> dict[str, Any]:
    from posezoo.training.api import train

    run_dir = out / name
    t0 = time.perf_counter()
    train(project, output=run_dir, progress=False, **{**overrides, "split.test_indices": test})
    metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    row = {"run": name, "mean_px": round(metrics["rmse"], 2),
           "per_keypoint": dict(zip(metrics["keypoints"], (round(v, 2) for v in metrics["per_keypoint_rmse"]))),
           "minutes": round((time.perf_counter() - t0) / 60, 1)}
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, help="steps of the runs from scratch (default: the recipe's)")
    parser.add_argument("--fine-steps", type=int, default=3000, help="steps of the fine-tuning runs")
    parser.add_argument("--only", nargs="+", metavar="RUN", help="runs to do (their bases are made when missing)")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "fine-tuning")
    args = parser.parse_args()
    if not (OPENFIELD / "config.yaml").is_file():
        parser.error(f"needs the openfield project at {OPENFIELD}")

    from posezoo.training.project import benchmark_test_indices, load_project
    from posezoo.training.synthetic import make_project

    n = len(load_project(OPENFIELD))
    test = benchmark_test_indices(n)
    train_rows = [i for i in range(n) if i not in set(test)]
    small = train_rows[::SMALL_EVERY]
    base = [i for i in train_rows if i not in set(small)]
    out = args.output / time.strftime("%Y%m%d-%H%M%S")
    # each derived project keeps the 23 test frames, at the end of its sorted rows
    small_project = _subset(OPENFIELD, small + test, out / "projects" / "openfield-16")
    base_project = _subset(OPENFIELD, base + test, out / "projects" / "openfield-77")
    small_test = list(range(len(small), len(small) + len(test)))
    base_test = list(range(len(base), len(base) + len(test)))
    scratch = {"train.steps": args.steps} if args.steps else {}
    fine = {"train.steps": args.fine_steps}
    wanted = args.only or ["scratch-16", "base-77", "init-run-16", "base-synthetic", "init-synthetic-16"]
    rows = []
    if "scratch-16" in wanted:
        rows.append(_run("scratch-16", small_project, out, small_test, **scratch))
    if {"base-77", "init-run-16"} & set(wanted):
        rows.append(_run("base-77", base_project, out, base_test, **scratch))
    if "init-run-16" in wanted:
        rows.append(_run("init-run-16", small_project, out, small_test, **fine, **{"model.init": str(out / "base-77")}))
    if {"base-synthetic", "init-synthetic-16"} & set(wanted):
        synthetic = make_project(out / "projects" / "synthetic", n_frames=120, video_frames=1, seed=0,
                                 image_size=(640, 480))
        rows.append(_run("base-synthetic", synthetic, out, list(range(100, 120)), **scratch))
    if "init-synthetic-16" in wanted:
        rows.append(_run("init-synthetic-16", small_project, out, small_test, **fine,
                         **{"model.init": str(out / "base-synthetic")}))
    print(f"\n{'run':<20} {'mean px':>8} {'min':>5}  per keypoint")
    for r in rows:
        print(f"{r['run']:<20} {r['mean_px']:>8.2f} {r['minutes']:>5.1f}  {r['per_keypoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
