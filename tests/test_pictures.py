"""Pictures: keypoints drawn on frames, labeled videos and result plots (real files, read back)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dot_videos import write_dot_video
from onnx_models import make_pose_onnx
from posezoo.runtime.cli import main
from posezoo.runtime.draw import draw_comparison, draw_pose, keypoint_colors, label_video, rainbow
from posezoo.runtime.io import load_poses
from posezoo.runtime.plots import PLOT_FILES, plot_poses
from posezoo.runtime.video import analyze_video


def _frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    return out


def test_colours_are_matplotlibs_rainbow():
    from matplotlib import colormaps

    x = np.linspace(0, 1, 9)
    np.testing.assert_allclose(rainbow(9), colormaps["rainbow"](x)[:, :3], atol=0.01)
    bgr = keypoint_colors(3)
    assert bgr[0][::-1] == tuple(int(round(v * 255)) for v in rainbow(3)[0]) and len(set(bgr)) == 3


def test_draw_pose_respects_pcutoff_and_skeleton():
    frame = np.zeros((100, 100, 3), np.uint8)
    kp = np.array([[20, 20, 0.9], [80, 20, 0.9], [50, 80, 0.3], [np.nan, np.nan, 0.99]])
    colors = keypoint_colors(4)
    draw_pose(frame, kp, skeleton=[(0, 1), (1, 2), (0, 3)], pcutoff=0.5, colors=colors,
              skeleton_color=(0, 0, 255))
    assert tuple(frame[20, 20]) == colors[0] and tuple(frame[20, 80]) == colors[1]
    assert frame[20, 50, 2] > 200 and not frame[20, 50, :2].any()  # the (anti-aliased) edge between two confident points
    assert not frame[80, 50].any() and not frame[50, 65].any()  # a point under pcutoff and its edge
    assert not frame[70:, :].any()


def test_draw_comparison_marks_labels_and_predictions():
    frame = np.zeros((60, 60, 3), np.uint8)
    labels = np.array([[10.0, 10.0], [40.0, 40.0]])
    pred = np.array([[12.0, 30.0, 0.9], [45.0, 10.0, 0.1]])
    colors = [(255, 0, 0), (0, 255, 0)]
    draw_comparison(frame, labels, pred, pcutoff=0.5, colors=colors, radius=2, thickness=1)
    assert tuple(frame[10, 10]) == colors[0] and tuple(frame[10, 14]) == colors[0]  # "+" arms
    assert tuple(frame[13, 13]) == (0, 0, 0)  # "+" has no diagonal
    assert tuple(frame[30, 12]) == colors[0]  # confident prediction: a dot
    assert tuple(frame[10, 45]) == colors[1] and tuple(frame[8, 43]) == colors[1]  # "x" under pcutoff


@pytest.fixture()
def analysed(tmp_path):
    model = make_pose_onnx(tmp_path / "bp.onnx")
    video = tmp_path / "arena.avi"
    truth = write_dot_video(video, n=12, size=(96, 128), block=3)
    return model, video, truth, analyze_video(model, video, progress=False)


def test_label_video_draws_each_row_on_its_frame(analysed, tmp_path):
    _, video, truth, h5 = analysed
    poses = load_poses(h5)
    poses.coords[5, ..., 2] = 0.2  # frame 5 under pcutoff: must come out untouched
    out = label_video(poses, video, tmp_path / "labeled.avi", pcutoff=0.5, skeleton=[["red", "blue"]],
                      codec="FFV1", progress=False)
    original, labeled = _frames(video), _frames(out)
    assert len(labeled) == len(original) == 12
    colors = keypoint_colors(3)
    for i in (0, 11):
        for k in range(3):
            x, y = truth[i, k].astype(int)
            assert tuple(labeled[i][y, x]) == colors[k]
        assert not np.array_equal(labeled[i], original[i])
    np.testing.assert_array_equal(labeled[5], original[5])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_label_video_cli_with_a_model_analyses_first(analysed, tmp_path, capsys):
    model, video, _, h5 = analysed
    h5.unlink()
    out = tmp_path / "with_model.avi"
    assert main(["label-video", str(model), str(video), "--output", str(out), "--codec", "FFV1", "-q"]) == 0
    assert h5.exists() and len(_frames(out)) == 12
    assert main(["label-video", str(h5), str(video), "--skeleton", "red", "nose", "-o", str(out)]) == 2
    assert "['nose'] are not among" in capsys.readouterr().err
    assert main(["label-video", str(h5), str(tmp_path / "none.avi")]) == 2


def test_plots_are_written_as_pngs(analysed, tmp_path, capsys):
    _, _, _, h5 = analysed
    paths = plot_poses(load_poses(h5), tmp_path / "plots", pcutoff=0.5)
    assert [p.name for p in paths] == list(PLOT_FILES)
    red = np.array(keypoint_colors(3)[0])
    for path in paths:
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 200 and image.shape[1] > 300
    trajectory = cv2.imread(str(paths[0])).astype(int)
    assert (np.abs(trajectory - red).sum(axis=2) < 30).sum() > 20  # the first keypoint's points are there
    assert main(["plot", str(h5)]) == 0
    default = h5.parent / "plot-poses" / "arena"
    assert sorted(p.name for p in default.iterdir()) == sorted(PLOT_FILES)
    assert "wrote" in capsys.readouterr().out
