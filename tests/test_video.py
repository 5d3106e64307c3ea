"""`posezoo analyze` end to end on real video files whose keypoints are known exactly."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dot_videos import corrupt_avi_frame, write_dot_video
from onnx_models import make_pose_onnx, make_spec, paint_dots
from posezoo.runtime import PoseModel
from posezoo.runtime.cli import main
from posezoo.runtime.io import load_poses
from posezoo.runtime.decode import VideoError, indexed_frames, open_video
from posezoo.runtime.spec import SCHEMA_VERSION, InputSpec, PreprocessSpec
from posezoo.runtime.video import FrameLossWarning, analyze_video, load_meta, meta_path, result_path, scorer_name

SCORER = "DLC_posezoo_brightest-pixel"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return make_pose_onnx(tmp_path_factory.mktemp("model") / "bp.onnx")


@pytest.fixture(scope="module")
def dots(tmp_path_factory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("video") / "mouse1.avi"
    return path, write_dot_video(path, n=50)


def test_analyze_matches_truth_and_writes_dlc_layout(model_path, dots, tmp_path):
    video, truth = dots
    out = analyze_video(model_path, video, tmp_path, batch_size=4, progress=False)  # 50 = 12 batches + 2
    assert out == tmp_path / f"mouse1{SCORER}.h5" == result_path(video, SCORER, tmp_path)
    df = pd.read_hdf(out, "df_with_missing")
    assert list(df.columns.names) == ["scorer", "bodyparts", "coords"]
    assert df.columns.get_level_values(0).unique().tolist() == [SCORER]
    assert df.columns.get_level_values(1).unique().tolist() == ["red", "green", "blue"]
    assert list(df.index) == list(range(50)) and (df.dtypes == np.float64).all()
    res = load_poses(out)
    np.testing.assert_array_equal(res.coords[:, 0, ..., :2], truth)
    np.testing.assert_allclose(res.coords[:, 0, ..., 2], 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name, meta_path(out).name]  # no partial left
    meta = load_meta(out)
    assert meta["model"]["sha256"] == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert meta["model"]["spec_schema_version"] == SCHEMA_VERSION and meta["model"]["name"] == "brightest-pixel"
    assert (meta["frames_written"], meta["frames_read"], meta["corrupt_frames"], meta["missing_frames"]) == (50, 50, 0, 0)
    assert meta["video"]["fps"] == 25.0 and meta["video"]["frame_count"] == 50
    assert meta["batch_size"] == 4 and meta["device"] == "cpu" and meta["timing"]["frames_per_second"] > 0


def test_geometry_and_colour_order_go_through_the_video_path(tmp_path):
    """A BGR model that halves the frame: keypoints come back in frame pixels (block centres)."""
    spec = make_spec(input=InputSpec(color="BGR"), preprocess=PreprocessSpec(resize="scale", scale=0.5))
    model = PoseModel.load(make_pose_onnx(tmp_path / "half.onnx", spec), device="cpu")
    video = tmp_path / "v.avi"
    truth = write_dot_video(video, n=20, size=(64, 96), block=2, even=True)
    res = load_poses(analyze_video(model, video, batch_size=3, csv=True, progress=False))
    # A BGR model reads channel 0 as "red": the blue square.
    np.testing.assert_allclose(res.coords[:, 0, 0, :2], truth[:, 2] + 0.5)
    np.testing.assert_allclose(res.coords[:, 0, 2, :2], truth[:, 0] + 0.5)
    csv = load_poses(result_path(video, SCORER, video.parent).with_suffix(".csv"))
    np.testing.assert_allclose(csv.coords[:, 0], res.coords[:, 0])


def test_corrupt_frame_gets_a_nan_row_and_is_reported(model_path, tmp_path):
    clean = tmp_path / "clean.avi"
    truth = write_dot_video(clean, n=30, codec="MJPG", block=8)
    video = tmp_path / "damaged.avi"
    corrupt_avi_frame(clean, 12, video)
    with pytest.warns(FrameLossWarning, match=r"1 corrupt frame\(s\) \(12\)"):
        out = analyze_video(model_path, video, batch_size=8, progress=False)
    res = load_poses(out)
    assert len(res) == 30
    assert np.isnan(res.coords[12, 0]).all()
    good = np.delete(np.arange(30), 12)
    err = res.coords[good, 0, :, :2] - truth[good]  # MJPG is lossy: the peak lies inside the 8x8 square
    assert (err >= 0).all() and (err < 8).all()
    meta = load_meta(out)
    assert (meta["corrupt_frames"], meta["corrupt_frame_indices"], meta["frames_read"]) == (1, [12], 29)


def test_file_ending_early_pads_missing_rows(model_path, dots, tmp_path):
    video, truth = dots
    short = tmp_path / "short.avi"
    data = video.read_bytes()
    short.write_bytes(data[: len(data) // 2])  # the header still declares 50 frames
    cap, info = open_video(short)
    kinds = [kind for _, _, kind in indexed_frames(cap, info)]
    cap.release()
    n_ok = kinds.count("ok")
    assert 5 < n_ok < 50 and kinds == ["ok"] * n_ok + ["missing"] * (50 - n_ok)
    with pytest.warns(FrameLossWarning, match=f"{50 - n_ok} missing frame"):
        out = analyze_video(model_path, short, batch_size=8, progress=False)
    res = load_poses(out)
    assert len(res) == 50
    np.testing.assert_array_equal(res.coords[:n_ok, 0, :, :2], truth[:n_ok])
    assert np.isnan(res.coords[n_ok:, 0]).all()
    assert load_meta(out)["missing_frames"] == 50 - n_ok


def test_unreadable_videos_fail_clearly_and_others_still_run(model_path, dots, tmp_path, capsys):
    video, _ = dots
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    with pytest.raises(VideoError, match="junk.mp4.*cannot open"):
        analyze_video(model_path, junk, progress=False)
    code = main(["analyze", str(model_path), str(junk), str(tmp_path / "absent.avi"), str(video),
                 "--output-dir", str(tmp_path / "out"), "-q"])
    text = capsys.readouterr().out
    assert code == 1
    assert "FAILED  " + str(junk) in text and "absent.avi" in text and "2 of 3 video(s) failed" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"mouse1{SCORER}.h5", f"mouse1{SCORER}_meta.json"]


def test_existing_results_are_skipped_unless_overwrite(model_path, dots, tmp_path, capsys):
    video, _ = dots
    args = ["analyze", str(model_path), str(video), "--output-dir", str(tmp_path), "-q"]
    assert main(args) == 0
    out = tmp_path / f"mouse1{SCORER}.h5"
    before = out.stat().st_mtime_ns
    os.utime(out, ns=(before - 10**9, before - 10**9))
    assert main(args) == 0
    assert "skipped" in capsys.readouterr().out and out.stat().st_mtime_ns == before - 10**9
    assert main(args + ["--csv"]) == 0  # skipped, but the .csv asked for now is made from the .h5
    assert out.stat().st_mtime_ns == before - 10**9
    np.testing.assert_array_equal(load_poses(out.with_suffix(".csv")).coords[:, 0], load_poses(out).coords[:, 0])
    out.with_suffix(".csv").unlink()
    assert main(args + ["--overwrite", "--csv"]) == 0
    assert out.stat().st_mtime_ns > before - 10**9 and out.with_suffix(".csv").exists()


def test_cli_exit_codes(model_path, dots, tmp_path, capsys):
    video, _ = dots
    assert main(["analyze", str(tmp_path / "nope.onnx"), str(video)]) == 2  # no model: nothing can run
    assert "nope.onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(model_path), str(video), "--batch-size", "0"])
    assert exc.value.code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["analyze", str(model_path), str(empty)]) == 2
    assert "no video files" in capsys.readouterr().err


_INTERRUPT = r"""
import _thread, signal, sys
from posezoo.runtime import video as v
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background parent may have ignored SIGINT
model, video, out_dir = sys.argv[1:4]
append = v.ResultsWriter.append
def append_then_ctrl_c(self, rows):  # Ctrl-C arrives once a second chunk of results is on disk
    append(self, rows)
    if self.frames_written >= 1024 and not getattr(v, "_sent", False):
        v._sent = True
        _thread.interrupt_main()
