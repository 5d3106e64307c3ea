"""DeepLabCut project reader and train/test splits, on the real openfield project and small
projects built in tmp_path (real PNGs, real HDF5/CSV tables)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from posezoo.training.project import (
    ProjectError,
    Split,
    benchmark_test_indices,
    load_project,
    make_split,
)

# ----------------------------------------------------------------------------- openfield


def test_openfield(openfield_dir: Path) -> None:
    p = load_project(openfield_dir)
    assert len(p.images) == 116 and p.labels.xy[:, 0].shape == (116, 4, 2)
    assert p.keypoints == ["snout", "leftear", "rightear", "tailbase"]
    assert p.config.scorer == "Pranav" and p.labels.skeleton == [] and p.pcutoff == 0.4
    assert p.config.training_fraction == 0.95
    assert p.images[0] == "labeled-data/m4s1/img0000.png" and p.images == sorted(p.images)
    np.testing.assert_allclose(p.labels.xy[:, 0][0, 0], [21.521, 265.428])
    # every value equals the raw DLC table (read by pandas alone) in config order
    raw = pd.read_hdf(openfield_dir / "labeled-data/m4s1/CollectedData_Pranav.h5")["Pranav"]
    np.testing.assert_array_equal(p.labels.xy[:, 0].reshape(116, -1), raw.to_numpy())
    img = p.load_image(5)
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8
    assert p.image_path(5) == openfield_dir.resolve() / "labeled-data/m4s1/img0005.png"
    split = make_split(len(p), test_indices=benchmark_test_indices(len(p)))
    assert len(split.test) == 23 and len(split.train) == 93 and split.test[:3] == [4, 9, 14]
    assert load_project(openfield_dir / "config.yaml").images == p.images


def test_openfield_image_is_rgb(openfield_dir: Path) -> None:
    p = load_project(openfield_dir)
    bgr = cv2.imread(str(p.image_path(0)))
    np.testing.assert_array_equal(p.load_image(0), bgr[:, :, ::-1])


# ----------------------------------------------------------------------------- tmp projects

BODYPARTS = ["nose", "left", "right"]


def _write_png(path: Path, w: int, h: int, value: int) -> None:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = value  # blue channel in OpenCV's BGR order
    img[0, 0] = (0, 0, 255)  # a red pixel
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def _table(folder: str, files: list[str], parts: list[str], scorer: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols = pd.MultiIndex.from_product([[scorer], parts, ["x", "y"]],
                                      names=["scorer", "bodyparts", "coords"])
    values = rng.uniform(1, 30, size=(len(files), len(parts) * 2))
    values[0, :2] = np.nan
    return pd.DataFrame(values, columns=cols,
                        index=[f"labeled-data/{folder}/{f}" for f in files])


def _make_project(root: Path, **config: object) -> Path:
    """Three folders: 'a-b' (h5, other column order), 'a' (csv only), 'c' (3-level index, fixed
    format, larger frames); plus an unlabeled folder and DLC's '_labeled' plot folder."""
    cfg = {"Task": "t", "scorer": "Ann", "bodyparts": BODYPARTS, "skeleton": [["nose", "left"], ["nose", "right"]],
           "pcutoff": 0.5, "TrainingFraction": [0.8], "project_path": "/stale/path",
           "video_sets": {"C:\\stale\\video.avi": {"crop": "0, 64, 0, 48"}}}
    cfg.update(config)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    ld = root / "labeled-data"
    # folder 'a-b': bodyparts in another order than the config, legacy index, table format
    files_ab = ["img2.png", "img1.png"]
    for i, f in enumerate(files_ab):
        _write_png(ld / "a-b" / f, 32, 24, 10 + i)
    _table("a-b", files_ab, ["right", "nose", "left"], "Ann", 1).to_hdf(
        ld / "a-b" / "CollectedData_Ann.h5", key="df_with_missing", format="table", mode="w")
    # folder 'a': only a csv
    files_a = ["img7.png", "img3.png"]
    for i, f in enumerate(files_a):
        _write_png(ld / "a" / f, 32, 24, 20 + i)
    _table("a", files_a, BODYPARTS, "Ann", 2).to_csv(ld / "a" / "CollectedData_Ann.csv")
    # folder 'c': 3-level row index, fixed format, 48x40 frames
    files_c = ["img0.png"]
    _write_png(ld / "c" / "img0.png", 48, 40, 30)
    df = _table("c", files_c, BODYPARTS, "Ann", 3)
    df.index = pd.MultiIndex.from_tuples([tuple(i.split("/")) for i in df.index])
    df.to_hdf(ld / "c" / "CollectedData_Ann.h5", key="df_with_missing", mode="w")
    _write_png(ld / "unlabeled" / "img0.png", 32, 24, 0)
    _write_png(ld / "a_labeled" / "img7.png", 32, 24, 0)
    return root


