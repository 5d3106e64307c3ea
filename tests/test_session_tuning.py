"""Session settings and the static-shape IO-binding path give the same keypoints as the default."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from dot_videos import write_dot_video
from onnx_models import make_pose_onnx, paint_dots
from posezoo.runtime import PoseModel
from posezoo.runtime.cli import main
from posezoo.runtime.io import load_poses
from posezoo.runtime.session import SessionSettings
from posezoo.runtime.video import analyze_video, load_meta


def _dot_batch(n: int, h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = np.zeros((n, h, w, 3), np.uint8)
    truth = np.zeros((n, 3, 2), np.float32)
    for i in range(n):
        xs, ys = rng.choice(w, 3, replace=False), rng.choice(h, 3, replace=False)
        paint_dots(frames[i], dict(zip(("red", "green", "blue"), zip(xs.tolist(), ys.tolist()))), color="rgb")
        truth[i] = np.stack([xs, ys], 1)
    return frames, truth


def test_pooled_batches_run_on_a_static_session_that_rebinds_buffers(tmp_path):
    model = PoseModel.load(make_pose_onnx(tmp_path / "m.onnx"), device="cpu")
    frames_a, truth_a = _dot_batch(4, 30, 40, seed=1)
    frames_b, truth_b = _dot_batch(4, 30, 40, seed=2)
    pool = [np.empty((4, 32, 64, 3), np.uint8) for _ in range(2)]  # padded to the spec's multiple of 32
    a = model.prepare(frames_a, "rgb", out=pool[0])
    b = model.prepare(frames_b, "rgb", out=pool[1])
    assert a.pooled and not model.prepare(frames_a, "rgb").pooled
    # A, B, A again: each run must read the buffer it was given, not the one bound before.
    for batch, truth in ((a, truth_a), (b, truth_b), (a, truth_a)):
        out = model.postprocess(model.infer(batch), batch)
        np.testing.assert_array_equal(out.xy[:, 0], truth)
        unpooled = model.prepare(frames_a if truth is truth_a else frames_b, "rgb")
        np.testing.assert_array_equal(out.coords, model.postprocess(model.infer(unpooled), unpooled).coords)
    assert model.static_shapes() == [(4, 32, 64, 3)]
    fixed = model._static[(4, 32, 64, 3)]
    assert fixed.session.get_inputs()[0].shape == [4, 32, 64, 3]
    assert model.session.get_inputs()[0].shape == ["batch", "height", "width", 3]
    partial = model.prepare(frames_b[:3], "rgb", out=pool[0])  # a last, partial batch: rows past 3 are stale
    np.testing.assert_array_equal(model.postprocess(model.infer(partial), partial).xy[:, 0], truth_b[:3])
    with pytest.raises(ValueError, match=r"the buffer has shape"):
        model.prepare(frames_a, "rgb", out=pool[0][:3])


def test_fixed_batch_graph_has_no_static_session_for_another_batch(tmp_path):
    model = PoseModel.load(make_pose_onnx(tmp_path / "m.onnx", size=(32, 48), batch=1), device="cpu")
    frames = [np.zeros((32, 48, 3), np.uint8)] * 4
    batch = model.prepare(frames, out=np.empty((4, 32, 48, 3), np.uint8))
    assert len(model.infer(batch)) == 4 and model.static_shapes() == []  # run frame by frame instead
    one = model.prepare(frames[:1], out=np.empty((1, 32, 48, 3), np.uint8))
    model.infer(one)
    assert model.static_shapes() == [(1, 32, 48, 3)]


def test_settings_reach_the_session_options():
    opts = SessionSettings(threads=1, spin=False, optimization="basic", arena=False).options()
    assert opts.intra_op_num_threads == 1 and not opts.enable_cpu_mem_arena
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    default = SessionSettings().options()
    assert default.enable_cpu_mem_arena and default.intra_op_num_threads >= 1
    with pytest.raises(ValueError, match="optimization must be one of"):
        SessionSettings(optimization="max")
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        SessionSettings(threads=0)


@pytest.mark.parametrize("settings", [dict(spin=False), dict(optimization="none"), dict(arena=False)])
def test_every_setting_predicts_the_same_keypoints(tmp_path, settings):
    path = make_pose_onnx(tmp_path / "m.onnx")
    frames, truth = _dot_batch(3, 30, 40, seed=3)
    model = PoseModel.load(path, device="cpu", threads=1, **settings)
    np.testing.assert_array_equal(model.predict(frames, color="rgb").xy[:, 0], truth)


def test_static_and_dynamic_video_analysis_agree(tmp_path):
    path = make_pose_onnx(tmp_path / "m.onnx")
    video = tmp_path / "v.avi"
    truth = write_dot_video(video, n=23, size=(40, 56))  # 23 = 5 batches of 4 + a partial one of 3
    tables = {}
    for static in (True, False):
        model = PoseModel.load(path, device="cpu", static=static)
        h5 = analyze_video(model, video, tmp_path / str(static), batch_size=4, progress=False)
        tables[static] = load_poses(h5).coords[:, 0]
        assert load_meta(h5)["session"]["static"] is static
    np.testing.assert_array_equal(tables[True], tables[False])
    np.testing.assert_array_equal(tables[True][..., :2], truth)


def test_cli_runtime_options_are_applied_and_recorded(tmp_path, capsys):
    path = make_pose_onnx(tmp_path / "m.onnx")
    video = tmp_path / "v.avi"
    truth = write_dot_video(video, n=10, size=(40, 56))
    code = main(["analyze", str(path), str(video), "--output-dir", str(tmp_path / "out"), "-q", "--threads", "1",
                 "--no-spin", "--no-arena", "--optimization", "basic", "--no-static"])
    assert code == 0, capsys.readouterr()
    (h5,) = (tmp_path / "out").glob("*.h5")
    np.testing.assert_array_equal(load_poses(h5).coords[:, 0][..., :2], truth)
    assert load_meta(h5)["session"] == {"threads": 1, "spin": False, "optimization": "basic", "arena": False,
                                        "static": False}
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(path), str(video), "--threads", "0"])
    assert exc.value.code == 2 and "--threads: must be >= 1" in capsys.readouterr().err
