"""A synthetic multi-animal DeepLabCut project: several mice that touch, cross and hide each other.

The single-animal generator's mice (`training.synthetic`), drawn several to a frame over one
arena, in a DeepLabCut multi-animal project as DeepLabCut 2.2+ writes it: ``multianimalproject:
true``, ``individuals``, ``multianimalbodyparts``, optional ``uniquebodyparts`` (a food port
drawn in the arena, labelled under the individual ``single``) and ``identity``; 4-level
CollectedData tables. Labels are exact (computed from the drawn geometry). A keypoint hidden
under an animal drawn later is left unlabeled, as an annotator would leave it; some frames hold
fewer animals than ``individuals``. With ``identity`` every individual keeps its own fur colour
(the identity head can tell them apart); without it, each frame draws each animal's colours anew.

The video walks each animal on its own smooth trajectory, so they meet, cross and occlude each
other; ``videos/<name>_truth.h5`` holds every animal's true keypoints (NaN where hidden) under
its fixed individual name.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import yaml

from posezoo.runtime.files import write_bytes_atomic
from posezoo.runtime.io.dlc import write_dlc
from posezoo.runtime.poses import Poses

from .synthetic import (_EDGE, _SCALE_RANGE, SUPPORTED_BODYPARTS, Look, Pose, _arena, _camera,
                        _config_text, _look, _random_pose, _reach, _trajectory, _write_png, _write_video,
                        draw_animal, expose, load_video_truth)

VIDEO_NAME = "mice1"
DEFAULT_BODYPARTS = ("snout", "leftear", "rightear", "neck", "bodycenter", "tailbase")
UNIQUE_NAME = "port"  # the unique keypoint: a food port somewhere in the arena
_NOMINAL = 0.2  # body unit as a fraction of min(width, height): smaller mice than single-animal
_MIN_GAP = 0.5  # body centres at least this many body units apart: they touch, never stack
_PORT_R = 0.12  # port radius, body units
_IDENTITY_FUR = ((45.0, 42.0, 40.0), (120.0, 85.0, 55.0), (150.0, 150.0, 155.0), (90.0, 60.0, 80.0),
                 (60.0, 80.0, 110.0), (175.0, 160.0, 120.0))


def individual_names(n: int) -> list[str]:
    return [f"mouse{i + 1}" for i in range(n)]


def _looks(rng: np.random.Generator, n: int, identity: bool) -> list[Look]:
    looks = [_look(rng) for _ in range(n)]
    if identity:  # a fixed, distinct fur per individual
        looks = [replace(look, fur=np.asarray(_IDENTITY_FUR[i], np.float32)) for i, look in enumerate(looks)]
    return looks


def _place(rng: np.random.Generator, n: int, width: int, height: int, unit: float,
           margin: float) -> list[Pose]:
    """``n`` random postures whose body centres keep ``_MIN_GAP`` apart (they may touch)."""
    poses: list[Pose] = []
    for _ in range(200 * n):
        pose = _random_pose(rng, width, height, unit, margin)
        if all(math.hypot(pose.x - p.x, pose.y - p.y) >= _MIN_GAP * unit for p in poses):
            poses.append(pose)
            if len(poses) == n:
                return poses
    raise ValueError(f"cannot place {n} animals of {unit:.0f} px in a {width}x{height} frame; use fewer "
                     "animals or a larger image_size")


def _port(img: np.ndarray, xy: np.ndarray, unit: float) -> None:
    """A bright round food port with a dark rim, centred on ``xy`` (its keypoint)."""
    r = _PORT_R * unit
    centre = tuple(int(round(v * 16)) for v in xy)
    cv2.circle(img, centre, int(round(r * 16)), (40.0, 40.0, 45.0), -1, cv2.LINE_AA, 4)
    cv2.circle(img, centre, int(round(0.7 * r * 16)), (235.0, 225.0, 120.0), -1, cv2.LINE_AA, 4)


def _scene(background: np.ndarray, poses: list[Pose], looks: list[Look], bodyparts: tuple[str, ...],
           rng: np.random.Generator, port: np.ndarray | None, unit: float) -> tuple[np.ndarray, np.ndarray]:
    """Draw the animals in order over the background; their keypoints (A, K, 2), NaN where an
    animal drawn later covers the keypoint's pixel."""
    img = background.copy()
    if port is not None:
        _port(img, port, unit)
    coords = np.full((len(poses), len(bodyparts), 2), np.nan)
    covers = []
    for a, (pose, look) in enumerate(zip(poses, looks)):
        kps, cover = draw_animal(img, pose, look, rng)
        coords[a] = [kps[b] for b in bodyparts]
        covers.append(cover)
    for a in range(len(poses)):
        for origin, mask in covers[a + 1:]:
            px = np.round(np.nan_to_num(coords[a] - origin, nan=-1.0)).astype(int)
            inside = (px[:, 0] >= 0) & (px[:, 1] >= 0) & (px[:, 0] < mask.shape[1]) & (px[:, 1] < mask.shape[0])
            hidden = np.zeros(len(bodyparts), bool)
            hidden[inside] = mask[px[inside, 1], px[inside, 0]] > 0.5
            coords[a, hidden] = np.nan
    return img, coords


