"""The model shipped inside the package: listed and usable with no network and an empty cache."""
from __future__ import annotations

import numpy as np
import pytest

from posezoo.runtime import PoseModel
from posezoo.runtime.video import analyze_video
from posezoo.runtime.io import load_poses


@pytest.fixture()
def offline_home(tmp_path, monkeypatch):
    monkeypatch.setenv("POSEZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("POSEZOO_OFFLINE", "1")
    monkeypatch.delenv("POSEZOO_ZOO", raising=False)
    return tmp_path


def test_builtin_model_is_listed_and_tracks_a_new_synthetic_video(offline_home):
    from posezoo.training.synthetic import load_video_truth, make_project
    from posezoo.zoo import load_catalogue

    names = {(e.name, e.version) for e in load_catalogue().entries}
    assert ("synthetic-mouse", "1.0.0") in names
    model = PoseModel.load("zoo:synthetic-mouse", device="cpu")
    assert model.keypoints == ["snout", "leftear", "rightear", "tailbase"]
    assert model.path.stat().st_size < 4_000_000  # "a few MB at most"
    # A session the model never saw (another seed), analysed end to end.
    project = make_project(offline_home / "unseen", n_frames=4, video_frames=60, seed=7)
    h5 = analyze_video(model, project / "videos" / "mouse1.mp4", offline_home / "out", progress=False)
    error = np.linalg.norm(load_poses(h5).xy - load_video_truth(project).xy, axis=-1)
    assert np.nanmean(error) < 3.0, np.nanmean(error)
