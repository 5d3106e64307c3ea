"""Session settings and the static-shape IO-binding path give the same keypoints as the default."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from dot_videos import write_dot_video
from onnx_models import make_pose_onnx, paint_dots
from posezoo.runtime import PoseModel
from posezoo.runtime.cli import main
from posezoo.runtime.results import read_results
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


def test_static_session_matches_the_dynamic_one_across_rebound_buffers(tmp_path):
    model = PoseModel.load(make_pose_onnx(tmp_path / "m.onnx"), device="cpu")
    fixed = model.static_session(4, 30, 40)
    assert fixed is model.static_session(4, 30, 40)  # cached per shape
    plan = model.plan_for(30, 40)
    assert fixed.shape == (4, *plan.tensor, 3) == (4, 32, 64, 3)  # padded to the spec's multiple of 32
    frames_a, truth_a = _dot_batch(4, 30, 40, seed=1)
    frames_b, truth_b = _dot_batch(4, 30, 40, seed=2)
    a = model.prepare_batch(frames_a, plan, "rgb")
    b = model.prepare_batch(frames_b, plan, "rgb")
    # A, B, A again: each run must read the buffer it was given, not the one bound before.
    for tensor, truth in ((a, truth_a), (b, truth_b), (a, truth_a)):
        out = plan.to_frame(fixed.run(tensor))
        np.testing.assert_array_equal(out[..., :2], truth)
        np.testing.assert_array_equal(out, plan.to_frame(model.run_tensor(tensor)))
    with pytest.raises(ValueError, match="C-contiguous uint8"):
        fixed.run(a[:3])
    with pytest.raises(ValueError, match="C-contiguous uint8"):
        fixed.run(np.ascontiguousarray(a.transpose(0, 2, 1, 3)))


def test_static_session_fixes_the_graph_dimensions(tmp_path):
    model = PoseModel.load(make_pose_onnx(tmp_path / "m.onnx"), device="cpu")
    fixed = model.static_session(2, 24, 16)
    assert fixed.session.get_inputs()[0].shape == [2, 32, 32, 3]
    assert model.session.get_inputs()[0].shape == ["batch", "height", "width", 3]


def test_fixed_batch_graph_has_no_static_session_for_another_batch(tmp_path):
    model = PoseModel.load(make_pose_onnx(tmp_path / "m.onnx", size=(32, 48), batch=1), device="cpu")
    assert model.static_session(4, 32, 48) is None
    assert model.static_session(1, 32, 48).shape == (1, 32, 48, 3)


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
    np.testing.assert_array_equal(model.predict(frames, color="rgb")[..., :2], truth)


def test_static_and_dynamic_video_analysis_agree(tmp_path):
    path = make_pose_onnx(tmp_path / "m.onnx")
    video = tmp_path / "v.avi"
    truth = write_dot_video(video, n=23, size=(40, 56))  # 23 = 5 batches of 4 + a partial one of 3
    tables = {}
    for static in (True, False):
        h5 = analyze_video(path, video, tmp_path / str(static), batch_size=4, progress=False, static=static)
        tables[static] = read_results(h5).coords
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
    np.testing.assert_array_equal(read_results(h5).coords[..., :2], truth)
    assert load_meta(h5)["session"] == {"threads": 1, "spin": False, "optimization": "basic", "arena": False,
                                        "static": False}
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(path), str(video), "--threads", "0"])
    assert exc.value.code == 2 and "--threads: must be >= 1" in capsys.readouterr().err
