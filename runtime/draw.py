"""Keypoints drawn onto frames and labeled videos (OpenCV only, BGR frames).

Conventions follow DeepLabCut's pictures: one colour per bodypart along a rainbow colormap,
keypoints under ``pcutoff`` are not drawn on videos; on evaluation frames a label is a "+",
a confident prediction a dot and a prediction under ``pcutoff`` an "x".
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from .files import atomic_output, write_bytes_atomic
from .poses import DEFAULT_PCUTOFF, Poses, skeleton_indices

Color = tuple[int, int, int]


def rainbow(n: int) -> np.ndarray:
    """``n`` RGB colours (0..1) along matplotlib's "rainbow" colormap, DeepLabCut's default.

    Computed from the colormap's defining functions (red |2x - 1/2|, green sin(pi x), blue
    cos(pi x / 2)) so videos get the plots' colours without importing matplotlib.
    """
    x = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(max(n, 0))
    rgb = np.stack([np.abs(2 * x - 0.5), np.sin(np.pi * x), np.cos(np.pi * x / 2)], axis=-1)
    return np.clip(rgb, 0.0, 1.0)


def keypoint_colors(n: int) -> list[Color]:
    """``n`` distinct BGR colours for OpenCV drawing, the same as the plots use."""
    return [(int(round(b * 255)), int(round(g * 255)), int(round(r * 255))) for r, g, b in rainbow(n)]


def _size(frame: np.ndarray, radius: int | None, thickness: int | None) -> tuple[int, int]:
    scale = max(frame.shape[:2]) / 640.0
    return radius or max(2, round(4 * scale)), thickness or max(1, round(2 * scale))


def _visible(kp: np.ndarray, pcutoff: float) -> np.ndarray:
    kp = np.asarray(kp, dtype=np.float64)
    ok = np.isfinite(kp[:, 0]) & np.isfinite(kp[:, 1])
    if kp.shape[1] > 2:
        ok &= np.nan_to_num(kp[:, 2], nan=-1.0) >= pcutoff
    return ok


def draw_pose(frame: np.ndarray, coords: np.ndarray, *, skeleton: Sequence[tuple[int, int]] = (),
              pcutoff: float = DEFAULT_PCUTOFF, colors: Sequence[Color] | None = None, radius: int | None = None,
              thickness: int | None = None, skeleton_color: Color = (200, 200, 200)) -> np.ndarray:
    """Draw one animal's (K, 3) coords and its skeleton onto ``frame`` (in place; returned).

    A keypoint with likelihood under ``pcutoff`` or NaN coordinates is left out, and so is any
    skeleton edge touching it.
    """
    kp = np.asarray(coords, dtype=np.float64)
    colors = list(colors) if colors is not None else keypoint_colors(len(kp))
    r, t = _size(frame, radius, thickness)
    ok = _visible(kp, pcutoff)
    pts = np.round(np.nan_to_num(kp[:, :2])).astype(int)
    for a, b in skeleton:
        if ok[a] and ok[b]:
            cv2.line(frame, tuple(pts[a]), tuple(pts[b]), skeleton_color, t, cv2.LINE_AA)
    for k in np.flatnonzero(ok):
        cv2.circle(frame, tuple(pts[k]), r, colors[k], -1, cv2.LINE_AA)
    return frame


def draw_comparison(frame: np.ndarray, labels: np.ndarray, predictions: np.ndarray, *, pcutoff: float = DEFAULT_PCUTOFF,
                    colors: Sequence[Color] | None = None, radius: int | None = None,
                    thickness: int | None = None) -> np.ndarray:
    """Labels (K, 2) as "+", predictions (K, 3) as dots (>= pcutoff) or "x" (below), in place."""
    gt = np.asarray(labels, dtype=np.float64)
    pred = np.asarray(predictions, dtype=np.float64)
    colors = list(colors) if colors is not None else keypoint_colors(len(gt))
    r, t = _size(frame, radius, thickness)
    for k in range(len(gt)):
        if np.isfinite(gt[k, :2]).all():
            cv2.drawMarker(frame, tuple(np.round(gt[k, :2]).astype(int)), colors[k], cv2.MARKER_CROSS, 4 * r, t)
        if np.isfinite(pred[k, :2]).all():
            p = tuple(np.round(pred[k, :2]).astype(int))
            if np.nan_to_num(pred[k, 2], nan=-1.0) >= pcutoff:
                cv2.circle(frame, p, r, colors[k], -1, cv2.LINE_AA)
            else:
                cv2.drawMarker(frame, p, colors[k], cv2.MARKER_TILTED_CROSS, 3 * r, t)
    return frame


def write_comparison_frames(folder: str | os.PathLike[str], frames: Iterable[np.ndarray], labels: Poses,
                            predictions: Poses, *, pcutoff: float = DEFAULT_PCUTOFF) -> list[Path]:
    """Each RGB frame with its labels (+) and predictions (dot >= pcutoff, x below) as a PNG named
    after the labels' image path; returns the files."""
    folder = Path(folder)
    written = []
    for row, frame in enumerate(frames):
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        for label, prediction in zip(labels.xy[row], predictions.coords[row]):
            draw_comparison(bgr, label, prediction, pcutoff=pcutoff)
        name = (labels.images[row] if labels.images else f"frame{row:05d}").replace("/", "_").rsplit(".", 1)[0]
        ok, data = cv2.imencode(".png", bgr)
        if not ok:
            raise RuntimeError(f"{folder / name}.png: PNG encoding failed")
        written.append(write_bytes_atomic(folder / f"{name}.png", data.tobytes()))
    return written