def test_tmp_project_reads_all_folders(tmp_path: Path) -> None:
    root = _make_project(tmp_path / "proj")
    p = load_project(root)
    # DLC sorts the merged table by the ('labeled-data', folder, file) tuple: 'a' < 'a-b' < 'c'
    # (a plain string sort would put 'labeled-data/a-b/...' before 'labeled-data/a/...').
    assert p.images == ["labeled-data/a/img3.png", "labeled-data/a/img7.png",
                        "labeled-data/a-b/img1.png", "labeled-data/a-b/img2.png",
                        "labeled-data/c/img0.png"]
    assert p.keypoints == BODYPARTS and p.labels.skeleton == [("nose", "left"), ("nose", "right")]
    assert p.pcutoff == 0.5 and p.config.training_fraction == 0.8
    assert p.labels.xy[:, 0].shape == (5, 3, 2)
    # reordered to config order: folder a-b was written as right, nose, left
    ab = _table("a-b", ["img2.png", "img1.png"], ["right", "nose", "left"], "Ann", 1)["Ann"]
    np.testing.assert_array_equal(p.labels.xy[:, 0][3, 0], ab.loc["labeled-data/a-b/img2.png", "nose"])
    np.testing.assert_array_equal(p.labels.xy[:, 0][2, 2], ab.loc["labeled-data/a-b/img1.png", "right"])
    assert np.isnan(p.labels.xy[:, 0][3, 2]).all()  # 'right' of img2 was NaN in the written table
    assert np.isnan(p.labels.xy[:, 0][1, 0]).all()  # img7 was the first row of folder a: NaN labels
    a = _table("a", ["img7.png", "img3.png"], BODYPARTS, "Ann", 2)["Ann"]
    np.testing.assert_allclose(p.labels.xy[:, 0][0].ravel(), a.loc["labeled-data/a/img3.png"].to_numpy())
    # frames of different sizes, RGB order
    big, small = p.load_image(4), p.load_image(0)
    assert big.shape == (40, 48, 3) and small.shape == (24, 32, 3)
    assert tuple(small[0, 0]) == (255, 0, 0) and small[5, 5, 2] == 21  # B=21 in BGR -> channel 2


