"""Today's code writes the same result files as the code before the `Poses` refactor (tests/golden)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

GOLDEN = Path(__file__).parent / "golden"
MODEL = Path(__file__).parents[1] / "zoo" / "models" / "synthetic-mouse" / "1.0.0" / "synthetic-mouse.onnx"
RESULT = "mouseDLC_posezoo_synthetic-mouse-lite"


def _posezoo(*args: object) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "posezoo.runtime.cli", *map(str, args)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    return out


def test_analyze_writes_the_golden_h5_csv_and_nwb(tmp_path):
    video = shutil.copy(GOLDEN / "mouse.mp4", tmp_path / "mouse.mp4")
    _posezoo("analyze", MODEL, video, "--csv", "--nwb", "-q")
    pd.testing.assert_frame_equal(pd.read_hdf(tmp_path / f"{RESULT}.h5"), pd.read_hdf(GOLDEN / f"{RESULT}.h5"),
                                  check_exact=True)
    with pd.HDFStore(tmp_path / f"{RESULT}.h5", "r") as store:
        assert store.keys() == ["/df_with_missing"] and store.get_storer("df_with_missing").is_table
    assert (tmp_path / f"{RESULT}.csv").read_text() == (GOLDEN / f"{RESULT}.csv").read_text()
    pytest.importorskip("pynwb")
    from pynwb import NWBHDF5IO

    def content(path: Path) -> dict:
        with NWBHDF5IO(str(path), "r") as io:
            nwb = io.read()
            pose = nwb.processing["behavior"]["PoseEstimation"]
            series = {name: (np.asarray(s.data[:]), np.asarray(s.confidence[:]), s.rate)
                      for name, s in pose.pose_estimation_series.items()}
            return {"identifier": nwb.identifier, "series": series, "nodes": list(pose.skeleton.nodes[:]),
                    "edges": np.asarray(pose.skeleton.edges[:]).tolist(), "scorer": pose.scorer,
                    "skeletons": list(nwb.processing["behavior"]["Skeletons"].skeletons)}

    ours, golden = content(tmp_path / f"{RESULT}.nwb"), content(GOLDEN / f"{RESULT}.nwb")
    assert ours.keys() == golden.keys()
    for key in ours:
        if key == "series":
            assert ours[key].keys() == golden[key].keys()
            for name, (data, conf, rate) in ours[key].items():
                np.testing.assert_array_equal(data, golden[key][name][0])
                np.testing.assert_array_equal(conf, golden[key][name][1])
                assert rate == golden[key][name][2]
        else:
            assert ours[key] == golden[key], key


def test_evaluate_json_is_the_golden_one(tmp_path):
    _posezoo("evaluate", MODEL, GOLDEN / "project", "--split", "all", "--json", tmp_path / "m.json")
    ours = json.loads((tmp_path / "m.json").read_text())["metrics"]
    # One intended change since the golden set: JSON writes null where it wrote the invalid NaN.
    golden = json.loads((GOLDEN / "evaluate.json").read_text(),
                        parse_constant=lambda c: None if c == "NaN" else float(c))
    assert ours == golden


def test_predict_csv_is_the_golden_one(tmp_path):
    images = sorted((GOLDEN / "project" / "labeled-data").rglob("*.png"))[:3]
    _posezoo("predict", MODEL, *images, "--output", tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_text().replace(str(GOLDEN) + "/", "") == (GOLDEN / "predict.csv").read_text()