v.ResultsWriter.append = append_then_ctrl_c
try:
    v.analyze_video(model, video, out_dir, batch_size=16, progress=False)
    print("finished")
except KeyboardInterrupt:
    print("interrupted")
"""


def test_interrupted_analysis_resumes_from_the_partial_file(model_path, tmp_path):
    video = tmp_path / "long.avi"
    truth = write_dot_video(video, n=3000, size=(24, 32), fps=30.0)
    h5 = result_path(video, SCORER, tmp_path / "out")
    run = subprocess.run([sys.executable, "-c", _INTERRUPT, str(model_path), str(video), str(h5.parent)],
                         capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "interrupted", run.stdout + run.stderr
    assert not h5.exists() and h5.with_name(h5.name + ".partial").exists()
    out = analyze_video(model_path, video, h5.parent, batch_size=16, progress=False)
    meta = load_meta(out)
    assert 0 < meta["resumed_from_frame"] < 3000
    assert meta["frames_written"] == meta["frames_read"] == 3000
    res = load_poses(out)
    np.testing.assert_array_equal(res.coords[:, 0, ..., :2], truth)
    assert sorted(p.name for p in h5.parent.iterdir()) == [h5.name, meta_path(h5).name]


def test_partial_from_another_model_is_not_resumed(model_path, dots, tmp_path):
    video, truth = dots
    h5 = result_path(video, SCORER, tmp_path)
    partial = h5.with_name(h5.name + ".partial")
    pd.DataFrame(np.zeros((5, 9)), columns=read_results_columns()).to_hdf(partial, key="df_with_missing",
                                                                          format="table")
    with pytest.warns(UserWarning, match="starting over"):
        out = analyze_video(model_path, video, tmp_path, progress=False)
    np.testing.assert_array_equal(load_poses(out).coords[:, 0][..., :2], truth)  # the stale zeros are gone


def read_results_columns() -> pd.MultiIndex:
    return pd.MultiIndex.from_product([[SCORER], ["red", "green", "blue"], ["x", "y", "likelihood"]],
                                      names=["scorer", "bodyparts", "coords"])


def test_scorer_names_are_file_safe():
    assert scorer_name("mouse top/view v1.2") == "DLC_posezoo_mouse-top-view-v1.2"
    assert scorer_name("///") == "DLC_posezoo_model"


# -- low-latency single frames ----------------------------------------------------------------------
def test_single_frame_path_reuses_buffers_correctly(tmp_path):
    model = PoseModel.load(make_pose_onnx(tmp_path / "m.onnx"), device="cpu")
    a = paint_dots(np.zeros((50, 70, 3), np.uint8), {"red": (3, 4), "green": (60, 40), "blue": (10, 30)})
    b = paint_dots(np.zeros((90, 40, 3), np.uint8), {"red": (30, 80), "green": (1, 2), "blue": (39, 0)})
    for _ in range(3):  # alternating sizes: the cached buffer must follow the shape
        np.testing.assert_array_equal(model(a).coords[0, 0][:, :2], [[3, 4], [60, 40], [10, 30]])
        np.testing.assert_array_equal(model(b).coords[0, 0][:, :2], [[30, 80], [1, 2], [39, 0]])
    np.testing.assert_array_equal(model(a[..., ::-1].copy(), color="rgb").coords[0, 0], model(a).coords[0, 0])
    with pytest.raises(ValueError, match="dtype"):
        model(a.astype(np.float32))
    with pytest.raises(ValueError, match="pass the camera's height and width"):
        model.warmup()
    assert model.warmup(50, 70) > 0


def test_single_frame_path_is_thread_safe(tmp_path):
    model = PoseModel.load(make_pose_onnx(tmp_path / "m.onnx"), device="cpu", threads=1)
    rng = np.random.default_rng(1)
    errors: list[str] = []

    def worker(seed: int) -> None:
        local = np.random.default_rng(seed)
        for _ in range(200):
            pts = {c: (int(local.integers(0, 64)), int(local.integers(0, 48))) for c in ("red", "green", "blue")}
            kp = model(paint_dots(np.zeros((48, 64, 3), np.uint8), pts)).coords[0, 0]
            if not np.array_equal(kp[:, :2], list(pts.values())):
                errors.append(f"{pts} -> {kp[:, :2].tolist()}")

    threads = [threading.Thread(target=worker, args=(int(rng.integers(1 << 30)),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def test_fixed_size_model_warms_up_without_arguments(tmp_path):
    spec = make_spec(input=InputSpec(size=[32, 48], dynamic_axes=["batch"]),
                     preprocess=PreprocessSpec(resize="fit"))
    model = PoseModel.load(make_pose_onnx(tmp_path / "m.onnx", spec, size=(32, 48)), device="cpu")
    assert model.warmup() > 0
    frame = paint_dots(np.zeros((32, 48, 3), np.uint8), {"green": (7, 9)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tuple(model(frame).coords[0, 0][1, :2]) == (7, 9)


def test_meta_sidecar_is_valid_json(model_path, dots, tmp_path):
    video, _ = dots
    out = analyze_video(model_path, video, tmp_path, progress=False)
    doc = json.loads(meta_path(out).read_text())
    assert doc["scorer"] == SCORER and doc["outputs"] == [out.name]


@pytest.mark.slow
def test_real_h264_video(openfield_dir, model_path, tmp_path):
    """The openfield mp4 (h264, 2330 frames): every frame analysed, rows equal per-frame predict."""
    import cv2

    video = openfield_dir / "videos" / "m3v1mp4.mp4"
    out = analyze_video(model_path, video, tmp_path, batch_size=8, progress=False)
    meta = load_meta(out)
    assert (meta["frames_written"], meta["frames_read"], meta["corrupt_frames"]) == (2330, 2330, 0)
    res = load_poses(out)
    model = PoseModel.load(model_path, device="cpu")
    cap = cv2.VideoCapture(str(video))
    for i in range(300):
        ok, frame = cap.read()
        assert ok
        if i % 37 == 0:
            np.testing.assert_allclose(res.coords[i, 0], model(frame).coords[0, 0], atol=1e-6)
    cap.release()


def test_model_from_a_zoo(model_path, dots, tmp_path, monkeypatch):
    """MODEL may be zoo:NAME: a real zoo directory, resolved and cached through posezoo.zoo."""
    video, truth = dots
    monkeypatch.setenv("POSEZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("POSEZOO_ZOO", str(tmp_path / "zoo"))
    assert main(["zoo", "pack", str(model_path), "--output", str(tmp_path / "entry"), "--name", "dots",
                 "--license", "MIT", "--description", "test model"]) == 0
    assert main(["zoo", "publish", str(tmp_path / "entry"), str(tmp_path / "zoo")]) == 0
    assert main(["analyze", "zoo:dots", str(video), "--output-dir", str(tmp_path / "out"), "-q"]) == 0
    res = load_poses(tmp_path / "out" / f"mouse1{SCORER}.h5")
    np.testing.assert_array_equal(res.coords[:, 0, ..., :2], truth)


def test_video_without_any_decodable_frame_leaves_nothing(model_path, tmp_path):
    from dot_videos import avi_frame_chunks

    clean = tmp_path / "clean.avi"
    write_dot_video(clean, n=6, codec="MJPG", block=4)
    data = bytearray(clean.read_bytes())
    for offset, size in avi_frame_chunks(bytes(data)):
        data[offset:offset + size] = bytes(size)
    dead = tmp_path / "dead.avi"
    dead.write_bytes(bytes(data))
    out_dir = tmp_path / "out"
    with pytest.raises(VideoError, match="dead.avi: no frame could be decoded"):
        analyze_video(model_path, dead, out_dir, progress=False)
    assert list(out_dir.iterdir()) == []
