"""PyTorch training on synthetic projects: learning, overfitting, the recorded run (its faults: test_faults.py)."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("torch")

from conftest import TINY_TRAIN  # noqa: E402
from posezoo.training.api import evaluate, train  # noqa: E402
from posezoo.training.registry import LITE  # noqa: E402


def _log(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv") as fh:
        return list(csv.DictReader(fh))


def test_tiny_run_learns_and_writes_run_directory(trained_run):
    rows = _log(trained_run)
    assert len(rows) == TINY_TRAIN["epochs"]
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert last < 0.8 * first, (first, last)
    for name in ("run.json", "config.yaml", "split.json", "spec.json", "metrics.json",
                 "snapshots/last.pt", "snapshots/best.pt"):
        assert (trained_run / name).is_file(), name
    # `lite` is an alias: the run's config names the arguments it resolved to, so the run keeps
    # building the same network if the alias changes.
    cfg = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert cfg["model"] == {"name": "lite", "width": LITE[1]["width"]}
    metrics = evaluate(trained_run)
    assert metrics["test"]["n_images"] == 6 and metrics["train"]["n_images"] == 42
    assert np.isfinite(metrics["test"]["rmse"])


def test_overfits_a_few_frames(tmp_path, synthetic_project):
    """Without augmentation a few frames are memorised: predictions land within a few pixels."""
    run = train(synthetic_project, output=tmp_path / "overfit", progress=False, model="lite", epochs=120,
                batch_size=4, eval_every=1000, scale=1.0, **{
                    "input.train_size": [160, 192], "augment.enabled": False, "schedule.warmup": 0.04,
                    "optimizer.lr": 0.003, "split.test_indices": list(range(4, 48))})
    metrics = evaluate(run, snapshot="last")
    assert metrics["train"]["n_images"] == 4
    assert metrics["train"]["rmse"] < 3.0, metrics["train"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posezoo.runtime.cli", *args], capture_output=True, text=True)


