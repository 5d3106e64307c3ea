"""A synthetic DeepLabCut project: a mouse-like animal seen from above, rendered with exact labels.

Tests and `posezoo demo` need a complete project (config.yaml, labeled frames, a video) without
downloading anything. Every keypoint is computed from the same geometry that is drawn, so the
labels are exact to a fraction of a pixel and a small network can learn them from ~100 frames.

Coordinates follow DeepLabCut (and posezoo.runtime.geometry): x to the right, y down, integer
coordinates are pixel centres. Seen from above, an animal heading along unit vector (dx, dy) has
its left side at (dy, -dx): heading right in the image, its left ear is the upper one.

The labeled frames and the video are independent draws from the same distribution (separate
seeds), like a real project whose analysed video is another session.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from posezoo.runtime.files import atomic_output, write_bytes_atomic
from posezoo.runtime.io.dlc import read_dlc, write_dlc
from posezoo.runtime.poses import Poses

VIDEO_NAME = "mouse1"
# Every bodypart this renderer can place; make_project accepts any ordered subset.
# spineN and tailN are evenly spaced along the body and the tail (projects with many keypoints);
# the hips and shoulders are side pairs for flip augmentation.
_SPINE_POINTS, _TAIL_POINTS = 12, 12
SUPPORTED_BODYPARTS = ("snout", "leftear", "rightear", "neck", "bodycenter", "tailbase",
                       "tailmid", "tailend", "lefthip", "righthip", "leftshoulder", "rightshoulder",
                       *(f"spine{i}" for i in range(1, _SPINE_POINTS + 1)),
                       *(f"tail{i}" for i in range(1, _TAIL_POINTS + 1)))
# Skeleton edges, kept when both ends are among the requested bodyparts.
_SKELETON = (("snout", "leftear"), ("snout", "rightear"), ("leftear", "rightear"),
             ("leftear", "neck"), ("rightear", "neck"), ("neck", "bodycenter"),
             ("bodycenter", "tailbase"), ("leftear", "tailbase"), ("rightear", "tailbase"),
             ("tailbase", "tailmid"), ("tailmid", "tailend"))

# Animal layout in body units (1 unit = `Pose.scale` pixels, about the snout-tailbase distance).
# The body is a band around an arc-shaped spine: tail base at arc length 0, body centre at
# _CENTRE, neck (head joint) at _NECK_ARC, the body's front end a little beyond under the head.
_CENTRE, _NECK_ARC, _BODY_END = 0.39, 0.67, 0.74
_HIP_B, _SHOULDER_B = 0.145, 0.10  # body half-widths at the rear and front
_HEAD_LEN, _HEAD_B = 0.30, 0.095  # neck -> snout distance, head half-width
_NOSE_R = 0.03
_EAR_FWD, _EAR_SIDE, _EAR_R, _EAR_INNER = 0.02, 0.095, 0.062, 0.66
_TAIL_LEN, _TAIL_W0, _TAIL_W1 = 0.85, 0.045, 0.012  # length, half-width at base and tip
_SCALE_RANGE = (0.85, 1.15)  # animal size relative to the nominal size
_NOMINAL = 0.24  # nominal body unit as a fraction of min(width, height)
_MAX_BEND, _MAX_HEAD_TURN = 0.5, 0.4  # radians
_EDGE = 3.0  # pixels kept between any keypoint and the image border


@dataclass(frozen=True)
class Pose:
    """One posture: body centre, heading (radians, image coordinates), bend, size, tail shape."""

    x: float
    y: float
    heading: float
    bend: float  # rear and front halves point heading -/+ bend/2
    head_turn: float  # head direction relative to the front half
    scale: float  # pixels per body unit
    tail_amp: float  # tail wave amplitude (radians)
    tail_phase: float


@dataclass(frozen=True)
class Look:
    """Colours (RGB, 0-255) of one animal."""

    fur: np.ndarray
    ear: np.ndarray
    tail: np.ndarray
    nose: np.ndarray


def _unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def _left(d: np.ndarray) -> np.ndarray:
    """The animal's left of heading d (y points down in images; see module docstring)."""
    return np.array([d[1], -d[0]])


