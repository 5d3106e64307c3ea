"""PyTorch training on synthetic projects: learning, overfitting, exact resume, clean errors."""
from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
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
                    "input.train_size": [160, 192], "augment.enabled": False, "schedule.warmup_epochs": 5,
                    "optimizer.lr": 0.003, "split.test_indices": list(range(4, 48))})
    metrics = evaluate(run, snapshot="last")
    assert metrics["train"]["n_images"] == 4
    assert metrics["train"]["rmse"] < 3.0, metrics["train"]


def test_resume_after_kill_matches_uninterrupted(tmp_path, synthetic_project):
    opts = {"model": "lite", "epochs": 4, "batch_size": 8, "eval_every": 2, "scale": 0.5,
            "input.train_size": [64, 64], "split.test_indices": list(range(4, 48, 8))}
    straight = train(synthetic_project, output=tmp_path / "straight", progress=False, **opts)

    # The same run in a subprocess, killed with SIGKILL once the first snapshot exists.
    killed = tmp_path / "killed"
    code = ("import sys; from posezoo.training.api import train; "
            f"train({str(synthetic_project)!r}, output={str(killed)!r}, progress=False, **{opts!r})")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while not (killed / "snapshots" / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL) if proc.poll() is None else None
    proc.wait()
    if len(_log(killed)) >= opts["epochs"]:
        pytest.skip("the subprocess finished before it could be killed")
    train(output=killed, resume=True, progress=False)

    a, b = _log(straight), _log(killed)
    assert [r["epoch"] for r in b] == [str(e) for e in range(opts["epochs"])]
    for ra, rb in zip(a, b):
        assert float(ra["loss"]) == pytest.approx(float(rb["loss"]), rel=1e-5), (ra, rb)
        if ra["test_rmse"]:
            assert float(ra["test_rmse"]) == pytest.approx(float(rb["test_rmse"]), rel=1e-4)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posezoo.runtime.cli", *args], capture_output=True, text=True)


def test_malformed_projects_get_clear_errors(tmp_path, synthetic_project):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(synthetic_project, broken)
    image = next((broken / "labeled-data").rglob("*.png"))
    image.unlink()
    out = _cli("train", str(broken), "--epochs", "1", "--output", str(tmp_path / "r1"))
    assert out.returncode == 2 and image.name in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "r1").exists()

    (broken / "config.yaml").write_text("bodyparts: [snout, leftear\n  - : : nope")
    out = _cli("train", str(broken), "--epochs", "1", "--output", str(tmp_path / "r2"))
    assert out.returncode == 2 and "config.yaml" in out.stderr

    shutil.rmtree(broken)
    shutil.copytree(synthetic_project, broken)
    cfg = (broken / "config.yaml").read_text().replace("- tailbase\n", "- tailbase\n- tailtip\n", 1)
    (broken / "config.yaml").write_text(cfg)
    out = _cli("train", str(broken), "--epochs", "1", "--output", str(tmp_path / "r3"))
    assert out.returncode == 2 and "tailtip" in out.stderr

    out = _cli("train", str(synthetic_project), "--set", "train.epochz=3", "--output", str(tmp_path / "r4"))
    assert out.returncode == 2 and "epochz" in out.stderr
