"""The one data pipeline both backends train on: augmentation, targets, decoding, batching.

numpy/OpenCV only, so PyTorch and TensorFlow see byte-identical arrays for the same
(seed, epoch). Conventions shared with the runtime and the exported graph:

- images are RGB uint8 HxWx3; coords are float (K, 2) x, y in pixels, NaN = unlabeled;
- integer coordinates are pixel CENTRES, so a pixel covers [x - 0.5, x + 0.5);
- heatmap cell (r, c) at `stride` stands for the input point
  (c * stride + offset, r * stride + offset) with offset = (stride - 1) / 2.
"""
from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

Pairs = Sequence[tuple[int, int]]
ImageSource = Sequence[np.ndarray] | Callable[[int], np.ndarray]

#: DeepLabCut's locref_stdev: locref targets are offsets in pixels divided by this.
LOCREF_SCALE = 7.2


@dataclass
class AugmentConfig:
    """Random augmentation applied per sample; `enabled=False` gives a deterministic centred crop.

    Angles are in degrees, `scale` is a (low, high) zoom factor range, `translation` is the
    random shift of the crop window as a fraction of the output size (the window is then pulled
    back so the labeled animal stays inside whenever it fits), brightness is a fraction of 255,
    contrast a fraction of 1, noise_std is in grey levels (each sample draws its std from
    [0, noise_std]). Flip is only correct with left/right pairs swapped: see `flip_pairs`.
    """

    enabled: bool = True
    rotation: float = 25.0
    scale: tuple[float, float] = (0.8, 1.2)
    translation: float = 0.2
    flip_prob: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    noise_std: float = 5.0
    motion_blur_prob: float = 0.1
    motion_blur_max_kernel: int = 7

    def __post_init__(self) -> None:
        # Configs come back from YAML/JSON as lists and ints; normalise so equality and hashing work.
        lo, hi = (float(v) for v in self.scale)
        self.scale = (lo, hi)
        for name in ("rotation", "translation", "flip_prob", "brightness", "contrast", "noise_std",
                     "motion_blur_prob"):
            setattr(self, name, float(getattr(self, name)))
        self.motion_blur_max_kernel = int(self.motion_blur_max_kernel)
        if not 0 < lo <= hi:
            raise ValueError(f"AugmentConfig.scale must be 0 < low <= high, got {self.scale}")
        for name in ("flip_prob", "motion_blur_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be a probability in [0, 1], got {getattr(self, name)}")
        for name in ("rotation", "translation", "brightness", "contrast", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.contrast >= 1:
            raise ValueError(f"AugmentConfig.contrast must be < 1 (a factor in [1 - c, 1 + c]), got {self.contrast}")
        if self.motion_blur_prob > 0 and self.motion_blur_max_kernel < 3:
            raise ValueError("AugmentConfig.motion_blur_max_kernel must be >= 3 when motion blur is on, "
                             f"got {self.motion_blur_max_kernel}")


@dataclass
class TargetConfig:
    """Target geometry. `sigma` and `locref_radius` are in input pixels; None means the default
    (sigma = stride, locref_radius = 2 * stride), resolved here so a saved config is explicit."""

    stride: int = 8
    sigma: float | None = None
    locref_radius: float | None = None
    locref_scale: float = LOCREF_SCALE
    #: what an unlabelled keypoint (NaN: not visible, in DeepLabCut's convention) teaches: "absent"
    #: trains an empty heatmap, as DeepLabCut does, so the network learns to give it a low score
    #: instead of a confident point on a look-alike; "ignore" leaves its heatmap out of the loss.
    unlabeled: Literal["absent", "ignore"] = "absent"

    def __post_init__(self) -> None:
        if self.unlabeled not in ("absent", "ignore"):
            raise ValueError(f"TargetConfig.unlabeled must be 'absent' or 'ignore', got {self.unlabeled!r}")
        self.stride = int(self.stride)
        if self.stride < 1:
            raise ValueError(f"TargetConfig.stride must be >= 1, got {self.stride}")
        self.sigma = float(self.stride if self.sigma is None else self.sigma)
        self.locref_radius = float(2 * self.stride if self.locref_radius is None else self.locref_radius)
        self.locref_scale = float(self.locref_scale)
        for name in ("sigma", "locref_scale"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TargetConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.locref_radius < 0:
            raise ValueError(f"TargetConfig.locref_radius must be >= 0, got {self.locref_radius}")

    @property
    def offset(self) -> float:
        """Input-pixel position of heatmap cell 0 (the centre of the stride x stride block)."""
        return (self.stride - 1) / 2.0

    def heatmap_size(self, in_size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the heatmaps for an input of (H, W); both must be multiples of the stride."""
        H, W = (int(v) for v in in_size)
        if H <= 0 or W <= 0 or H % self.stride or W % self.stride:
            raise ValueError(f"input size {H}x{W} (HxW) must be positive multiples of the stride {self.stride}")
        return H // self.stride, W // self.stride


# ----------------------------------------------------------------------------- flip pairs

_SIDE_WORD = {"left": "right", "right": "left"}
_SIDE_LETTER = {"l": "r", "r": "l"}
_TOKEN = re.compile(r"[^_\-.\s]+|[_\-.\s]+")


def _mirror_names(name: str) -> list[str]:
    """Candidate names of the opposite side (lower case), most specific first."""
    n = name.lower()
    out = []
    # "left"/"right" anywhere: leftear, ear_left, LeftFrontPaw, front_right_paw.
    swapped = re.sub("left|right", lambda m: _SIDE_WORD[m.group(0)], n)
    if swapped != n:
        out.append(swapped)
    # A lone "l"/"r" token: l_ear, ear_r, paw-l-front.
    tokens = _TOKEN.findall(n)
    flipped = [_SIDE_LETTER.get(t, t) for t in tokens]
    if flipped != tokens:
        out.append("".join(flipped))
    # A capital L/R glued to a word, in the original case: EarL, forepawR, LEar, RFrontPaw.
    for pattern in (r"(?<=[a-z0-9])([LR])$", r"^([LR])(?=[A-Z][a-z])"):
        glued = re.sub(pattern, lambda m: {"L": "R", "R": "L"}[m.group(1)], name)
        if glued != name:
            out.append(glued.lower())
    return out


def flip_pairs(bodyparts: Sequence[str], pairs: Sequence[Sequence[str]] | None = None) -> list[tuple[int, int]]:
    """Index pairs (i < j) swapped by a horizontal flip.

    With `pairs` the names are given explicitly; otherwise they are inferred from left/right
    words and l/r tokens in the names, case-insensitively (leftear/rightear, l_paw/r_paw,
    EarLeft/EarRight), and from a capital L/R glued to a word (EarL/EarR, LEar/REar).
    Bodyparts without a partner (snout, tailbase) stay where they are.
    """
    names = [str(b) for b in bodyparts]
    if pairs is not None:
        where = {b: i for i, b in enumerate(names)}
        out: list[tuple[int, int]] = []
        for pair in pairs:
            if len(pair) != 2:
                raise ValueError(f"flip pair {pair!r} must name exactly two bodyparts")
            for b in pair:
                if b not in where:
                    raise ValueError(f"flip pair {tuple(pair)!r}: unknown bodypart {b!r} (bodyparts: {names})")
            i, j = where[pair[0]], where[pair[1]]
            if i == j:
                raise ValueError(f"flip pair {tuple(pair)!r} pairs a bodypart with itself")
            out.append((min(i, j), max(i, j)))
        _check_pairs(out, len(names))
        return sorted(set(out))
    lower = {b.lower(): i for i, b in enumerate(names)}
    if len(lower) != len(names):
        raise ValueError(f"bodypart names must be unique ignoring case to infer flip pairs: {names}")
    used: set[int] = set()
    found = []
    for i, b in enumerate(names):
        if i in used:
            continue
        for cand in _mirror_names(b):
            j = lower.get(cand)
            if j is not None and j != i and j not in used:
                found.append((min(i, j), max(i, j)))
                used.update((i, j))
                break
    return sorted(found)


def _check_pairs(pairs: Pairs, k: int) -> None:
    seen: set[int] = set()
    for i, j in pairs:
        for v in (i, j):
            if not 0 <= v < k:
                raise ValueError(f"flip pair ({i}, {j}) indexes outside the {k} keypoints")
            if v in seen:
                raise ValueError(f"keypoint {v} appears in more than one flip pair: {list(pairs)}")
            seen.add(v)


# ----------------------------------------------------------------------------- augmentation

def _inside(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """True where a point lies on one of the pixels of an HxW image (pixel centres at integers)."""
    x, y = points[..., 0], points[..., 1]
    with np.errstate(invalid="ignore"):
        return (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)


def _place_window(desired: float, image_lo: float, image_hi: float, kp_lo: float | None,
                  kp_hi: float | None, size: int) -> float:
    """Integer offset of a `size`-pixel window along one axis (window pixel 0 at the offset).

    Prefer the window inside the image (or the image inside the window when the image is the
    smaller), but keeping the labeled keypoints inside wins whenever they fit.
    """
    eps = 1e-6
    t = float(math.floor(desired + 0.5))  # halves round up, the same on every platform
    a = math.ceil(image_lo + 0.5 - eps)  # window's left edge on the image's left edge
    b = math.floor(image_hi - size + 0.5 + eps)  # window's right edge on the image's right edge
    t = min(max(t, min(a, b)), max(a, b))
    if kp_lo is not None and kp_hi is not None:
        lo = math.ceil(kp_hi - (size - 1) - eps)
        hi = math.floor(kp_lo + eps)
        if lo <= hi:
            t = min(max(t, lo), hi)
    return t


def _geometry(image_hw: tuple[int, int], coords: np.ndarray, out_size: tuple[int, int],
              cfg: AugmentConfig, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """The single 2x3 matrix taking source pixels to output pixels, and whether it flips."""
    Hi, Wi = image_hw
    H, W = out_size
    labeled = np.isfinite(coords).all(axis=1)
    if cfg.enabled:
        theta = math.radians(rng.uniform(-cfg.rotation, cfg.rotation))
        s = rng.uniform(*cfg.scale)
        jitter = rng.uniform(-cfg.translation, cfg.translation, size=2) * (W, H)
        flip = bool(rng.random() < cfg.flip_prob)
    else:
        theta, s, jitter, flip = 0.0, 1.0, np.zeros(2), False
    A = s * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    # Everything below is in A-space (source pixels rotated and scaled about the origin); the
    # output is A @ p - T, and T is chosen along each axis by `_place_window`.
    corners = np.array([[-0.5, -0.5], [Wi - 0.5, -0.5], [-0.5, Hi - 0.5], [Wi - 0.5, Hi - 0.5]]) @ A.T
    if labeled.any():
        kp = coords[labeled].astype(np.float64) @ A.T
        kp_lo, kp_hi = kp.min(axis=0), kp.max(axis=0)
        centre = (kp_lo + kp_hi) / 2
    else:
        kp_lo = kp_hi = None
        centre = np.array([(Wi - 1) / 2, (Hi - 1) / 2]) @ A.T
    T = np.empty(2)
    for axis, size in ((0, W), (1, H)):
        desired = centre[axis] - (size - 1) / 2 - jitter[axis]
        T[axis] = _place_window(desired, corners[:, axis].min(), corners[:, axis].max(),
                                None if kp_lo is None else kp_lo[axis],
                                None if kp_hi is None else kp_hi[axis], size)
    M = np.concatenate([A, -T[:, None]], axis=1)
    if flip:  # mirror the output window: x -> (W - 1) - x
        M[0] = -M[0]
        M[0, 2] += W - 1
    return M, flip


def _motion_blur_kernel(size: int, angle: float) -> np.ndarray:
    """A normalised line kernel, symmetric about its centre so blur moves no keypoint."""
    k = np.zeros((size, size), np.float32)
    c = (size - 1) / 2
    dx, dy = c * math.cos(angle), c * math.sin(angle)
    p1 = (int(round(c + dx)), int(round(c + dy)))
    p2 = (int(round(c - dx)), int(round(c - dy)))
    cv2.line(k, p1, p2, 1.0, 1)
    k = k + k[::-1, ::-1]
    return k / k.sum()


def _photometric(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Colour augmentation in OpenCV's saturating uint8 arithmetic: it releases the GIL, so the
    loader's threads really run in parallel (numpy's float path and RNG would serialise them)."""
    blur = cfg.motion_blur_prob > 0 and rng.random() < cfg.motion_blur_prob
    contrast = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) if cfg.contrast > 0 else 1.0
    brightness = rng.uniform(-cfg.brightness, cfg.brightness) * 255 if cfg.brightness > 0 else 0.0
    noise = rng.uniform(0, cfg.noise_std) if cfg.noise_std > 0 else 0.0
    out = image
    # Blur first: it happens in the optics/exposure, before the sensor adds its noise.
    if blur:
        size = 3 + 2 * int(rng.integers(0, (cfg.motion_blur_max_kernel - 3) // 2 + 1))  # odd, <= max
        kernel = _motion_blur_kernel(size, rng.uniform(0, math.pi))
        out = cv2.filter2D(out, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    if contrast != 1.0 or brightness != 0.0:
        mean = float(np.mean(cv2.mean(out)[:3]))  # contrast pivots on the mean: exposure is kept
        out = cv2.addWeighted(out, contrast, out, 0.0, mean * (1 - contrast) + brightness)
    if noise > 0:
        # OpenCV's RNG is per thread; seeding it from `rng` keeps the sample a function of its seed.
        cv2.setRNGSeed(int(rng.integers(2**31)))
        grain = np.empty(out.shape, np.int16)
        cv2.randn(grain.reshape(out.shape[0], -1), 0.0, float(noise))  # one channel: every value noised
        out = cv2.add(out, grain, dtype=cv2.CV_8U)
    return out


def _check_image(image: np.ndarray, what: str = "image") -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{what} must be an RGB uint8 HxWx3 array, got a {desc}")


def augment(image: np.ndarray, coords: np.ndarray, out_size: tuple[int, int], cfg: AugmentConfig,
            rng: np.random.Generator, flip_pairs: Pairs = (), anchor: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """One training sample: (out_size image, its coords in its pixels, NaN where lost).

    Rotation, scale, translation, the crop window and the flip are composed into one affine
    warp, so the image is resampled once and the keypoints move by exactly the same matrix.
    With `cfg.enabled` False the crop is centred on the labeled keypoints (on the image when
    none are labeled), kept inside the image when it fits, and nothing random happens.
    ``coords`` is (K, 2), or (A, K, 2) for several animals (flips swap left/right within
    each); ``anchor`` (points, 2) is what the crop centres on and keeps inside when it fits
    (default: every labeled keypoint), e.g. one animal of several.
    """
    _check_image(image)
    kps = np.asarray(coords, dtype=np.float64)
    if kps.ndim not in (2, 3) or kps.shape[-1] != 2:
        raise ValueError(f"coords must have shape (K, 2) or (animals, K, 2), got {kps.shape}")
    _check_pairs(flip_pairs, kps.shape[-2])
    H, W = (int(v) for v in out_size)
    if H <= 0 or W <= 0:
        raise ValueError(f"out_size must be positive (H, W), got {out_size}")
    centre_on = kps.reshape(-1, 2) if anchor is None else np.asarray(anchor, np.float64).reshape(-1, 2)
    M, flipped = _geometry(image.shape[:2], centre_on, (H, W), cfg, rng)
    # An integer translation with an identity linear part is an exact copy under INTER_LINEAR,
    # so evaluation crops keep the original pixels.
    out = cv2.warpAffine(image, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(0, 0, 0))
    moved = kps @ M[:, :2].T + M[:, 2]
    moved[~_inside(moved, H, W)] = np.nan
    if flipped:
        swapped = moved.copy()
        for i, j in flip_pairs:
            swapped[..., i, :], swapped[..., j, :] = moved[..., j, :], moved[..., i, :]
        moved = swapped
    if cfg.enabled:
        out = _photometric(out, cfg, rng)
    return np.ascontiguousarray(out), moved.astype(np.float32)


# ----------------------------------------------------------------------------- targets

def make_targets(coords: np.ndarray, in_size: tuple[int, int], tcfg: TargetConfig) -> dict[str, np.ndarray]:
    """Gaussian heatmaps and location-refinement targets for one sample of input size (H, W).

    Returns `heatmap` (K, h, w), `locref` (K, 2, h, w) as (dx, dy) / locref_scale,
    `locref_mask` (K, h, w) and `weight` (K,), all float32. A keypoint off the input has the
    part of its Gaussian that falls inside (none, far off); a NaN keypoint has all-zero targets,
    with weight 1 or 0 as ``tcfg.unlabeled`` says.
    """
    kps = np.asarray(coords, dtype=np.float64)
    if kps.ndim != 2 or kps.shape[1] != 2:
        raise ValueError(f"coords must have shape (K, 2), got {kps.shape}")
    H, W = (int(v) for v in in_size)
    h, w = tcfg.heatmap_size((H, W))
    valid = np.isfinite(kps).all(axis=1)
    kx = np.where(valid, kps[:, 0], 0.0)
    ky = np.where(valid, kps[:, 1], 0.0)
    xs = np.arange(w) * tcfg.stride + tcfg.offset
    ys = np.arange(h) * tcfg.stride + tcfg.offset
    dx = (kx[:, None] - xs[None, :]).astype(np.float32)  # (K, w)
    dy = (ky[:, None] - ys[None, :]).astype(np.float32)  # (K, h)
    d2 = dy[:, :, None] ** 2 + dx[:, None, :] ** 2  # (K, h, w)
    on = valid[:, None, None]
    heatmap = np.exp(d2 * np.float32(-0.5 / tcfg.sigma ** 2)) * on
    mask = ((d2 <= np.float32(tcfg.locref_radius ** 2)) & on).astype(np.float32)
    inv = np.float32(1.0 / tcfg.locref_scale)
    locref = np.empty((kps.shape[0], 2, h, w), np.float32)
    locref[:, 0] = dx[:, None, :] * inv * mask
    locref[:, 1] = dy[:, :, None] * inv * mask
    weight = np.ones(len(kps), np.float32) if tcfg.unlabeled == "absent" else valid.astype(np.float32)
    return {"heatmap": heatmap.astype(np.float32), "locref": locref, "locref_mask": mask, "weight": weight}


def decode(heatmap: np.ndarray, locref: np.ndarray | None, stride: int, *, offset: float | None = None,
           locref_scale: float = LOCREF_SCALE) -> np.ndarray:
    """(N, K, 3) x, y, score in input pixels: the argmax cell, refined by its locref vector.

    The reference for training evaluation and export parity; the ONNX graph computes the same
    formula (first maximum on ties, as numpy and ONNX ArgMax both do). `heatmap` holds
    probabilities; `locref` may be None to decode the cell centres only.
    """
    heatmap = np.asarray(heatmap)
    if heatmap.ndim != 4:
        raise ValueError(f"heatmap must have shape (N, K, h, w), got {heatmap.shape}")
    N, K, h, w = heatmap.shape
    off = (stride - 1) / 2.0 if offset is None else float(offset)
    flat = heatmap.reshape(N, K, h * w)
    idx = flat.argmax(axis=-1)  # (N, K)
    score = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    row, col = np.divmod(idx, w)
    out = np.empty((N, K, 3), np.float32)
    out[..., 0] = col * np.float32(stride) + np.float32(off)
    out[..., 1] = row * np.float32(stride) + np.float32(off)
    out[..., 2] = score
    if locref is not None:
        locref = np.asarray(locref)
        if locref.shape != (N, K, 2, h, w):
            raise ValueError(f"locref must have shape {(N, K, 2, h, w)} to match the heatmap, got {locref.shape}")
        vec = np.take_along_axis(locref.reshape(N, K, 2, h * w), idx[:, :, None, None], axis=-1)[..., 0]
        out[..., :2] += vec.astype(np.float32) * np.float32(locref_scale)
    return out


# ----------------------------------------------------------------------------- several animals

def make_multi_targets(coords: np.ndarray, in_size: tuple[int, int], tcfg: TargetConfig, graph: Pairs, *,
                       paf_width: float, identities: int = 0) -> dict[str, np.ndarray]:
    """Bottom-up targets for one sample with several animals, input size (H, W).

    ``coords`` is (A, C, 2): row a is individual a (its identity class), columns are the
    keypoints (multi-animal ones first, then any unique ones, labelled in row 0 only).
    Returns `heatmap` (C, h, w), the maximum of every animal's Gaussian; `locref` (C, 2, h, w)
    towards the nearest animal's keypoint within `locref_radius`, `locref_mask` (C, h, w);
    `weight` (C,) all ones (an animal's unlabeled keypoint is taken as not visible, as
    DeepLabCut trains); `paf` (E, 2, h, w): for each edge (s, t) of ``graph`` the unit vector
    s -> t on cells within ``paf_width`` of the segment of any animal labelled at both ends
    (averaged where animals overlap); with ``identities``, `identity` (h, w) int64: the
    individual whose keypoint is nearest within `locref_radius`, -1 elsewhere.
    """
    kps = np.asarray(coords, dtype=np.float64)
    if kps.ndim != 3 or kps.shape[2] != 2:
        raise ValueError(f"coords must have shape (animals, C, 2), got {kps.shape}")
    A, C = kps.shape[:2]
    H, W = (int(v) for v in in_size)
    h, w = tcfg.heatmap_size((H, W))
    valid = np.isfinite(kps).all(-1) & _inside(kps, H, W)  # (A, C)
    xs = (np.arange(w) * tcfg.stride + tcfg.offset).astype(np.float32)
    ys = (np.arange(h) * tcfg.stride + tcfg.offset).astype(np.float32)
    kx = np.where(valid, kps[..., 0], 0.0).astype(np.float32)
    ky = np.where(valid, kps[..., 1], 0.0).astype(np.float32)
    dx = kx[..., None, None] - xs[None, None, None, :]  # (A, C, 1, w)
    dy = ky[..., None, None] - ys[None, None, :, None]  # (A, C, h, 1)
    d2 = np.where(valid[..., None, None], dx ** 2 + dy ** 2, np.float32(np.inf))  # (A, C, h, w)
    nearest = d2.argmin(axis=0) if A else np.zeros((C, h, w), np.int64)
    best = np.take_along_axis(d2, nearest[None], 0)[0] if A else np.full((C, h, w), np.inf, np.float32)
    heatmap = np.exp(best * np.float32(-0.5 / tcfg.sigma ** 2)).astype(np.float32)
    mask = (best <= np.float32(tcfg.locref_radius ** 2)).astype(np.float32)
    inv = np.float32(1.0 / tcfg.locref_scale)
    locref = np.zeros((C, 2, h, w), np.float32)
    if A:
        ox = np.take_along_axis(np.broadcast_to(dx, d2.shape), nearest[None], 0)[0]
        oy = np.take_along_axis(np.broadcast_to(dy, d2.shape), nearest[None], 0)[0]
        locref[:, 0] = ox * inv * mask
        locref[:, 1] = oy * inv * mask
    out = {"heatmap": heatmap, "locref": locref, "locref_mask": mask, "weight": np.ones(C, np.float32),
           "paf": paf_targets(kps, valid, graph, xs, ys, paf_width)}
    if identities:
        ident = np.full((h, w), -1, np.int64)
        if A:
            multi = sorted({k for edge in graph for k in edge}) or list(range(C))
            per_animal = d2[:, multi].min(axis=1)  # (A, h, w)
            who = per_animal.argmin(axis=0)
            near = per_animal.min(axis=0) <= tcfg.locref_radius ** 2
            ident[near] = np.minimum(who[near], identities - 1)
        out["identity"] = ident
    return out


def paf_targets(kps: np.ndarray, valid: np.ndarray, graph: Pairs, xs: np.ndarray, ys: np.ndarray,
                width: float) -> np.ndarray:
    """(E, 2, h, w) part-affinity fields: unit vectors along each animal's edges (see above)."""
    E, h, w = len(graph), len(ys), len(xs)
    paf = np.zeros((E, 2, h, w), np.float32)
    gx, gy = np.meshgrid(xs, ys)
    for e, (s, t) in enumerate(graph):
        count = np.zeros((h, w), np.float32)
        for a in range(kps.shape[0]):
            if not (valid[a, s] and valid[a, t]):
                continue
            v = kps[a, t] - kps[a, s]
            length = float(np.hypot(*v))
            if length < 1e-6:
                continue
            u = (v / length).astype(np.float32)
            px, py = gx - np.float32(kps[a, s, 0]), gy - np.float32(kps[a, s, 1])
            along = px * u[0] + py * u[1]
            across = np.abs(px * u[1] - py * u[0])
            on = (along >= -width / 2) & (along <= length + width / 2) & (across <= width)
            paf[e, 0][on] += u[0]
            paf[e, 1][on] += u[1]
            count[on] += 1
        paf[e] /= np.maximum(count, 1)
    return paf


def peak_candidates(probs: np.ndarray, locref: np.ndarray, k: int, stride: int, *, offset: float | None = None,
                    locref_scale: float = LOCREF_SCALE) -> np.ndarray:
    """(N, C, k, 3) x, y, score of the ``k`` highest local maxima of each heatmap (3x3 max-pool
    non-maximum suppression), refined by their locref; the reference for the exported graph.

    Rows are sorted by score; where fewer than ``k`` cells are maxima the rest have score 0.
    """
    probs = np.asarray(probs, np.float32)
    N, C, h, w = probs.shape
    off = (stride - 1) / 2.0 if offset is None else float(offset)
    padded = np.pad(probs, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    pooled = np.max(np.stack([padded[..., r:r + h, c:c + w] for r in range(3) for c in range(3)]), axis=0)
    peaks = np.where(probs == pooled, probs, np.float32(0)).reshape(N, C, h * w)
    k = min(k, h * w)
    idx = np.argsort(-peaks, axis=-1, kind="stable")[..., :k]  # (N, C, k)
    score = np.take_along_axis(peaks, idx, -1)
    row, col = np.divmod(idx, w)
    loc = np.take_along_axis(np.asarray(locref, np.float32).reshape(N, C, 2, h * w), idx[:, :, None, :], -1)
    out = np.empty((N, C, k, 3), np.float32)
    out[..., 0] = col * np.float32(stride) + np.float32(off) + loc[:, :, 0] * np.float32(locref_scale)
    out[..., 1] = row * np.float32(stride) + np.float32(off) + loc[:, :, 1] * np.float32(locref_scale)
    out[..., 2] = score
    return out


def edge_affinities(paf: np.ndarray, candidates: np.ndarray, graph: Pairs, stride: int, *,
                    offset: float | None = None, samples: int = 8) -> np.ndarray:
    """(N, E, k, k) affinity of every candidate pair of each edge (s, t): the mean, over
    ``samples`` points evenly spaced from candidate i of s to candidate j of t, of the field at
    the nearest cell dotted with the unit vector s -> t (1 along a true limb, ~0 across
    animals). ``paf`` is (N, E, 2, h, w), ``candidates`` (N, C, k, 3) in input pixels."""
    paf = np.asarray(paf, np.float32)
    N, E, _, h, w = paf.shape
    off = (stride - 1) / 2.0 if offset is None else float(offset)
    src = candidates[:, [s for s, _ in graph], :, None, :2]  # (N, E, k, 1, 2)
    dst = candidates[:, [t for _, t in graph], None, :, :2]  # (N, E, 1, k, 2)
    vec = dst - src
    unit = vec / (np.sqrt((vec ** 2).sum(-1, keepdims=True)) + np.float32(1e-6))
    t = np.linspace(0.0, 1.0, samples, dtype=np.float32)
    points = src[..., None, :] + t[:, None] * vec[..., None, :]  # (N, E, k, k, S, 2)
    col = np.clip(np.floor((points[..., 0] - np.float32(off)) / np.float32(stride) + np.float32(0.5)), 0, w - 1)
    row = np.clip(np.floor((points[..., 1] - np.float32(off)) / np.float32(stride) + np.float32(0.5)), 0, h - 1)
    cell = (row * w + col).astype(np.int64)
    flat = paf.reshape(N, E, 2, 1, 1, h * w)
    fx = np.take_along_axis(flat[:, :, 0], cell.reshape(N, E, 1, 1, -1), -1).reshape(cell.shape)
    fy = np.take_along_axis(flat[:, :, 1], cell.reshape(N, E, 1, 1, -1), -1).reshape(cell.shape)
    dot = fx * unit[..., None, 0] + fy * unit[..., None, 1]
    return dot.mean(-1).astype(np.float32)


# ----------------------------------------------------------------------------- batching

class BatchLoader:
    """Augmented, target-carrying batches; a deterministic function of (seed, epoch).

    `images` is a sequence (list or (N, H, W, 3) array) or a thread-safe callable index -> RGB
    image; `coords` is (N, K, 2), or (N, A, C, 2) for several animals (then `graph` names the
    part-affinity edges and each crop centres on one labelled animal drawn at random, see
    `make_multi_targets`); `indices` picks the samples of this split. Each
    iteration runs one epoch and then moves to the next; `set_epoch(e)` picks the epoch the
    next iteration runs, which is what exact resume needs. Samples are prepared on `workers`
    threads (OpenCV releases the GIL) with at most `prefetch` batches prepared ahead.

    Under data-parallel training (`rank` of `world` processes), `batch_size` is the global batch
    and each process prepares its contiguous 1/world share of every global batch. Augmentation is
    seeded by position in the epoch, so each rank draws its own samples' augmentations and the
    union over ranks is exactly the batch a single process would prepare.
    """

    KEYS = ("image", "heatmap", "locref", "locref_mask", "weight", "coords")

    def __init__(self, images: ImageSource, coords: np.ndarray, indices: Sequence[int] | np.ndarray, *,
                 batch_size: int, out_size: tuple[int, int], aug: AugmentConfig, targets: TargetConfig,
                 flip_pairs: Pairs = (), seed: int = 0, workers: int = 2, prefetch: int = 2,
                 shuffle: bool = True, drop_last: bool = True, graph: Pairs | None = None,
                 paf_width: float = 8.0, identities: int = 0, rank: int = 0, world: int = 1) -> None:
        self.coords = np.asarray(coords, dtype=np.float64)
        self.multi = self.coords.ndim == 4
        if self.coords.shape[-1] != 2 or self.coords.ndim not in (3, 4):
            raise ValueError(f"coords must have shape (N, K, 2) or (N, animals, K, 2), got {self.coords.shape}")
        self.graph = [(int(a), int(b)) for a, b in (graph or [])]
        self.paf_width, self.identities = float(paf_width), int(identities)
        if self.multi:
            self.KEYS = BatchLoader.KEYS + ("paf",) + (("identity",) if self.identities else ())
        n = self.coords.shape[0]
        if not callable(images) and len(images) != n:
            raise ValueError(f"{len(images)} images but {n} keypoint rows")
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
            raise ValueError(f"indices must lie in [0, {n}), got values from {self.indices.min()} to {self.indices.max()}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if drop_last and self.indices.size < batch_size:
            raise ValueError(f"batch_size {batch_size} is larger than the {self.indices.size} samples, "
                             "so drop_last would leave no batch at all")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        _check_pairs(flip_pairs, self.coords.shape[-2])
        self.out_size = (int(out_size[0]), int(out_size[1]))
        targets.heatmap_size(self.out_size)  # validates the size against the stride
        self.images = images
        self.batch_size = int(batch_size)
        self.aug, self.targets = aug, targets
        self.flip_pairs = [(int(i), int(j)) for i, j in flip_pairs]
        self.seed, self.workers, self.prefetch = int(seed), int(workers), max(1, int(prefetch))
        self.shuffle, self.drop_last = shuffle, drop_last
        if world < 1 or not 0 <= rank < world or batch_size % world:
            raise ValueError(f"batch_size {batch_size} (the global batch) must be a multiple of the {world} training "
                             f"processes, and rank {rank} one of them")
        self.rank, self.world = int(rank), int(world)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The next iteration runs this epoch (its order and augmentation)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = self.indices.size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices of `epoch` in the order they are batched."""
        if not self.shuffle:
            return self.indices.copy()
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, 0]))
        return rng.permutation(self.indices)

    def image(self, index: int) -> np.ndarray:
        """The source image of sample `index` as RGB uint8 HxWx3 (grey is expanded to RGB)."""
        img = self.images(index) if callable(self.images) else self.images[index]
        img = np.asarray(img)
        if img.dtype == np.uint8 and (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1)):
            img = np.repeat(img.reshape(*img.shape[:2], 1), 3, axis=2)
        _check_image(img, f"image of sample {index}")
        return img

    def sample(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One prepared sample (augmented image, its coords and targets)."""
        try:
            if self.multi:
                return self._multi_sample(index, rng)
            img, kps = augment(self.image(index), self.coords[index], self.out_size, self.aug, rng,
                               self.flip_pairs)
            out = make_targets(kps, self.out_size, self.targets)
        except Exception as exc:
            exc.add_note(f"while preparing sample {index}")
            raise
        out["image"], out["coords"] = img, kps
        return out

    def _multi_sample(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        coords = self.coords[index]
        labelled = np.flatnonzero(np.isfinite(coords).all(-1).any(-1))
        anchor = None  # evaluation crops centre on every animal; training crops on one of them
        if self.aug.enabled and len(labelled):
            anchor = coords[labelled[rng.integers(len(labelled))]]
        img, kps = augment(self.image(index), coords, self.out_size, self.aug, rng, self.flip_pairs, anchor)
        out = make_multi_targets(kps, self.out_size, self.targets, self.graph, paf_width=self.paf_width,
                                 identities=self.identities)
        out["image"], out["coords"] = img, kps
        return out

    def _sample_at(self, epoch: int, position: int, index: int) -> dict[str, np.ndarray]:
        # Seeded by position in the epoch, so a repeated index still gets its own augmentation
        # and the result does not depend on which thread runs it.
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, 1, position]))
        return self.sample(index, rng)

    def _collate(self, samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.stack([s[k] for s in samples]) for k in self.KEYS}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        epoch = self.epoch
        self.epoch = epoch + 1
        order = self.order(epoch)
        stop = len(self) * self.batch_size if self.drop_last else order.size
        starts = range(0, stop, self.batch_size)
        if self.workers <= 0:
            return (self._collate([self._sample_at(epoch, p, int(order[p])) for p in self._positions(s, stop)])
                    for s in starts)
        return self._threaded(epoch, order, starts, stop)

    def _positions(self, start: int, stop: int) -> range:
        """Positions in the epoch of this process's share of the global batch starting at ``start``."""
        n = min(start + self.batch_size, stop) - start
        return range(start + self.rank * n // self.world, start + (self.rank + 1) * n // self.world)

    def _threaded(self, epoch: int, order: np.ndarray, starts: range, stop: int) -> Iterator[dict[str, np.ndarray]]:
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="posezoo-data")
        pending: deque[list[Future]] = deque()
        todo = iter(starts)

        def submit() -> None:
            s = next(todo, None)
            if s is not None:
                pending.append([pool.submit(self._sample_at, epoch, p, int(order[p])) for p in self._positions(s, stop)])

        try:
            for _ in range(self.prefetch):
                submit()
            while pending:
                futures = pending.popleft()
                submit()  # keep `prefetch` batches in flight while this one is consumed
                yield self._collate([f.result() for f in futures])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
