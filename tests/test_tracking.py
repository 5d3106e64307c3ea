"""Tracking inside `posezoo analyze`: a multi-animal model's animals keep their names all video long,
in files that DeepLabCut, movement and NWB tools read, however the analysis was run or stopped."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from posezoo.runtime import track as track_module
from posezoo.runtime.cli import main
from posezoo.runtime.io import load_poses
from posezoo.runtime.io.appearance import appearance_path, read_appearance_blocks
from posezoo.runtime.video import detections_path, load_meta, unique_path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 mice with a food port, and a 160-frame video of them meeting and crossing."""
    from posezoo.training.synthetic_multi import make_multi_project

    return make_multi_project(tmp_path_factory.mktemp("tracking") / "p", animals=3, n_frames=40, video_frames=160,
                              image_size=(192, 160), unique=True, seed=8)


@pytest.fixture(scope="module")
def video(project: Path) -> Path:
    from posezoo.training.synthetic_multi import VIDEO_NAME

    return project / "videos" / f"{VIDEO_NAME}.mp4"


@pytest.fixture(scope="module")
def multi_model(tmp_path_factory: pytest.TempPathFactory, project: Path) -> Path:
    """Trained just enough (about 20 s) to find two or three mice in most frames: tracking gets
    real, imperfect detections to name."""
    pytest.importorskip("torch")
    from posezoo.export import export
    from posezoo.training.api import train

    run = train(project, backend="torch", output=tmp_path_factory.mktemp("runs") / "tracking", progress=False,
                model="lite", epochs=60, batch_size=8, eval_every=60, scale=1.0,
                **{"input.train_size": [128, 128], "split.test_indices": [0, 1]})
    return export(run, tmp_path_factory.mktemp("export") / "tracking.onnx", progress=lambda _m: None).path


def _analyze(multi_model: Path, video: Path, out: Path, *extra: object) -> Path:
    # Assembly by affinity alone: the fixture's model is trained for seconds (test mAP 0) and
    # the labelled keypoint distances reject most of its noisy poses, leaving little to track.
    assert main(["analyze", str(multi_model), str(video), "--output-dir", str(out), "-q", "--no-body-check",
                 *map(str, extra)]) == 0
    (final,) = [p for p in out.glob("*.h5") if not p.name.endswith(("_detections.h5", "_unique.h5"))]
    return final


def test_analyze_tracks_into_readable_files(multi_model, video, tmp_path):
    final = _analyze(multi_model, video, tmp_path, "--csv")
    tracked = load_poses(final)
    assert tracked.individuals == ["mouse1", "mouse2", "mouse3"] and tracked.unique_keypoints == []
    assert len(tracked) == 160 and list(tracked.frame_numbers()) == list(range(160))
    detections = load_poses(detections_path(final))
    found = np.isfinite(detections.xy).all(-1).sum(-1) >= 2  # (frames, rows): animals the model found
    assert found.sum() > 250 and (found.sum(1) >= 2).sum() > 100  # enough to make names a question
    # Tracklets that get no name (a mouse found twice, a short ghost) are dropped, not invented;
    # so are those under 10 frames that met another mouse: many with this briefly trained model
    kept = (np.isfinite(tracked.xy).all(-1).sum(-1) >= 2).sum()
    assert 0.5 * found.sum() <= kept <= found.sum()
    # Tracking only renames: every tracked animal is one of that frame's detected animals.
    for f in (0, 80, 159):
        for animal in tracked.coords[f]:
            if np.isfinite(animal[:, :2]).any():
                assert any(np.array_equal(animal, d, equal_nan=True) for d in detections.coords[f])
    unique = load_poses(unique_path(final))  # the port, apart: movement needs a rectangle
    assert unique.keypoints == ["port"] and len(unique) == 160
    np.testing.assert_array_equal(unique.coords[:, 0, 0], detections.unique[:, 0])
    meta = load_meta(final)
    assert meta["tracking"]["settings"]["ambiguity"] == 0.5 and meta["fingerprint"]["tracking"]["max_gap"] == 15
    assert meta["tracking"]["detections"] == detections_path(final).name
    # What each animal looked like was kept beside the detections, for every frame, and used
    looks = appearance_path(detections_path(final))
    assert meta["tracking"]["colours"] is True and looks.exists()
    blocks = read_appearance_blocks(detections_path(final), load_meta(detections_path(final))["fingerprint"], 160)
    colours = np.concatenate(list(blocks))
    assert colours.shape == (160, detections.coords.shape[1], len(detections.keypoints) * 3)  # keypoints x RGB
    np.testing.assert_array_equal(np.isfinite(colours[..., ::3]), np.isfinite(detections.xy[..., 0]))
    assert 20 < np.nanmedian(colours) < 235
    assert read_appearance_blocks(detections_path(final), {"model_sha256": "another"}, 160) is None
    assert read_appearance_blocks(detections_path(final), load_meta(detections_path(final))["fingerprint"], 150) is None
    assert final.with_suffix(".csv").exists() and unique_path(final).with_suffix(".csv").exists()
    movement = pytest.importorskip("movement.io.load_poses")
    ds = movement.from_dlc_file(final, fps=30)
    assert list(ds.individuals.values) == ["mouse1", "mouse2", "mouse3"] and ds.position.shape[0] == 160