def individual_colors(n: int) -> list[Color]:
    """One BGR colour per individual, far apart on the colour wheel (the rainbow's ends wrap)."""
    return keypoint_colors(n + 1)[:n] if n > 1 else keypoint_colors(1)


def label_video(poses: Poses, video: str | os.PathLike[str], output: str | os.PathLike[str], *,
                pcutoff: float = DEFAULT_PCUTOFF, skeleton: Sequence[Sequence[str]] | None = None,
                codec: str = "mp4v", trail: int = 0, progress: bool = True) -> Path:
    """Draw ``poses`` (row i on frame i, as analysis writes them) onto ``video``, into ``output``.

    ``skeleton`` (name pairs) defaults to the poses' own. One colour per keypoint for one animal;
    for several, one colour per individual, the same all video long. ``trail`` > 0 draws each
    animal's path over that many past frames (its keypoints' mean). Frames without a row are
    copied unchanged; the output is written under a temporary name and renamed when complete.
    """
    from tqdm import tqdm

    from .decode import open_video

    pairs = poses.skeleton if skeleton is None else skeleton
    skeleton_indices(poses.keypoints + poses.unique_keypoints, pairs, f"{poses.video or video}: skeleton")
    edges = skeleton_indices(poses.keypoints, [e for e in pairs if set(e) <= set(poses.keypoints)])
    colors = keypoint_colors(len(poses.keypoints) + len(poses.unique_keypoints))
    per_animal = [colors] if poses.single_animal else [[c] * len(poses.keypoints)
                                                       for c in individual_colors(len(poses.individuals))]
    rows = {int(f): i for i, f in enumerate(poses.frame_numbers())}
    recent: list[np.ndarray] = []  # the last `trail` frames' centres, (individuals, 2) each
    out = Path(output)
    cap, info = open_video(video)
    fps = info.fps if info.fps > 0 else 30.0
    try:
        with atomic_output(out, suffix=out.suffix or ".mp4") as tmp:  # OpenCV picks the container by suffix
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), fps, (info.width, info.height))
            try:
                if not writer.isOpened():
                    raise RuntimeError(f"{out}: OpenCV cannot write a {out.suffix or '.mp4'} video with codec {codec!r}")
                with tqdm(total=info.frame_count or None, unit="frame", desc=f"label {Path(video).name}",
                          disable=not progress, mininterval=0.5) as bar:
                    i = 0
                    while True:
                        ok, frame = cap.read()
                        if not ok:
                            break
                        row = rows.get(i)
                        if trail and row is not None:
                            recent = (recent + [_centres(poses.coords[row], pcutoff)])[-trail:]
                            _draw_trails(frame, recent, [p[0] for p in per_animal])
                        if row is not None:
                            for animal, animal_colors in zip(poses.coords[row], per_animal):
                                draw_pose(frame, animal, skeleton=edges, pcutoff=pcutoff, colors=animal_colors)
                            if poses.unique is not None:
                                draw_pose(frame, poses.unique[row], pcutoff=pcutoff,
                                          colors=colors[len(poses.keypoints):])
                        writer.write(frame)
                        i += 1
                        bar.update(1)
                if i == 0:
                    raise RuntimeError(f"{video}: no frame could be decoded")
            finally:
                writer.release()
    finally:
        cap.release()
    return out


def _centres(animals: np.ndarray, pcutoff: float) -> np.ndarray:
    """Each animal's centre: the mean of its keypoints above ``pcutoff`` (NaN when none)."""
    ok = np.isfinite(animals[..., :2]).all(-1) & (np.nan_to_num(animals[..., 2], nan=-1.0) >= pcutoff)
    with np.errstate(invalid="ignore"):
        return np.where(ok[..., None], animals[..., :2], 0).sum(1) / ok.sum(1)[:, None]


def _draw_trails(frame: np.ndarray, centres: list[np.ndarray], colors: Sequence[Color]) -> None:
    """Each animal's path through ``centres`` (oldest first), broken where it was not seen."""
    _, t = _size(frame, None, None)
    path = np.stack(centres)  # (frames, individuals, 2)
    for a in range(path.shape[1]):
        for p, q in zip(path[:-1, a], path[1:, a]):
            if np.isfinite(p).all() and np.isfinite(q).all():
                cv2.line(frame, tuple(np.round(p).astype(int)), tuple(np.round(q).astype(int)),
                         colors[a % len(colors)], t, cv2.LINE_AA)


def labeled_video_path(results: str | os.PathLike[str]) -> Path:
    """The default labeled video beside a results table: ``<results stem>_labeled.mp4``."""
    results = Path(results)
    return results.with_name(results.stem + "_labeled.mp4")
