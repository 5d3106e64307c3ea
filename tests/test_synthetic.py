"""The synthetic DeepLabCut project: complete, readable, deterministic, and drawn where labeled."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from posezoo.runtime.io import load_poses
from posezoo.training.project import load_project, read_rgb
from posezoo.training.synthetic import (
    SUPPORTED_BODYPARTS,
    VIDEO_NAME,
    Pose,
    _geometry,
    _mask,
    load_video_truth,
    make_project,
)

W, H = 320, 240
N_FRAMES, VIDEO_FRAMES = 16, 45


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("synth") / "proj", n_frames=N_FRAMES,
                        video_frames=VIDEO_FRAMES, seed=3)


def _labels(root: Path) -> np.ndarray:
    """(N, K, 2) straight from the .h5 with pandas, independent of posezoo's readers."""
    df = pd.read_hdf(next((root / "labeled-data" / VIDEO_NAME).glob("CollectedData_*.h5")))
    return df.to_numpy().reshape(len(df), -1, 2)


def _video_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_config_is_a_dlc_config(project: Path) -> None:
    cfg = yaml.safe_load((project / "config.yaml").read_text())
    assert cfg["Task"] == "synthetic" and cfg["scorer"] == "synthetic"
    assert cfg["multianimalproject"] is False
    assert cfg["bodyparts"] == ["snout", "leftear", "rightear", "tailbase"]
    assert ["snout", "leftear"] in cfg["skeleton"] and ["rightear", "tailbase"] in cfg["skeleton"]
    assert cfg["pcutoff"] == 0.6 and cfg["TrainingFraction"] == [0.95]
    assert Path(cfg["project_path"]) == project
    video = project / "videos" / f"{VIDEO_NAME}.mp4"
    assert cfg["video_sets"] == {str(video): {"crop": f"0, {W}, 0, {H}"}}
    for key in ("date", "iteration", "default_net_type", "snapshotindex", "batch_size", "start",
                "stop", "numframes2pick", "cropping", "x1", "x2", "y1", "y2", "engine"):
        assert key in cfg, key


def test_reads_back_through_load_project(project: Path) -> None:
    p = load_project(project)
    assert len(p) == N_FRAMES
    assert p.keypoints == ["snout", "leftear", "rightear", "tailbase"]
    assert p.images == [f"labeled-data/{VIDEO_NAME}/img{i:04d}.png" for i in range(N_FRAMES)]
    np.testing.assert_array_equal(p.labels.xy[:, 0], _labels(project))
    assert not np.isnan(p.labels.xy[:, 0]).any()
    assert p.pcutoff == 0.6 and p.config.training_fraction == 0.95
    # The .csv copy holds the same labels as the .h5.
    csv = load_poses(project / "labeled-data" / VIDEO_NAME / "CollectedData_synthetic.csv")
    np.testing.assert_allclose(csv.xy[:, 0], p.labels.xy[:, 0], rtol=0, atol=1e-9)
    image = p.load_image(0)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8


def test_same_seed_same_project_other_seed_differs(project: Path, tmp_path: Path) -> None:
    again = make_project(tmp_path / "again", n_frames=N_FRAMES, video_frames=VIDEO_FRAMES, seed=3)
    other = make_project(tmp_path / "other", n_frames=N_FRAMES, video_frames=VIDEO_FRAMES, seed=4)
    np.testing.assert_array_equal(_labels(again), _labels(project))
    np.testing.assert_array_equal(load_video_truth(again).xy[:, 0], load_video_truth(project).xy[:, 0])
    first = f"labeled-data/{VIDEO_NAME}/img0003.png"
    np.testing.assert_array_equal(read_rgb(again / first), read_rgb(project / first))
    np.testing.assert_array_equal(_video_frames(again / "videos" / f"{VIDEO_NAME}.mp4")[10],
                                  _video_frames(project / "videos" / f"{VIDEO_NAME}.mp4")[10])
    assert np.abs(_labels(other) - _labels(project)).min() > 0
    assert np.abs(load_video_truth(other).xy[:, 0] - load_video_truth(project).xy[:, 0]).mean() > 5
    assert not np.array_equal(read_rgb(other / first), read_rgb(project / first))


def test_frame_i_does_not_depend_on_n_frames(project: Path, tmp_path: Path) -> None:
    fewer = make_project(tmp_path / "fewer", n_frames=5, video_frames=3, seed=3)
    np.testing.assert_array_equal(_labels(fewer), _labels(project)[:5])


