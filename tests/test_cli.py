"""The `posezoo` command line: version, inspect, predict, and clean failures."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd

from onnx_models import make_pose_onnx, paint_dots
from posezoo.runtime.spec import SCHEMA_VERSION

POSEZOO = [sys.executable, "-m", "posezoo.runtime.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*POSEZOO, *args], capture_output=True, text=True)


def test_version_and_help():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("posezoo ")
    out = run("--help")
    for command in ("inspect", "predict", "train", "export", "zoo"):
        assert command in out.stdout


def test_inspect_human_and_json(tmp_path):
    model = make_pose_onnx(tmp_path / "m.onnx")
    out = run("inspect", str(model))
    assert out.returncode == 0, out.stderr
    assert "keypoints    3: red, green, blue" in out.stdout and "graph in" in out.stdout
    spec = json.loads(run("inspect", str(model), "--json").stdout)
    assert spec["keypoints"] == ["red", "green", "blue"] and spec["schema_version"] == SCHEMA_VERSION


def test_predict_writes_dlc_table(tmp_path):
    model = make_pose_onnx(tmp_path / "m.onnx")
    dots = [{"red": (5, 6), "green": (20, 9), "blue": (33, 17)}, {"red": (1, 2), "green": (3, 4), "blue": (5, 6)}]
    paths = []
    for i, d in enumerate(dots):
        paths.append(tmp_path / f"img{i}.png")
        cv2.imwrite(str(paths[-1]), paint_dots(np.zeros((40, 50, 3), np.uint8), d, color="bgr"))
    out = run("predict", str(model), *map(str, paths), "--output", str(tmp_path / "pred.csv"))
    assert out.returncode == 0, out.stderr
    df = pd.read_csv(tmp_path / "pred.csv", header=[0, 1, 2], index_col=0)
    assert list(df.columns.names) == ["scorer", "bodyparts", "coords"]
    assert df.loc[str(paths[0]), ("brightest-pixel", "green", "x")] == 20
    assert df.loc[str(paths[1]), ("brightest-pixel", "blue", "y")] == 6


def test_errors_are_one_line_with_nonzero_exit(tmp_path):
    out = run("inspect", str(tmp_path / "missing.onnx"))
    assert out.returncode == 2 and "missing.onnx" in out.stderr and "Traceback" not in out.stderr
    model = make_pose_onnx(tmp_path / "m.onnx")
    (tmp_path / "bad.png").write_text("not an image")
    out = run("predict", str(model), str(tmp_path / "bad.png"), "-o", str(tmp_path / "p.csv"))
    assert out.returncode == 2 and "bad.png" in out.stderr
    assert not (tmp_path / "p.csv").exists()


def test_multi_animal_demo_runs_every_step_and_scores_the_tracks(tmp_path):
    """The README's demo with --animals (a few epochs: the pipeline, not the accuracy)."""
    out = tmp_path / "demo"
    done = run("demo", "--animals", "3", "--epochs", "3", "--output-dir", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    for step in range(1, 7):
        assert f"== {step}/6" in done.stdout
    assert "identities against the true tracks: IDF1" in done.stdout
    [table] = [p for p in (out / "analysis").glob("*.h5") if not p.stem.endswith(("_detections", "_unique"))]
    columns = pd.read_hdf(table).columns
    assert list(columns.unique("individuals")) == ["mouse1", "mouse2", "mouse3"]
    assert (out / "analysis" / "mice1_labeled.mp4").stat().st_size > 0
    # the single-animal demo in the same folder replaces it (the multi-animal labels went with it)
    again = run("demo", "--epochs", "1", "--output-dir", str(out))
    assert again.returncode == 0, again.stdout + again.stderr
    assert not (out / "synthetic-mouse" / "labeled-data" / "mice1").exists()
