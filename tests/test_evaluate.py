"""`posezoo evaluate` and runtime.evaluate on a real (small) DeepLabCut project on disk."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from onnx_models import CHANNELS, make_pose_onnx, paint_dots
from posezoo.runtime import PoseModel
from posezoo.runtime.cli import main
from posezoo.runtime.evaluate import evaluate_model, format_metrics, predict_images
from posezoo.runtime.io import save_poses
from posezoo.runtime.poses import Poses

SHIFT = np.array([3.0, 4.0])  # labels sit 3 px right and 4 px below the dots: every error is 5 px


def _labels(xy: np.ndarray, keypoints: list[str] = list(CHANNELS), images: list[str] | None = None) -> Poses:
    """(n, K, 2) positions as labels of one unnamed animal."""
    coords = np.concatenate([xy, np.where(np.isfinite(xy[..., :1]), 1.0, np.nan)], axis=-1)[:, None]
    return Poses(coords, keypoints, images=images, scorer="me", kind="labels")


def _dots(n: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """BGR frames with one red, green and blue pixel each, and their (n, 3, 2) positions."""
    rng = np.random.default_rng(seed)
    frames, truth = [], np.zeros((n, 3, 2))
    for i in range(n):
        xs = rng.choice(np.arange(2, 60), 3, replace=False)
        pts = {c: (int(x), int(rng.integers(2, 40))) for c, x in zip(CHANNELS, xs)}
        frames.append(paint_dots(np.full((48, 64, 3), 30, np.uint8), pts))
        truth[i] = list(pts.values())
    return frames, truth


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A single-animal DLC project (config.yaml + labeled-data/cam1 PNGs + CollectedData)."""
    root = tmp_path_factory.mktemp("proj")
    frames, truth = _dots(10)
    folder = root / "labeled-data" / "cam1"
    folder.mkdir(parents=True)
    images = []
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"img{i:03d}.png"), frame)
        images.append(f"labeled-data/cam1/img{i:03d}.png")
    labels = truth + SHIFT
    labels[2, 1] = np.nan  # one unlabeled keypoint
    save_poses(_labels(labels, images=images), folder / "CollectedData_me.h5")
    config = {"Task": "dots", "scorer": "me", "bodyparts": list(CHANNELS), "skeleton": [["red", "green"]],
              "pcutoff": 0.5, "TrainingFraction": [0.8], "multianimalproject": False}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root, labels


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return make_pose_onnx(tmp_path_factory.mktemp("m") / "bp.onnx")


def test_evaluate_model_exact_and_shifted(model_path):
    model = PoseModel.load(model_path, device="cpu")
    frames, truth = _dots(6, seed=3)
    rgb = [f[..., ::-1].copy() for f in frames]
    perfect, _ = evaluate_model(model, rgb, _labels(truth), batch_size=4)
    assert perfect["rmse"] == 0.0 and perfect["mAP"] == pytest.approx(100.0) and perfect["mAR"] == pytest.approx(100.0)
    shifted, pred = evaluate_model(model, iter(frames), _labels(truth + SHIFT), color="bgr")
    np.testing.assert_array_equal(pred.xy[:, 0], truth)
    assert shifted["rmse"] == pytest.approx(5.0) and shifted["per_keypoint_rmse"] == pytest.approx([5.0] * 3)
    assert shifted["pcutoff"] == model.spec.pcutoff and shifted["keypoints"] == list(CHANNELS)
    # RGB frames fed as BGR swap red and blue: the colour order really reaches the model.
    assert evaluate_model(model, rgb, _labels(truth), color="bgr")[0]["per_keypoint_rmse"][0] > 5
    np.testing.assert_array_equal(predict_images(model, frames, color="bgr", batch_size=5).xy[:, 0], truth)
    with pytest.raises(ValueError, match=r"6 predicted frames for 4 labeled ones"):
        evaluate_model(model, rgb, _labels(truth[:4]))
    with pytest.raises(ValueError, match=r"no keypoints \['nose'\]"):
        evaluate_model(model, rgb, _labels(truth[:, :2], ["red", "nose"]))
    text = format_metrics(shifted, model.keypoints)
    assert "RMSE 5.00 px" in text and "mAP" in text
    assert [line.split()[:2] for line in text.splitlines()[-3:]] == [["red", "5.00"], ["green", "5.00"], ["blue", "5.00"]]