def test_video_opens_with_right_size_count_and_smooth_truth(project: Path) -> None:
    video = project / "videos" / f"{VIDEO_NAME}.mp4"
    cap = cv2.VideoCapture(str(video))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30)
    cap.release()
    frames = _video_frames(video)
    assert len(frames) == VIDEO_FRAMES
    assert all(f.shape == (H, W, 3) for f in frames)
    truth = load_video_truth(project).xy[:, 0]
    assert truth.shape == (VIDEO_FRAMES, 4, 2)
    step = np.linalg.norm(np.diff(truth, axis=0), axis=-1)
    assert step.max() < 8.0 and step.mean() > 0.2  # it moves, smoothly
    # The truth file is in DeepLabCut's results layout with likelihood 1.
    df = pd.read_hdf(project / "videos" / f"{VIDEO_NAME}_truth.h5", key="df_with_missing")
    assert list(df.columns.names) == ["scorer", "bodyparts", "coords"]
    assert (df.xs("likelihood", axis=1, level="coords").to_numpy() == 1.0).all()


def test_video_shows_the_animal_at_the_truth(project: Path) -> None:
    frames = _video_frames(project / "videos" / f"{VIDEO_NAME}.mp4")
    truth = load_video_truth(project).xy[:, 0]
    for t in (0, VIDEO_FRAMES // 2, VIDEO_FRAMES - 1):
        bgr = frames[t].astype(float)
        floor = np.median(bgr.reshape(-1, 3), axis=0)
        x, y = np.round(truth[t, 3]).astype(int)  # tail base: dark fur/tail on a light floor
        assert bgr[y, x].mean() < floor.mean() - 40
        for k in (0, 1, 2):  # snout and ears are pink: red (BGR index 2) well above green
            x, y = np.round(truth[t, k]).astype(int)
            assert (bgr[y, x, 2] - bgr[y, x, 1]) - (floor[2] - floor[1]) > 15


def test_keypoints_inside_images(project: Path) -> None:
    for xy in (_labels(project), load_video_truth(project).xy[:, 0]):
        assert (xy[..., 0] >= 0).all() and (xy[..., 0] <= W - 1).all()
        assert (xy[..., 1] >= 0).all() and (xy[..., 1] <= H - 1).all()


def test_labeled_parts_are_drawn_at_their_labels(project: Path) -> None:
    p = load_project(project)
    for i in range(len(p)):
        rgb = p.load_image(i).astype(float)
        floor = np.median(rgb.reshape(-1, 3), axis=0)
        for k, name in enumerate(p.keypoints):
            x, y = np.round(p.labels.xy[:, 0][i, k]).astype(int)
            pixel = rgb[y, x]
            assert np.abs(pixel - floor).max() > 25, (i, name)
            if name == "tailbase":
                assert pixel.mean() < floor.mean() - 40, (i, name)
            else:  # pink nose and ears on a grey floor and dark fur
                assert (pixel[0] - pixel[1]) - (floor[0] - floor[1]) > 20, (i, name)


def test_left_ear_is_on_the_animals_left(project: Path) -> None:
    # Seen from above with y pointing down, the left of heading (dx, dy) is (dy, -dx).
    for xy in (_labels(project), load_video_truth(project).xy[:, 0]):
        heading = xy[:, 0] - xy[:, 3]  # tail base -> snout
        left = np.stack([heading[:, 1], -heading[:, 0]], axis=1)
        assert (np.sum((xy[:, 1] - xy[:, 2]) * left, axis=1) > 0).all()


def test_headings_cover_all_directions(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", n_frames=60, video_frames=2, seed=1)
    heading = _labels(root)[:, 0] - _labels(root)[:, 3]
    angles = np.arctan2(heading[:, 1], heading[:, 0])
    assert (np.histogram(angles, bins=4, range=(-np.pi, np.pi))[0] > 0).all()
    length = np.linalg.norm(heading, axis=1)
    assert length.max() / length.min() > 1.15  # size varies


def test_shapes_sit_exactly_on_keypoints() -> None:
    """Sub-pixel: the nose and ear disks are centred on snout/ear keypoints (pixel centres)."""
    pose = Pose(x=100.3, y=80.7, heading=0.7, bend=0.3, head_turn=-0.2, scale=60.0,
                tail_amp=0.5, tail_phase=1.0)
    keypoints, shapes = _geometry(pose)
    ys, xs = np.mgrid[0:200, 0:200]
    for shape, names in (("nose", ["snout"]), ("ear", ["leftear", "rightear"])):
        for poly, name in zip(shapes[shape], names):
            cover = _mask((200, 200), [poly], np.zeros(2))[..., 0]
            centroid = np.array([(cover * xs).sum(), (cover * ys).sum()]) / cover.sum()
            np.testing.assert_allclose(centroid, keypoints[name], atol=0.1)
    # The tail starts at the tail base, which is the rear tip of the body outline.
    body = shapes["fur"][0]
    assert np.linalg.norm(body - keypoints["tailbase"], axis=1).min() < 1e-6
    tail = shapes["tail"][0]  # a band: point 1 of one side and its mirror on the other side
    np.testing.assert_allclose((tail[1] + tail[-2]) / 2, keypoints["tailbase"])


def test_sizes_vary_and_unlabeled(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", n_frames=9, video_frames=2, seed=2, sizes_vary=True,
                        unlabeled_prob=0.3)
    p = load_project(root)
    sizes = {p.load_image(i).shape for i in range(len(p))}
    assert len(sizes) == 3 and (H, W, 3) in sizes
    missing = np.isnan(p.labels.xy[:, 0][..., 0])
    assert missing.any() and not missing.all()
    assert (np.isnan(p.labels.xy[:, 0][..., 0]) == np.isnan(p.labels.xy[:, 0][..., 1])).all()
    for i in range(len(p)):
        h, w = p.load_image(i).shape[:2]
        xy = p.labels.xy[:, 0][i][~missing[i]]
        assert (xy >= 0).all() and (xy[:, 0] <= w - 1).all() and (xy[:, 1] <= h - 1).all()


def test_other_bodyparts(tmp_path: Path) -> None:
    parts = ("snout", "neck", "bodycenter", "tailbase", "tailend")
    root = make_project(tmp_path / "p", n_frames=8, video_frames=5, seed=5, bodyparts=parts,
                        scorer="me", task="mice")
    p = load_project(root)
    assert p.keypoints == list(parts) and p.config.scorer == "me"
    assert (p.labels.xy[:, 0] >= 0).all() and (p.labels.xy[:, 0][..., 0] <= W - 1).all()
    assert (p.labels.xy[:, 0][..., 1] <= H - 1).all()
    assert load_video_truth(root).xy[:, 0].shape == (5, 5, 2)
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    assert ["snout", "leftear"] not in cfg["skeleton"] and ["neck", "bodycenter"] in cfg["skeleton"]


def test_overwrite_replaces_the_project(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", n_frames=5, video_frames=4, seed=1)
    make_project(root, n_frames=3, video_frames=6, seed=2, overwrite=True)
    pngs = sorted(f.name for f in (root / "labeled-data" / VIDEO_NAME).glob("*.png"))
    assert pngs == ["img0000.png", "img0001.png", "img0002.png"]
    assert len(load_project(root)) == 3 and load_video_truth(root).xy[:, 0].shape == (6, 4, 2)
    assert not list(root.rglob(".*"))  # no temporary files left behind


def test_bad_arguments(tmp_path: Path, project: Path) -> None:
    with pytest.raises(ValueError, match="paw"):
        make_project(tmp_path / "a", bodyparts=("snout", "paw"))
    with pytest.raises(ValueError, match="image_size"):
        make_project(tmp_path / "b", image_size=(80, 40))
    # The smallest accepted size still keeps every supported keypoint inside the image.
    small = make_project(tmp_path / "c", image_size=(64, 64), n_frames=4, video_frames=20,
                         bodyparts=SUPPORTED_BODYPARTS)
    xy = np.concatenate([_labels(small), load_video_truth(small).xy[:, 0]])
    assert (xy >= 0).all() and (xy <= 63).all()
    with pytest.raises(FileExistsError, match="config.yaml"):
        make_project(project, n_frames=1, video_frames=1)
    with pytest.raises(FileNotFoundError, match="ground truth"):
        load_video_truth(tmp_path).xy[:, 0]


@pytest.mark.slow
def test_default_project_is_fast(tmp_path: Path) -> None:
    start = time.perf_counter()
    make_project(tmp_path / "p")
    assert time.perf_counter() - start < 15.0  # about 3 s on 2 busy cores