def _spine(pose: Pose, n: int = 32) -> np.ndarray:
    """(n, 2) points of the body's arc from the tail base to its front end; bend spreads evenly."""
    arc = np.linspace(0.0, _BODY_END, n)
    angle = pose.heading + pose.bend * (arc / _BODY_END - 0.5)
    step = np.diff(arc)[:, None] * np.stack([np.cos(angle[1:]), np.sin(angle[1:])], 1)
    points = np.vstack([[0.0, 0.0], np.cumsum(step, axis=0)]) * pose.scale
    centre = np.array([np.interp(_CENTRE, arc, points[:, k]) for k in range(2)])
    return points - centre + [pose.x, pose.y]


def _tail_centreline(pose: Pose, start: np.ndarray, back: float, n: int = 25) -> np.ndarray:
    """(n, 2) points from the tail base backwards (angle `back`), a travelling wave along it."""
    u = np.linspace(0.0, 1.0, n)
    angles = back + pose.tail_amp * u * np.sin(2.2 * np.pi * u + pose.tail_phase)
    step = _TAIL_LEN * pose.scale / (n - 1)
    deltas = np.stack([np.cos(angles), np.sin(angles)], axis=1) * step
    deltas[0] = 0.0
    return start + np.cumsum(deltas, axis=0)