def _config(root: Path, task: str, scorer: str, bodyparts: tuple[str, ...], individuals: list[str],
            unique: list[str], identity: bool, video: Path, width: int, height: int) -> str:
    """The single-animal config.yaml turned multi-animal, as DeepLabCut's template lays it out."""
    text = _config_text(root, task, scorer, bodyparts, video, width, height)
    text = text.replace("multianimalproject: false", "multianimalproject: true")
    text = text.replace("identity: null", f"identity: {'true' if identity else 'false'}")
    multi = yaml.safe_dump({"individuals": individuals, "uniquebodyparts": unique,
                            "multianimalbodyparts": list(bodyparts), "bodyparts": "MULTI!"},
                           sort_keys=False, default_flow_style=False).rstrip("\n")
    start = text.index("bodyparts:\n")
    end = text.index("\n\n", start)
    return text[:start] + multi + text[end:]


def make_multi_project(root: str | os.PathLike, *, animals: int = 3, n_frames: int = 150, video_frames: int = 300,
                       image_size: tuple[int, int] = (640, 480), fps: float = 30, seed: int = 0,
                       bodyparts: tuple[str, ...] = DEFAULT_BODYPARTS, unique: bool = False,
                       identity: bool = False, fewer_prob: float = 0.1, scorer: str = "synthetic",
                       task: str = "synthetic-mice", hdf_key: str = "df_with_missing",
                       overwrite: bool = False) -> Path:
    """Write a complete multi-animal DeepLabCut project into ``root``; returns ``root``.

    Layout: config.yaml (``individuals`` mouse1..mouseN), labeled-data/mice1/imgNNNN.png +
    CollectedData_<scorer>.h5/.csv (4-level columns; HDF key ``hdf_key``, e.g. napari's
    ``keypoints``), videos/mice1.mp4 and videos/mice1_truth.h5. ``fewer_prob``: chance that a
    labeled frame holds one animal fewer. ``unique`` adds the unique bodypart ``port``.
    """
    root = Path(root).resolve()
    bodyparts = tuple(bodyparts)
    width, height = int(image_size[0]), int(image_size[1])
    unknown = [b for b in bodyparts if b not in SUPPORTED_BODYPARTS]
    if unknown or len(bodyparts) < 2 or len(set(bodyparts)) != len(bodyparts):
        raise ValueError(f"synthetic project {root}: bodyparts must be 2+ distinct names from {SUPPORTED_BODYPARTS}")
    if not 1 <= animals <= len(_IDENTITY_FUR):
        raise ValueError(f"synthetic project {root}: animals must be 1 to {len(_IDENTITY_FUR)}, got {animals}")
    if n_frames < 1 or video_frames < 1 or fps <= 0 or min(width, height) < 64 or not 0 <= fewer_prob < 1:
        raise ValueError(f"synthetic project {root}: need n_frames, video_frames >= 1, fps > 0, sides >= 64 "
                         "and 0 <= fewer_prob < 1")
    if (root / "config.yaml").exists() and not overwrite:
        raise FileExistsError(f"{root / 'config.yaml'} already exists (pass overwrite=True)")
    unit = _NOMINAL * min(width, height)
    margin = _reach(bodyparts) * unit * _SCALE_RANGE[1] + _EDGE
    names = individual_names(animals)
    uniq = [UNIQUE_NAME] if unique else []
    labeled_dir, video_dir = root / "labeled-data" / VIDEO_NAME, root / "videos"
    labeled_dir.mkdir(parents=True, exist_ok=True)
    video_dir.mkdir(parents=True, exist_ok=True)

    coords = np.full((n_frames, animals, len(bodyparts), 3), np.nan)
    port_xy = np.full((n_frames, len(uniq), 3), np.nan)
    images = []
    for i in range(n_frames):
        rng = np.random.default_rng([seed, 10, i])
        n = animals - 1 if animals > 1 and rng.random() < fewer_prob else animals
        background, camera = _arena(rng, width, height), _camera(rng)
        poses = _place(rng, n, width, height, unit, margin)
        looks = _looks(rng, animals, identity)
        who = np.sort(rng.choice(animals, n, replace=False))  # which individuals are in this frame
        port = rng.uniform(margin, [width - 1 - margin, height - 1 - margin]) if unique else None
        img, kps = _scene(background, poses, [looks[a] for a in who], bodyparts, rng, port, unit)
        frame = expose(img, camera, rng)
        name = f"img{i:04d}.png"
        _write_png(labeled_dir / name, frame)
        images.append(f"labeled-data/{VIDEO_NAME}/{name}")
        coords[i, who, :, :2] = kps
        if port is not None:
            port_xy[i, 0, :2] = port
    coords[..., 2] = np.where(np.isfinite(coords[..., 0]), 1.0, np.nan)
    port_xy[..., 2] = np.where(np.isfinite(port_xy[..., 0]), 1.0, np.nan)
    for stale in set(labeled_dir.glob("img*.png")) - {root / i for i in images}:
        stale.unlink()
    labels = Poses(coords, list(bodyparts), names, unique=port_xy if unique else None, unique_keypoints=uniq,
                   images=images, scorer=scorer, kind="labels")
    table = labeled_dir / f"CollectedData_{scorer}.h5"
    write_dlc(labels, table, csv=True, index_style="multi")
    if hdf_key != "df_with_missing":  # napari-deeplabcut's files: the same table under another key
        df = labels.to_dataframe("multi")
        tmp = table.with_suffix(".h5.tmp")
        df.to_hdf(tmp, key=hdf_key, format="fixed", mode="w")
        os.replace(tmp, table)

    _write_session_video(video_dir, animals, video_frames, fps, width, height, unit, margin, seed, bodyparts,
                         identity, unique, scorer)
    text = _config(root, task, scorer, bodyparts, names, uniq, identity, video_dir / f"{VIDEO_NAME}.mp4",
                   width, height)
    write_bytes_atomic(root / "config.yaml", text.encode())
    return root