def test_reruns_skip_or_track_again_and_posezoo_track_agrees(multi_model, video, tmp_path, capsys, monkeypatch):
    final = _analyze(multi_model, video, tmp_path)
    table = pd.read_hdf(final)
    _analyze(multi_model, video, tmp_path)
    assert "skipped" in capsys.readouterr().out
    with monkeypatch.context() as newer:  # a newer tracker tracks tables of an older one again
        newer.setattr(track_module, "REVISION", track_module.REVISION + 1)
        _analyze(multi_model, video, tmp_path)
        assert "skipped" not in capsys.readouterr().out
        assert load_meta(final)["tracking"]["settings"]["revision"] == track_module.REVISION
    final.unlink()  # tracking is redone from the current detections, with the same result
    _analyze(multi_model, video, tmp_path)
    pd.testing.assert_frame_equal(pd.read_hdf(final), table, check_exact=True)
    assert main(["track", str(multi_model), str(detections_path(final)), "--max-gap", "15"]) == 0
    pd.testing.assert_frame_equal(pd.read_hdf(final), table, check_exact=True)
    _analyze(multi_model, video, tmp_path / "raw", "--no-tracking")
    raw = load_poses(tmp_path / "raw" / final.name)  # each frame's animals in the order found
    np.testing.assert_array_equal(raw.coords, load_poses(detections_path(final)).coords)
    assert main(["track", str(multi_model), str(detections_path(final)), "--colour-weight", "-1"]) == 2
    assert main(["track", str(multi_model), str(detections_path(final)), "--colour-weight", "0"]) == 0
    assert load_meta(final)["tracking"]["settings"]["colour_weight"] == 0


_TERM_AFTER_FIRST_FLUSH = r"""
import os, signal, sys
from posezoo.runtime import video
from posezoo.runtime.io import writer
video.FLUSH_FRAMES = 32
append = writer.ResultsWriter.append
def append_then_term(self, chunk):  # a scheduler's SIGTERM once the first rows are on disk
    append(self, chunk)
    if not getattr(writer, "_sent", False):
        writer._sent = True
        os.kill(os.getpid(), signal.SIGTERM)
writer.ResultsWriter.append = append_then_term
from posezoo.runtime.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_interrupted_and_chunked_analyses_equal_an_uninterrupted_one(multi_model, video, tmp_path):
    whole = _analyze(multi_model, video, tmp_path / "whole")
    stopped = subprocess.run([sys.executable, "-c", _TERM_AFTER_FIRST_FLUSH, "analyze", str(multi_model), str(video),
                              "--output-dir", str(tmp_path / "stopped"), "-q", "--no-body-check"],
                             capture_output=True, text=True)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    resumed = _analyze(multi_model, video, tmp_path / "stopped")
    assert load_meta(detections_path(resumed))["resumed_from_frame"] > 0
    assert load_meta(resumed)["tracking"]["colours"] is True  # the colours resumed with the detections
    pd.testing.assert_frame_equal(pd.read_hdf(resumed), pd.read_hdf(whole), check_exact=True)
    chunked = _analyze(multi_model, video, tmp_path / "chunked", "--chunk-frames", "48")
    pd.testing.assert_frame_equal(pd.read_hdf(chunked), pd.read_hdf(whole), check_exact=True)
    assert json.loads(Path(str(whole).replace(".h5", "_meta.json")).read_text())["tracking"]["individuals"] == \
        ["mouse1", "mouse2", "mouse3"]


def test_label_video_colours_individuals_and_plot_draws_their_paths(multi_model, video, tmp_path, capsys):
    import cv2

    final = _analyze(multi_model, video, tmp_path)
    out = tmp_path / "labeled.avi"
    assert main(["label-video", str(final), str(video), "-o", str(out), "--codec", "MJPG", "--trail", "20",
                 "--pcutoff", "0", "-q"]) == 0
    cap = cv2.VideoCapture(str(out))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert n == 160
    assert main(["plot", str(final), "--output-dir", str(tmp_path / "plots"), "--pcutoff", "0"]) == 0
    assert (tmp_path / "plots" / "trajectory.png").stat().st_size > 5000
    capsys.readouterr()