def _geometry(pose: Pose) -> tuple[dict[str, np.ndarray], dict[str, list[np.ndarray]]]:
    """Keypoints (pixels) and the polygons to draw, computed from one set of numbers."""
    s = pose.scale
    spine = _spine(pose)
    arc = np.linspace(0.0, _BODY_END, len(spine))
    tailbase = spine[0]
    centre, neck = (np.array([np.interp(a, arc, spine[:, 0]), np.interp(a, arc, spine[:, 1])])
                    for a in (_CENTRE, _NECK_ARC))
    d_neck = _unit(pose.heading + pose.bend * (_NECK_ARC / _BODY_END - 0.5))
    d_head = _unit(math.atan2(d_neck[1], d_neck[0]) + pose.head_turn)
    snout = neck + _HEAD_LEN * s * d_head  # the nose disk is centred on the head's tip
    ear_base = neck + _EAR_FWD * s * d_head
    left_ear = ear_base + _EAR_SIDE * s * _left(d_head)
    right_ear = ear_base - _EAR_SIDE * s * _left(d_head)
    d_tail = spine[0] - spine[1]
    tail = _tail_centreline(pose, tailbase, math.atan2(d_tail[1], d_tail[0]))

    # Body outline: elliptic width profile, wider at the hips, zero at both ends of the spine.
    u = arc / _BODY_END
    def half_width_at(a: np.ndarray | float) -> np.ndarray:
        v = np.asarray(a) / _BODY_END
        return ((1 - v) * _HIP_B + v * _SHOULDER_B) * s * np.sqrt(np.clip(1 - (2 * v - 1) ** 2, 0, 1))

    half_width = half_width_at(arc)
    # The tail starts a little inside the body so the tail-base pixel is covered without a seam.
    tail_inside = np.vstack([tailbase - 0.06 * s * d_tail / np.linalg.norm(d_tail), tail])
    head_half = _HEAD_LEN / 2 + 0.02
    head_c = neck + (_HEAD_LEN - head_half) * s * d_head
    keypoints = {
        "snout": snout, "leftear": left_ear, "rightear": right_ear, "neck": neck,
        "bodycenter": centre, "tailbase": tailbase, "tailmid": tail[len(tail) // 2],  # u = 0.5
        "tailend": tail[-1],
    }
    side = _left(d_neck)
    for name, a in (("hip", 0.12), ("shoulder", 0.55)):
        i = int(round(a / _BODY_END * (len(spine) - 1)))
        keypoints[f"left{name}"] = spine[i] + 0.8 * half_width_at(a) * side
        keypoints[f"right{name}"] = spine[i] - 0.8 * half_width_at(a) * side
    for i in range(1, _SPINE_POINTS + 1):
        a = _BODY_END * i / (_SPINE_POINTS + 1)
        keypoints[f"spine{i}"] = np.array([np.interp(a, arc, spine[:, 0]), np.interp(a, arc, spine[:, 1])])
    for i in range(1, _TAIL_POINTS + 1):
        keypoints[f"tail{i}"] = tail[round(i * (len(tail) - 1) / _TAIL_POINTS)]
    ear_outer, ear_inner = _EAR_R * s, _EAR_R * _EAR_INNER * s
    shapes = {
        "fur": [
            _ribbon(spine, half_width),
            _ellipse(head_c, d_head, head_half * s, _HEAD_B * s, taper=0.45),
            _ellipse(left_ear, d_head, ear_outer, ear_outer),
            _ellipse(right_ear, d_head, ear_outer, ear_outer),
            # Fur covers the root of the tail: a dark disk centred on the tail base.
            _ellipse(tailbase, d_neck, 1.3 * _TAIL_W0 * s, 1.3 * _TAIL_W0 * s),
        ],
        "tail": [_ribbon(tail_inside, np.linspace(_TAIL_W0 * s, _TAIL_W1 * s, len(tail_inside)))],
        "ear": [_ellipse(left_ear, d_head, ear_inner, ear_inner),
                _ellipse(right_ear, d_head, ear_inner, ear_inner)],
        "nose": [_ellipse(snout, d_head, _NOSE_R * s, _NOSE_R * s)],
    }
    return keypoints, shapes


def _ellipse(centre: np.ndarray, d: np.ndarray, a: float, b: float, taper: float = 0.0,
             n: int = 40) -> np.ndarray:
    """Polygon of an ellipse along d; taper > 0 narrows the front end (an egg-shaped head)."""
    phi = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    along = a * np.cos(phi)
    across = b * np.sin(phi) * (1.0 - taper * np.clip(np.cos(phi), 0.0, None) ** 2)
    return centre + along[:, None] * d + across[:, None] * _left(d)


def _ribbon(line: np.ndarray, half_width: np.ndarray) -> np.ndarray:
    """Polygon of a band around a polyline with the given half-width at each point."""
    tangent = np.gradient(line, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-9
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    width = half_width[:, None]
    return np.vstack([line + width * normal, (line - width * normal)[::-1]])


_SUPERSAMPLE = 4  # masks are drawn 4x finer and averaged down: exact to a few 1/100 pixel
_SHIFT = 4  # and vertices keep 4 fractional bits at that resolution


def _mask(shape: tuple[int, int], polygons: list[np.ndarray], origin: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] (float32, h x w x 1) of polygons in pixels, `origin` = top-left.

    cv2's own anti-aliasing biases small shapes by up to 1/4 pixel (measured), which would
    make the labels disagree with the picture; supersampling keeps them within ~0.03 pixel.
    """
    f = _SUPERSAMPLE
    fine = np.zeros((shape[0] * f, shape[1] * f), np.uint8)
    for poly in polygons:  # one call per polygon: fillPoly with several would XOR overlaps
        # Pixel-centre aligned: fine pixel centres at (x + 0.5) * f - 0.5 for coarse x.
        pts = np.round(((poly - origin + 0.5) * f - 0.5) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(fine, [pts], 255, lineType=cv2.LINE_8, shift=_SHIFT)
    coverage = cv2.resize(fine, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return (coverage.astype(np.float32) * (1.0 / 255.0))[..., None]


def _arena(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A lit, textured arena floor with dark walls at the border (RGB float32, H x W x 3)."""
    grey = rng.uniform(170.0, 220.0)
    coarse = rng.standard_normal((height // 16 + 2, width // 16 + 2), np.float32)
    grain = rng.standard_normal((height, width), np.float32)
    texture = 7.0 * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    texture += 6.0 * cv2.GaussianBlur(grain, (0, 0), 1.0)
    lines = np.zeros((height, width), np.uint8)
    for _ in range(rng.integers(0, 4)):  # faint drawn lines, like marks on a real arena floor
        p = np.round(rng.uniform([0, 0], [width, height], (2, 2)) * 16).astype(int)
        cv2.line(lines, tuple(p[0]), tuple(p[1]), int(rng.integers(80, 200)), 1, cv2.LINE_AA, 4)
    texture -= 0.25 * lines
    # Illumination: a linear gradient in a random direction times a vignette.
    xn = (np.arange(width, dtype=np.float32) / width - 0.5)[None, :]
    yn = (np.arange(height, dtype=np.float32) / height - 0.5)[:, None]
    g = _unit(rng.uniform(0, 2 * np.pi))
    light = 1.0 + rng.uniform(0.0, 0.25) * (g[0] * xn + g[1] * yn)
    light *= 1.0 - rng.uniform(0.0, 0.3) * (xn ** 2 + yn ** 2)
    wall = int(round(rng.uniform(0.02, 0.06) * min(width, height)))
    if wall > 0:
        inner = light[wall:height - wall, wall:width - wall].copy()
        light *= rng.uniform(0.45, 0.65)
        light[wall:height - wall, wall:width - wall] = inner
    tint = (grey + rng.uniform(-6, 6, 3)).astype(np.float32)
    return (tint + texture[..., None]) * light[..., None]


def _look(rng: np.random.Generator) -> Look:
    """Colours of one animal: dark fur, pink ears and nose, a greyish-pink tail."""
    fur = rng.uniform(35, 75) + rng.uniform(-8, 8, 3)
    pink = np.array([205.0, 125.0, 140.0]) + rng.uniform(-15, 15, 3)
    tail = np.array([150.0, 118.0, 118.0]) + rng.uniform(-15, 15, 3)
    return Look(fur=fur.astype(np.float32), ear=pink.astype(np.float32),
                tail=tail.astype(np.float32), nose=(pink * 0.9).astype(np.float32))


@dataclass(frozen=True)
class Camera:
    """Optics and sensor of one recording: Gaussian blur sigma and noise sigma (pixels, grey levels)."""

    blur: float
    noise: float


def _camera(rng: np.random.Generator) -> Camera:
    blur = rng.uniform(0.0, 0.8)
    return Camera(blur=blur if blur > 0.3 else 0.0, noise=rng.uniform(2.0, 7.0))


def _render(background: np.ndarray, pose: Pose, look: Look, camera: Camera,
            rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw the animal over the background; returns (uint8 RGB frame, keypoints by name).

    `rng` only supplies this frame's fur grain and sensor noise.
    """
    img = background.copy()
    keypoints, _ = draw_animal(img, pose, look, rng)
    return expose(img, camera, rng), keypoints


def draw_animal(img: np.ndarray, pose: Pose, look: Look,
                rng: np.random.Generator) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Draw one animal into ``img`` (float32 RGB, in place); its keypoints by name and its fur
    coverage ``(origin xy, mask h x w)``, which tells which pixels it hides (occlusion)."""
    keypoints, shapes = _geometry(pose)
    height, width = img.shape[:2]
    # Composite inside the animal's bounding box (plus room for the shadow) only: it is fast.
    pad = 0.4 * pose.scale + 4
    every = np.vstack([p for polys in shapes.values() for p in polys])
    x0, y0 = np.maximum(np.floor(every.min(0) - pad), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(every.max(0) + pad), [width, height]).astype(int)
    origin = np.array([x0, y0], float)
    roi = img[y0:y1, x0:x1]
    hw = roi.shape[:2]
    fur = _mask(hw, shapes["fur"], origin)
    # A soft shadow, cast down-right as by a light at the upper left, grounds the animal.
    shadow = cv2.GaussianBlur(fur[..., 0], (0, 0), 0.12 * pose.scale)
    roi[2:, 2:] *= (1.0 - 0.3 * shadow[:-2, :-2])[..., None]
    cover = fur[..., 0]
    for layer in ("tail", "fur", "ear", "nose"):
        alpha = fur if layer == "fur" else _mask(hw, shapes[layer], origin)
        if layer == "tail":
            cover = np.maximum(cover, alpha[..., 0])
        colour = getattr(look, layer)
        if layer == "fur":  # a little fur texture so the body is not a flat blob
            grain = cv2.GaussianBlur(rng.standard_normal(hw, np.float32), (0, 0), 0.8)
            colour = colour * (1.0 + 0.15 * grain[..., None])
        roi[:] = roi * (1.0 - alpha) + colour * alpha
    return keypoints, (origin, cover)


def expose(img: np.ndarray, camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """The camera's blur and sensor noise on a drawn scene -> uint8 RGB."""
    if camera.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), camera.blur)
    img += camera.noise * rng.standard_normal(img.shape, np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _reach(bodyparts: tuple[str, ...]) -> float:
    """How far (body units) any requested keypoint can be from the body centre, for margins."""
    front, back = _NECK_ARC - _CENTRE, _CENTRE  # arc lengths bound the straight distances
    reach = {"snout": front + _HEAD_LEN, "leftear": front + _EAR_FWD + _EAR_SIDE,
             "neck": front, "bodycenter": 0.0, "tailbase": back,
             "tailmid": back + _TAIL_LEN / 2, "tailend": back + _TAIL_LEN}  # x _SCALE_RANGE[1]
    reach["rightear"] = reach["leftear"]
    reach.update({f"{side}{part}": max(front, back) + _HIP_B for side in ("left", "right")
                  for part in ("hip", "shoulder")})
    reach.update({f"spine{i}": max(front, back) for i in range(1, _SPINE_POINTS + 1)})
    reach.update({f"tail{i}": back + _TAIL_LEN for i in range(1, _TAIL_POINTS + 1)})
    return max(reach[b] for b in bodyparts)


def _random_pose(rng: np.random.Generator, width: int, height: int, unit: float,
                 margin: float) -> Pose:
    return Pose(x=rng.uniform(margin, width - 1 - margin), y=rng.uniform(margin, height - 1 - margin),
                heading=rng.uniform(-np.pi, np.pi), bend=rng.uniform(-_MAX_BEND, _MAX_BEND),
                head_turn=rng.uniform(-_MAX_HEAD_TURN, _MAX_HEAD_TURN),
                scale=unit * rng.uniform(*_SCALE_RANGE), tail_amp=rng.uniform(0.0, 0.8),
                tail_phase=rng.uniform(0, 2 * np.pi))


def _smooth_signal(rng: np.random.Generator, t: np.ndarray, freqs: tuple[float, float],
                   n: int = 3) -> np.ndarray:
    """A smooth random signal in [-1, 1]: a sum of sinusoids with random frequencies/phases."""
    f = rng.uniform(*freqs, n)
    amp = rng.uniform(0.3, 1.0, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    return (amp[None] * np.sin(2 * np.pi * f[None] * t[:, None] + phase[None])).sum(1) / amp.sum()


def _trajectory(rng: np.random.Generator, frames: int, fps: float, width: int, height: int,
                unit: float, margin: float) -> list[Pose]:
    """A smooth walk: the animal runs, pauses and turns (all headings), and bends into turns.

    Speed and turn rate are smooth random signals; near a wall the animal steers back towards
    the middle, so every keypoint stays inside the image.
    """
    t = np.arange(frames) / fps
    speed = unit * np.clip(0.8 + 0.9 * _smooth_signal(rng, t, (0.05, 0.3)), 0.0, None)  # px/s
    wander = 1.8 * _smooth_signal(rng, t, (0.05, 0.4))  # rad/s
    lo, hi = np.array([margin, margin]), np.array([width - 1 - margin, height - 1 - margin])
    mid, zone = (lo + hi) / 2, min(0.6 * unit, float((hi - lo).min()) / 2)
    pos = rng.uniform(lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo))
    heading = rng.uniform(-np.pi, np.pi)
    xy, headings, turn_rate = np.empty((frames, 2)), np.empty(frames), np.empty(frames)
    for i in range(frames):
        wall = float(np.min(np.concatenate([pos - lo, hi - pos])))
        home = math.atan2(mid[1] - pos[1], mid[0] - pos[0])
        off = (home - heading + np.pi) % (2 * np.pi) - np.pi
        steer = 4.0 * off * max(0.0, 1.0 - wall / zone) if zone > 0 else 0.0
        omega = wander[i] + steer
        heading += omega / fps
        pos = np.clip(pos + speed[i] / fps * _unit(heading), lo, hi)
        xy[i], headings[i], turn_rate[i] = pos, heading, omega
    bend = np.clip(0.2 * turn_rate + 0.15 * _smooth_signal(rng, t, (0.1, 0.5)), -_MAX_BEND, _MAX_BEND)
    head_turn = _MAX_HEAD_TURN * 0.8 * _smooth_signal(rng, t, (0.2, 0.8))
    breathing = 1.0 + 0.03 * _smooth_signal(rng, t, (0.2, 0.6))
    scale = unit * np.clip(rng.uniform(*_SCALE_RANGE) * breathing, *_SCALE_RANGE)
    tail_amp = 0.4 + 0.3 * _smooth_signal(rng, t, (0.1, 0.4))
    tail_phase = rng.uniform(0, 2 * np.pi) + 2 * np.pi * 0.7 * t
    return [Pose(float(xy[i, 0]), float(xy[i, 1]), float(headings[i]), float(bend[i]),
                 float(head_turn[i]), float(scale[i]), float(tail_amp[i]), float(tail_phase[i]))
            for i in range(frames)]


def _occlude(frame: np.ndarray, points: np.ndarray, unit: float, rng: np.random.Generator) -> np.ndarray:
    """Paint a grey block over a random keypoint's surroundings; which keypoints it hides."""
    centre = points[rng.integers(len(points))] + rng.normal(0, 0.15 * unit, 2)
    half = rng.uniform(0.15, 0.4, 2) * unit
    lo = np.floor(centre - half).astype(int).clip(0)
    hi = np.ceil(centre + half).astype(int)
    frame[lo[1]:hi[1], lo[0]:hi[0]] = rng.integers(90, 170)
    return ((points >= lo) & (points < hi)).all(1)


def _lookalike(frame: np.ndarray, points: np.ndarray, unit: float, rng: np.random.Generator) -> np.ndarray:
    """Copy the patch around a random keypoint to a spot two animal lengths or more away from it
    (a distant look-alike) and, half of the time, hide the real one under a grey block; which
    keypoints are hidden."""
    h, w = frame.shape[:2]
    k = int(rng.integers(len(points)))
    half = max(2, int(0.3 * unit))
    src = np.round(points[k]).astype(int).clip(half, [w - half - 1, h - half - 1])
    patch = frame[src[1] - half:src[1] + half + 1, src[0] - half:src[0] + half + 1].copy()
    reach = 2 * np.ptp(points, axis=0).max() + 2 * half  # farther than any two keypoints could be
    for _ in range(50):  # a spot that no keypoint is near; none where the frame has no room
        at = rng.uniform([half, half], [w - half - 1, h - half - 1]).astype(int)
        if np.linalg.norm(points - at, axis=1).min() > reach:
            frame[at[1] - half:at[1] + half + 1, at[0] - half:at[0] + half + 1] = patch
            break
    hidden = np.zeros(len(points), bool)
    if rng.random() < 0.5:
        lo, hi = src - half, src + half + 1
        frame[lo[1]:hi[1], lo[0]:hi[0]] = rng.integers(90, 170)
        hidden = ((points >= lo) & (points < hi)).all(1)
    return hidden


def _write_png(path: Path, rgb: np.ndarray) -> None:
    # Low zlib effort: several times faster than the default and the files stay small.
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the PNG")
    write_bytes_atomic(path, buf.tobytes())


def _write_video(path: Path, frames: Iterable[np.ndarray], size: tuple[int, int],
                 fps: float) -> None:
    """Stream RGB frames of `size` (width, height) into an mp4v .mp4.

    mp4v is what this OpenCV build both writes and reads back (its ffmpeg has no H.264 encoder).
    """
    # The temporary name keeps the .mp4 suffix: OpenCV picks the container from it.
    with atomic_output(path, suffix=path.suffix) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        try:
            if not writer.isOpened():
                raise OSError(f"{path}: OpenCV cannot open an mp4v video writer")
            for frame in frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()


def _config_text(root: Path, task: str, scorer: str, bodyparts: tuple[str, ...],
                 video: Path, width: int, height: int) -> str:
    """config.yaml in DeepLabCut's layout and key order (same sections as its template)."""
    def dump(obj: object) -> str:
        return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).rstrip("\n")

    skeleton = [[a, b] for a, b in _SKELETON if a in bodyparts and b in bodyparts]
    return f"""\
# Project definitions (do not edit)
{dump({"Task": task, "scorer": scorer, "date": "Jan1", "multianimalproject": False,
       "identity": None})}

# Project path (change when moving around)
{dump({"project_path": str(root)})}

# Default DeepLabCut engine to use for shuffle creation (either pytorch or tensorflow)
engine: pytorch

# Annotation data set configuration (and individual video cropping parameters)
{dump({"video_sets": {str(video): {"crop": f"0, {width}, 0, {height}"}}})}
{dump({"bodyparts": list(bodyparts)})}

# Fraction of video to start/stop when extracting frames for labeling/refinement
start: 0
stop: 1
numframes2pick: 20

# Plotting configuration
{dump({"skeleton": skeleton})}
skeleton_color: black
pcutoff: 0.6
dotsize: 6
alphavalue: 0.7
colormap: rainbow

# Training,Evaluation and Analysis configuration
TrainingFraction:
- 0.95
iteration: 0
default_net_type: resnet_50
default_augmenter: imgaug
snapshotindex: -1
detector_snapshotindex: -1
batch_size: 8
detector_batch_size: 1

# Cropping Parameters (for analysis and outlier frame detection)
cropping: false
#if cropping is true for analysis, then set the values here:
x1: 0
x2: {width}
y1: 0
y2: {height}

# Refinement configuration (parameters from annotation dataset configuration also relevant in this stage)
corner2move2:
- 50
- 50
move2corner: true
"""


def _check_args(root: Path, n_frames: int, video_frames: int, image_size: tuple[int, int],
                fps: float, bodyparts: tuple[str, ...], unlabeled_prob: float,
                overwrite: bool) -> None:
    unknown = [b for b in bodyparts if b not in SUPPORTED_BODYPARTS]
    if unknown or not bodyparts or len(set(bodyparts)) != len(bodyparts):
        raise ValueError(f"synthetic project {root}: bodyparts must be distinct names from "
                         f"{SUPPORTED_BODYPARTS}; got {bodyparts}")
    if n_frames < 1 or video_frames < 1 or fps <= 0:
        raise ValueError(f"synthetic project {root}: need n_frames >= 1, video_frames >= 1, fps > 0")
    if len(image_size) != 2 or min(image_size) < 64:
        raise ValueError(f"synthetic project {root}: image_size is (width, height), each >= 64; "
                         f"got {image_size}")
    if not 0.0 <= unlabeled_prob < 1.0:
        raise ValueError(f"synthetic project {root}: unlabeled_prob must be in [0, 1)")
    if (root / "config.yaml").exists() and not overwrite:
        raise FileExistsError(f"{root / 'config.yaml'} already exists (pass overwrite=True)")


def make_project(root: str | os.PathLike, *, n_frames: int = 120, video_frames: int = 300,
                 image_size: tuple[int, int] = (320, 240), fps: float = 30, seed: int = 0,
                 bodyparts: tuple[str, ...] = ("snout", "leftear", "rightear", "tailbase"),
                 scorer: str = "synthetic", task: str = "synthetic", sizes_vary: bool = False,
                 unlabeled_prob: float = 0.0, animal_size: float = 1.0, occluded_prob: float = 0.0,
                 lookalike_prob: float = 0.0, overwrite: bool = False) -> Path:
    """Write a complete single-animal DeepLabCut project into `root`; returns `root`.

    Layout: config.yaml, labeled-data/mouse1/imgNNNN.png + CollectedData_<scorer>.h5/.csv,
    videos/mouse1.mp4 (`video_frames` frames at `image_size` = (width, height)) and
    videos/mouse1_truth.h5 (its exact keypoints in DLC results layout, likelihood 1).
    `unlabeled_prob`: chance that a keypoint is left unlabeled (NaN) although it is drawn.
    `animal_size`: the animal's size relative to the default (about a quarter of the shorter side).
    `occluded_prob`: chance that a labeled frame has a flat grey block over part of the animal;
    the keypoints under it are not visible and left unlabeled, as a labeler would.
    `lookalike_prob`: chance that a labeled frame holds a copy of the patch around one keypoint
    two animal lengths or more from the animal, with the real keypoint hidden (and unlabeled)
    half of those times.
    `sizes_vary`: labeled frames cycle through (width, height), 5/4 of both, and 9/8 of the
    width, as when a project mixes cameras (the animal keeps its size).
    config.yaml is written last, so a project without it is incomplete; with `overwrite`, older
    imgNNNN.png files that the new table does not list are removed.
    """
    root = Path(root).resolve()
    bodyparts = tuple(bodyparts)
    width, height = int(image_size[0]), int(image_size[1])
    _check_args(root, n_frames, video_frames, (width, height), fps, bodyparts, unlabeled_prob,
                overwrite)
    if not 0.1 <= animal_size <= 1.5:
        raise ValueError(f"synthetic project {root}: animal_size must be in [0.1, 1.5], got {animal_size}")
    for name, prob in (("occluded_prob", occluded_prob), ("lookalike_prob", lookalike_prob)):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"synthetic project {root}: {name} must be in [0, 1], got {prob}")
    unit = _NOMINAL * min(width, height) * animal_size
    # Keypoints stay inside the image; at most ~70% of the shorter side is margin, so any
    # image_size accepted by _check_args leaves room to move.
    margin = _reach(bodyparts) * unit * _SCALE_RANGE[1] + _EDGE
    labeled_dir = root / "labeled-data" / VIDEO_NAME
    video_dir = root / "videos"
    labeled_dir.mkdir(parents=True, exist_ok=True)
    video_dir.mkdir(parents=True, exist_ok=True)

    sizes = [(width, height)]
    if sizes_vary:
        sizes += [(width * 5 // 4, height * 5 // 4), (width * 9 // 8, height)]
    coords = np.full((n_frames, 1, len(bodyparts), 2), np.nan)
    images = []
    for i in range(n_frames):
        # One generator per frame: frame i is the same whatever n_frames is.
        rng = np.random.default_rng([seed, 0, i])
        w, h = sizes[i % len(sizes)]
        frame, kps = _render(_arena(rng, w, h), _random_pose(rng, w, h, unit, margin), _look(rng),
                             _camera(rng), rng)
        name = f"img{i:04d}.png"
        images.append(f"labeled-data/{VIDEO_NAME}/{name}")
        labeled = rng.random(len(bodyparts)) >= unlabeled_prob
        points = np.array([kps[b] for b in bodyparts])
        if rng.random() < occluded_prob:
            labeled &= ~_occlude(frame, points, unit, rng)
        if lookalike_prob and rng.random() < lookalike_prob:  # no draw at 0: older projects unchanged
            labeled &= ~_lookalike(frame, points, unit, rng)
        _write_png(labeled_dir / name, frame)
        coords[i, 0, labeled] = points[labeled]
    for stale in set(labeled_dir.glob("img*.png")) - {root / i for i in images}:
        stale.unlink()
    table = labeled_dir / f"CollectedData_{scorer}.h5"
    labels = np.concatenate([coords, np.where(np.isfinite(coords[..., :1]), 1.0, np.nan)], axis=-1)
    write_dlc(Poses(labels, list(bodyparts), images=images, scorer=scorer, kind="labels"), table, csv=True)

    # The video: one session (one arena, one animal, one camera), per-frame sensor noise.
    rng = np.random.default_rng([seed, 1])
    background, look, camera = _arena(rng, width, height), _look(rng), _camera(rng)
    poses = _trajectory(rng, video_frames, fps, width, height, unit, margin)
    truth = np.ones((video_frames, len(bodyparts), 3))  # likelihood 1

    def frames() -> Iterator[np.ndarray]:
        for t, pose in enumerate(poses):
            frame, kps = _render(background, pose, look, camera, np.random.default_rng([seed, 2, t]))
            truth[t, :, :2] = [kps[b] for b in bodyparts]
            yield frame

    video = video_dir / f"{VIDEO_NAME}.mp4"
    _write_video(video, frames(), (width, height), fps)
    write_dlc(Poses(truth[:, None], list(bodyparts), scorer=scorer), video_dir / f"{VIDEO_NAME}_truth.h5")

    write_bytes_atomic(root / "config.yaml",
                 _config_text(root, task, scorer, bodyparts, video, width, height).encode())
    return root


def load_video_truth(project_root: str | os.PathLike, video: str = VIDEO_NAME) -> Poses:
    """The exact poses of a synthetic project's video (likelihood 1), keypoints in config order."""
    path = Path(project_root) / "videos" / f"{video}_truth.h5"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ground truth here (is {project_root} a synthetic project made by "
                                "posezoo.training.synthetic.make_project or synthetic_multi.make_multi_project?)")
    return read_dlc(path)


def main(argv: list[str] | None = None) -> int:
    """`python -m posezoo.training.synthetic DIR`: a project to try the workflow on."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m posezoo.training.synthetic",
                                     description="Write a synthetic DeepLabCut project (labeled frames, "
                                                 "config.yaml, a video and its ground truth) into DIR.")
    parser.add_argument("root", type=Path, help="project directory to create")
    parser.add_argument("--frames", type=int, default=120, help="labeled frames (default 120)")
    parser.add_argument("--video-frames", type=int, default=300, help="video length (default 300)")
    parser.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing synthetic project")
    args = parser.parse_args(argv)
    root = make_project(args.root, n_frames=args.frames, video_frames=args.video_frames,
                        image_size=tuple(args.size), seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
