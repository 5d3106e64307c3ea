"""Shared fixtures: the real openfield project (skipped when ../shared/data is absent)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OPENFIELD = REPO.parent / "shared" / "data" / "openfield"


@pytest.fixture(scope="session")
def openfield_dir() -> Path:
    if not (OPENFIELD / "config.yaml").is_file():
        pytest.skip(f"real data not found at {OPENFIELD} (the ../shared/data folder is absent)")
    return OPENFIELD


@pytest.fixture(scope="session")
def synthetic_project(tmp_path_factory) -> Path:
    """A small synthetic DeepLabCut project (with a video and its ground truth)."""
    from posezoo.training.synthetic import make_project

    return make_project(tmp_path_factory.mktemp("synthetic") / "project", n_frames=48, video_frames=60,
                        image_size=(192, 160), seed=1)


TINY_TRAIN = {"model": "lite", "epochs": 12, "batch_size": 8, "eval_every": 6, "scale": 1.0,
              "input.train_size": [128, 128], "split.test_indices": list(range(4, 48, 8))}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synthetic_project) -> Path:
    """A briefly trained torch run on the synthetic project (shared: training is the slow part)."""
    pytest.importorskip("torch")
    from posezoo.training.api import train

    return train(synthetic_project, backend="torch", output=tmp_path_factory.mktemp("runs") / "tiny",
                 progress=False, **TINY_TRAIN)


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory, trained_run) -> Path:
    from posezoo.export import export

    out = tmp_path_factory.mktemp("export") / "tiny.onnx"
    return export(trained_run, out, progress=lambda _msg: None).path


MULTI_TRAIN = {"model": "lite", "epochs": 2, "batch_size": 4, "eval_every": 2, "scale": 1.0,
               "input.train_size": [96, 96], "split.test_indices": [0, 5]}


# --- fixtures: one small project, one briefly trained run and its export (shared) ---------------

@pytest.fixture(scope="session")
def multi_project(tmp_path_factory) -> Path:
    """3 mice, a unique keypoint, napari-deeplabcut's HDF key, some frames with 2 mice."""
    from posezoo.training.synthetic_multi import make_multi_project

    return make_multi_project(tmp_path_factory.mktemp("multi") / "project", animals=3, n_frames=12,
                              video_frames=12, image_size=(192, 160), unique=True, hdf_key="keypoints",
                              fewer_prob=0.3, seed=3)


@pytest.fixture(scope="session")
def multi_run(tmp_path_factory, multi_project) -> Path:
    pytest.importorskip("torch")
    from posezoo.training.api import train

    return train(multi_project, backend="torch", output=tmp_path_factory.mktemp("runs") / "multi", progress=False,
                 **MULTI_TRAIN)


@pytest.fixture(scope="session")
def multi_model(tmp_path_factory, multi_run) -> Path:
    from posezoo.export import export

    return export(multi_run, tmp_path_factory.mktemp("export") / "multi.onnx", progress=lambda _m: None).path