def test_errors_name_file_and_problem(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match=r"config\.yaml not found"):
        load_project(tmp_path / "nothing")

    root = _make_project(tmp_path / "p1")
    (root / "config.yaml").write_text("bodyparts: [a, b\nscorer: x: y")
    with pytest.raises(ProjectError, match=r"p1/config\.yaml: not valid YAML"):
        load_project(root)

    root = _make_project(tmp_path / "p2", bodyparts=None)
    with pytest.raises(ProjectError, match=r"p2/config\.yaml: 'bodyparts' must be a non-empty list"):
        load_project(root)

    root = _make_project(tmp_path / "p3", multianimalproject=True)
    with pytest.raises(ProjectError, match=r"p3/config\.yaml: 'multianimalbodyparts' must be a non-empty list"):
        load_project(root)

    root = _make_project(tmp_path / "p4", scorer="Bob")
    with pytest.raises(ProjectError, match=r"no labeled data found.*CollectedData_Bob.*different scorer"):
        load_project(root)

    root = _make_project(tmp_path / "p5")
    (root / "labeled-data/a-b/img1.png").unlink()
    (root / "labeled-data/c/img0.png").unlink()
    with pytest.raises(ProjectError, match=r"2 labeled image\(s\) missing.*a-b/img1\.png.*c/img0\.png"):
        load_project(root)
    assert len(load_project(root, check_images=False).images) == 5

    root = _make_project(tmp_path / "p6", bodyparts=["nose", "left", "right", "tail"])
    with pytest.raises(ProjectError, match=r"CollectedData_Ann\.(h5|csv).*missing bodyparts \['tail'\]"):
        load_project(root)

    root = _make_project(tmp_path / "p7", bodyparts=["nose", "left"], skeleton=[["nose", "left"]])
    with pytest.raises(ProjectError, match=r"not in the requested list \['right'\]"):
        load_project(root)

    root = _make_project(tmp_path / "p8", skeleton=[["nose", "paw"]])
    with pytest.raises(ProjectError, match=r"skeleton entry \['nose', 'paw'\] names unknown bodyparts \['paw'\]"):
        load_project(root)

    root = _make_project(tmp_path / "p9")
    bad = root / "labeled-data/a/img3.png"
    bad.write_bytes(b"not a png")
    p = load_project(root)
    with pytest.raises(ProjectError, match=r"img3\.png: not a readable image"):
        p.load_image(0)

    root = tmp_path / "p10"
    root.mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump({"scorer": "A", "bodyparts": ["a"]}))
    with pytest.raises(ProjectError, match=r"no labeled data.*labeled-data does not exist"):
        load_project(root)

    root = _make_project(tmp_path / "p11")
    ma = pd.read_hdf(root / "labeled-data/c/CollectedData_Ann.h5")
    ma.columns = pd.MultiIndex.from_tuples([(s, "m1", b, c) for s, b, c in ma.columns],
                                           names=["scorer", "individuals", "bodyparts", "coords"])
    ma.to_hdf(root / "labeled-data/c/CollectedData_Ann.h5", key="df_with_missing", mode="w")
    with pytest.raises(ProjectError, match=r"c/CollectedData_Ann\.h5: multi-animal table"):
        load_project(root)


# ----------------------------------------------------------------------------- split


def test_split_random_is_seeded_and_deterministic() -> None:
    a, b, c = make_split(116, train_fraction=0.95, seed=0), make_split(116, train_fraction=0.95, seed=0), make_split(116, train_fraction=0.95, seed=1)
    assert a == b and a.train != c.train
    assert len(a.train) == 110 and len(a.test) == 6  # floor(116 * 0.95) train frames, like DLC
    assert sorted(a.train + a.test) == list(range(116)) and a.method == "random"


def test_split_explicit_and_save_load(tmp_path: Path) -> None:
    s = make_split(10, test_indices=[9, 4])
    assert s.test == [4, 9] and s.train == [0, 1, 2, 3, 5, 6, 7, 8] and s.method == "explicit"
    path = s.save(tmp_path / "run" / "split.json")
    assert json.loads(path.read_text())["n"] == 10
    assert Split.load(path) == s
    with pytest.raises(ValueError, match="out of range"):
        make_split(10, test_indices=[10])
    with pytest.raises(ValueError, match="exactly one"):
        make_split(10)
    with pytest.raises(ValueError, match="duplicates"):
        make_split(10, test_indices=[1, 1])
    with pytest.raises(ValueError, match="no training frame"):
        make_split(10, test_indices=range(10))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json: not a JSON split"):
        Split.load(tmp_path / "bad.json")
    (tmp_path / "overlap.json").write_text(json.dumps({"train": [1, 2], "test": [2], "method": "x"}))
    with pytest.raises(ValueError, match=r"overlap\.json: train and test indices overlap"):
        Split.load(tmp_path / "overlap.json")
    assert benchmark_test_indices(116) == [i for i in range(116) if i % 5 == 4]


def test_stale_or_windows_row_index_maps_to_the_tables_folder(tmp_path: Path) -> None:
    # Folders get renamed and projects labeled on Windows carry backslash paths; the images are
    # always beside their CollectedData file, which is where the reader looks.
    root = _make_project(tmp_path / "p")
    csv = root / "labeled-data/a/CollectedData_Ann.csv"
    df = pd.read_csv(csv, header=[0, 1, 2], index_col=0)
    df.index = [i.replace("labeled-data/a/", "labeled-data\\old-name\\") for i in df.index]
    df.to_csv(csv)
    p = load_project(root)
    assert p.images[:2] == ["labeled-data/a/img3.png", "labeled-data/a/img7.png"]
    assert p.load_image(1).shape == (24, 32, 3)