def _write_session_video(video_dir: Path, animals: int, video_frames: int, fps: float, width: int, height: int,
                         unit: float, margin: float, seed: int, bodyparts: tuple[str, ...], identity: bool,
                         unique: bool, scorer: str) -> None:
    """One session: one arena and camera, every animal on its own trajectory (they meet and cross)."""
    rng = np.random.default_rng([seed, 11])
    background, camera = _arena(rng, width, height), _camera(rng)
    looks = _looks(rng, animals, identity)
    tracks = [_trajectory(rng, video_frames, fps, width, height, unit, margin) for _ in range(animals)]
    port = rng.uniform(margin, [width - 1 - margin, height - 1 - margin]) if unique else None
    truth = np.full((video_frames, animals, len(bodyparts), 3), np.nan)

    def frames() -> Iterator[np.ndarray]:
        for t in range(video_frames):
            frame_rng = np.random.default_rng([seed, 12, t])
            img, kps = _scene(background, [tr[t] for tr in tracks], looks, bodyparts, frame_rng, port, unit)
            truth[t, :, :, :2] = kps
            yield expose(img, camera, frame_rng)

    _write_video(video_dir / f"{VIDEO_NAME}.mp4", frames(), (width, height), fps)
    truth[..., 2] = np.where(np.isfinite(truth[..., 0]), 1.0, np.nan)
    uniq = np.tile(np.array([*port, 1.0]), (video_frames, 1, 1)) if port is not None else None
    write_dlc(Poses(truth, list(bodyparts), individual_names(animals), unique=uniq,
                    unique_keypoints=[UNIQUE_NAME] if unique else [], scorer=scorer),
              video_dir / f"{VIDEO_NAME}_truth.h5")


def load_multi_truth(project_root: str | os.PathLike, video: str = VIDEO_NAME) -> Poses:
    """The exact poses of a synthetic multi-animal project's video (NaN where an animal is hidden)."""
    return load_video_truth(project_root, video)


def main(argv: list[str] | None = None) -> int:
    """`python -m posezoo.training.synthetic_multi DIR`: a multi-animal project to try the workflow on."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m posezoo.training.synthetic_multi",
                                     description="Write a synthetic multi-animal DeepLabCut project (labeled "
                                                 "frames, config.yaml, a video and its ground truth) into DIR.")
    parser.add_argument("root", type=Path, help="project directory to create")
    parser.add_argument("--animals", type=int, default=3, help="animals per frame (default 3)")
    parser.add_argument("--frames", type=int, default=150, help="labeled frames (default 150)")
    parser.add_argument("--video-frames", type=int, default=300, help="video length (default 300)")
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unique", action="store_true", help="add a unique bodypart (a food port)")
    parser.add_argument("--identity", action="store_true", help="each individual keeps its own fur colour")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing synthetic project")
    args = parser.parse_args(argv)
    root = make_multi_project(args.root, animals=args.animals, n_frames=args.frames, video_frames=args.video_frames,
                              image_size=tuple(args.size), seed=args.seed, unique=args.unique,
                              identity=args.identity, overwrite=args.overwrite)
    print(f"wrote {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
