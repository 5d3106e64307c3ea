"""Our results load in pandas, movement and NWB tools exactly as DeepLabCut's outputs do."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dot_videos import write_dot_video
from onnx_models import make_pose_onnx
from posezoo.runtime.cli import main
from posezoo.runtime.io import load_poses as read_poses
from posezoo.runtime.video import analyze_video

SCORER = "DLC_posezoo_brightest-pixel"


@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    root = tmp_path_factory.mktemp("interop")
    model = make_pose_onnx(root / "bp.onnx")
    video = root / "m1.avi"
    truth = write_dot_video(video, n=30, fps=30.0)
    h5 = analyze_video(model, video, csv=True, progress=False)
    return model, h5, truth


def test_pandas_reads_the_tables_as_dlc_writes_them(analysed):
    _, h5, truth = analysed
    with pd.HDFStore(h5, mode="r") as store:
        assert store.keys() == ["/df_with_missing"]
        assert store.get_storer("df_with_missing").is_table  # DLC: to_hdf(format="table")
    df = pd.read_hdf(h5)  # DLC users read without a key
    csv = pd.read_csv(h5.with_suffix(".csv"), header=[0, 1, 2], index_col=0)
    assert csv.columns.equals(df.columns) and list(csv.index) == list(df.index) == list(range(30))
    np.testing.assert_allclose(csv.to_numpy(), df.to_numpy())
    np.testing.assert_array_equal(df.xs("x", axis=1, level="coords").to_numpy(), truth[:, :, 0])
    np.testing.assert_array_equal(df[SCORER]["green"]["y"].to_numpy(), truth[:, 1, 1])
    head = h5.with_suffix(".csv").read_text().splitlines()[:4]
    assert head[0].startswith(f"scorer,{SCORER},") and head[1].startswith("bodyparts,red,red,red,green")
    assert head[2].startswith("coords,x,y,likelihood,x") and head[3].startswith("0,")


@pytest.mark.parametrize("suffix", [".h5", ".csv"])
def test_movement_loads_our_results(analysed, suffix):
    load_poses = pytest.importorskip("movement.io.load_poses")
    _, h5, truth = analysed
    ds = load_poses.from_dlc_file(h5.with_suffix(suffix), fps=30)
    assert list(ds.keypoints.values) == ["red", "green", "blue"]
    assert ds.position.shape == (30, 2, 3, 1)  # time, space, keypoints, individuals
    np.testing.assert_allclose(ds.position.sel(space="x").values[..., 0], truth[:, :, 0])
    np.testing.assert_allclose(ds.position.sel(space="y").values[..., 0], truth[:, :, 1])
    np.testing.assert_allclose(ds.confidence.values[..., 0], 1.0)
    assert ds.time.values[-1] == pytest.approx(29 / 30)


def test_nwb_output_loads_in_pynwb_and_movement(analysed, tmp_path):
    pynwb = pytest.importorskip("pynwb")
    pytest.importorskip("ndx_pose")
    load_poses = pytest.importorskip("movement.io.load_poses")
    model, h5, truth = analysed
    video = h5.parent / "m1.avi"
    assert main(["analyze", str(model), str(video), "--output-dir", str(tmp_path), "--nwb", "-q"]) == 0
    nwb = tmp_path / f"m1{SCORER}.nwb"
    with pynwb.NWBHDF5IO(str(nwb), "r") as io:
        f = io.read()
        pose = f.processing["behavior"]["PoseEstimation"]
        assert list(pose.pose_estimation_series) == ["blue", "green", "red"]  # sorted by pynwb
        red = pose.pose_estimation_series["red"]
        np.testing.assert_array_equal(red.data[:], truth[:, 0])
        assert red.rate == 30.0 and red.unit == "pixels" and pose.source_software == "posezoo"
        assert list(pose.skeleton.nodes[:]) == ["red", "green", "blue"]
        assert pose.skeleton.edges[:].tolist() == [[0, 1]]
        assert f.identifier == "m1"
    ds = load_poses.from_nwb_file(nwb)
    np.testing.assert_allclose(ds.position.sel(keypoints="blue", space="x").values[:, 0], truth[:, 2, 0])
    # The same numbers as the .h5.
    np.testing.assert_allclose(read_poses(tmp_path / f"m1{SCORER}.h5").xy[:, 0, 2], truth[:, 2])
    np.testing.assert_array_equal(read_poses(nwb).coords, read_poses(tmp_path / f"m1{SCORER}.h5").coords)


def test_nwb_without_its_packages_names_the_extra(analysed, tmp_path):
    model, h5, _ = analysed
    code = ("import sys; sys.modules['pynwb'] = None; from posezoo.runtime.cli import main; "
            f"sys.exit(main(['analyze', {str(model)!r}, {str(h5.parent / 'm1.avi')!r}, '--output-dir', "
            f"{str(tmp_path)!r}, '--nwb', '-q']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert 'pip install "posezoo[nwb]"' in run.stderr and "pynwb" in run.stderr
    assert not list(tmp_path.iterdir())  # refused before any work


def test_analysis_modules_stay_light():
    """The acquisition-PC install: no torch/TF, and NWB/matplotlib only when asked for."""
    code = ("import sys; import posezoo.runtime.video, posezoo.runtime.evaluate, posezoo.runtime.draw, "
            "posezoo.runtime.cli.analysis, posezoo.runtime.io.nwb, posezoo.runtime.plots; "
            "from posezoo.runtime.cli import build_parser; build_parser(); "
            "bad = {'torch', 'tensorflow', 'pynwb', 'ndx_pose', 'matplotlib', 'posezoo.training'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