def test_cli_evaluate_all_frames_with_json_and_pictures(model_path, project, tmp_path, capsys):
    root, labels = project
    out_json, frames_dir = tmp_path / "m.json", tmp_path / "frames"
    assert main(["evaluate", str(model_path), str(root), "--split", "all", "--json", str(out_json),
                 "--save-frames", str(frames_dir)]) == 0
    text = capsys.readouterr().out
    assert "RMSE 5.00 px" in text and "all split, 10 images" in text
    doc = json.loads(out_json.read_text())
    m = doc["metrics"]
    assert m["rmse"] == pytest.approx(5.0) and m["n_images"] == 10 and m["n_keypoints_labeled"] == 29
    assert m["pcutoff"] == 0.5 and doc["split"] == "all"
    saved = sorted(frames_dir.iterdir())
    assert len(saved) == 10 and saved[0].name == "labeled-data_cam1_img000.png"
    picture = cv2.imread(str(saved[0]))
    assert picture.shape == (48, 64, 3)
    x, y = labels[0, 0].astype(int)
    assert tuple(picture[y, x]) != (30, 30, 30)  # the label's "+" is drawn there


def test_cli_evaluate_splits(model_path, project, tmp_path, capsys):
    from posezoo.training.project import make_split

    root, _ = project
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": [0, 2, 4, 5, 6, 7, 8, 9], "test": [1, 3], "method": "explicit"}))
    out = tmp_path / "a.json"
    assert main(["evaluate", str(model_path), str(root), "--split-file", str(split_file), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["images"] == ["labeled-data/cam1/img001.png", "labeled-data/cam1/img003.png"]
    assert main(["evaluate", str(model_path), str(root / "config.yaml"), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    expected = make_split(10, train_fraction=0.8, seed=0).test
    assert doc["images"] == [f"labeled-data/cam1/img{i:03d}.png" for i in expected]
    assert "TrainingFraction 0.8, seed 0" in doc["split_source"]
    assert main(["evaluate", str(model_path), str(root), "--split", "train", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["n_images"] == 8
    capsys.readouterr()


def test_cli_evaluate_errors(model_path, project, tmp_path, capsys):
    root, _ = project
    assert main(["evaluate", str(model_path)]) == 2
    assert "one training run directory" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    cfg["bodyparts"] = ["red", "green", "nose"]
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["evaluate", str(model_path), str(other)]) == 2  # no labeled data there
    assert "labeled" in capsys.readouterr().err
    bad_split = tmp_path / "bad.json"
    bad_split.write_text(json.dumps({"train": [0], "test": [99], "method": "explicit"}))
    assert main(["evaluate", str(model_path), str(root), "--split-file", str(bad_split)]) == 2
    assert "outside the project's 10 images" in capsys.readouterr().err


def test_cli_evaluate_project_without_the_models_bodyparts(model_path, tmp_path, capsys):
    folder = tmp_path / "labeled-data" / "cam1"
    folder.mkdir(parents=True)
    frames, truth = _dots(2)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"img{i}.png"), frame)
    save_poses(_labels(truth[:, :2], ["red", "nose"], [f"labeled-data/cam1/img{i}.png" for i in range(2)]),
               folder / "CollectedData_me.h5")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"scorer": "me", "bodyparts": ["red", "nose"]}))
    assert main(["evaluate", str(model_path), str(tmp_path), "--split", "all"]) == 2
    err = capsys.readouterr().err
    assert "no bodyparts ['green', 'blue'] of model brightest-pixel" in err


def test_cli_evaluate_broken_run_directory(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    (run / "config.yaml").write_text("backend: torch\n")
    assert main(["evaluate", str(run)]) == 2  # recognised as a run, refused by the training API
    assert str(run) in capsys.readouterr().err


@pytest.mark.slow
def test_runtime_evaluation_of_an_export_matches_the_training_run(tmp_path, capsys):
    """Train 1 epoch, export, then `posezoo evaluate MODEL PROJECT --split-file run/split.json` must
    give the numbers the training backend computed (same spec, same split, same metrics module)."""
    pytest.importorskip("torch")
    from posezoo.export import export
    from posezoo.training.api import train
    from posezoo.training.synthetic import make_project

    project = make_project(tmp_path / "proj", n_frames=12, video_frames=10)
    run = train(project, backend="torch", output=tmp_path / "run", progress=False, epochs=1,
                model="resnet_slim", batch_size=4)
    onnx_path = export(run).path
    assert main(["evaluate", str(run), "--json", str(tmp_path / "run.json")]) == 0
    assert main(["evaluate", str(onnx_path), str(project), "--split-file", str(run / "split.json"),
                 "--json", str(tmp_path / "rt.json")]) == 0
    trained = json.loads((tmp_path / "run.json").read_text())["test"]
    runtime = json.loads((tmp_path / "rt.json").read_text())["metrics"]
    assert runtime["n_images"] == trained["n_images"] > 0
    assert runtime["rmse"] == pytest.approx(trained["rmse"], abs=1e-3)
    assert runtime["per_keypoint_rmse"] == pytest.approx(trained["per_keypoint_rmse"], abs=1e-3)
    assert "test split" in capsys.readouterr().out
