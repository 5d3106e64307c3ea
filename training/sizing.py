"""Input scale, training crop and batch chosen from the labelled animals, not from constants.

A network sees the animal at ``input.scale`` and learns from ``input.train_size`` crops. Two
things pull the scale in opposite directions:

- context: a crop must hold the whole animal and some of its surroundings, or keypoints that
  look alike (a left and a right paw, the two ends of a tail) cannot be told apart; so the
  animal should span about ``ANIMAL_FRACTION`` of the crop's side;
- detail: neighbouring keypoints (two ears, the eyes) must stay a few input pixels apart, or
  they share one heatmap cell; so the typical gap to a keypoint's nearest neighbour should be
  at least ``MIN_SPACING`` input pixels.

``ANIMAL_FRACTION`` reproduces the geometry posezoo was first tuned with on openfield (its
124 px mice at scale 0.5 in 160x160 crops); ``MIN_SPACING`` was measured there: 8 px (scale
0.64, 192 crops) reached 1.91 px against 2.11 px with 5 px. Where detail asks for more than
context allows, the crop grows (up to ``MAX_CROP``) and the batch shrinks so a step costs about
the same, which keeps the step budget a time budget too. Explicit ``input.scale``,
``input.train_size`` or ``train.batch_size`` win.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .config import TrainConfig
from .project import Project

ANIMAL_FRACTION = 0.4  # of the crop side spanned by a large (90th percentile) animal
MIN_SPACING = 8.0  # input pixels between a keypoint and its nearest neighbour (median)
MAX_DETAIL = 2.5  # detail may raise the scale at most this much above what context asks
BASE_CROP, MAX_CROP = 160, 256
BASE_BATCH = 8  # at BASE_CROP; larger crops get fewer images per step (the same pixels)
MIN_BATCH = 2


@dataclass(frozen=True)
class Sizing:
    """What the labels say, and the choice made from it."""

    extent_px: float  # a large animal's side in image pixels (90th percentile over labelled animals)
    spacing_px: float  # median gap from a keypoint to its nearest neighbour, image pixels
    scale: float
    crop: tuple[int, int]  # (H, W)
    batch_size: int

    def describe(self) -> str:
        return (f"input scale {self.scale:g} "
                f"(animals up to {self.extent_px:.0f} px -> {self.extent_px * self.scale:.0f}, "
                f"nearest keypoints {self.spacing_px:.0f} px -> {self.spacing_px * self.scale:.1f}), "
                f"training crops {self.crop[0]}x{self.crop[1]}, batch {self.batch_size}")


def measure(project: Project, indices: list[int]) -> tuple[float, float, tuple[int, int]]:
    """(extent, spacing, image size) of the labelled animals in frames ``indices``."""
    xy = project.labels.xy[indices]  # (frames, individuals, keypoints, 2)
    flat = xy.reshape(-1, *xy.shape[2:])
    ok = np.isfinite(flat).all(-1)
    sides = [float(np.ptp(p[m], axis=0).max()) for p, m in zip(flat, ok) if m.sum() >= 2]
    extent = float(np.percentile(sides, 90)) if sides else 0.0
    gaps = np.linalg.norm(flat[:, :, None] - flat[:, None], axis=-1)
    k = flat.shape[1]
    gaps[:, np.arange(k), np.arange(k)] = np.nan
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a keypoint never labelled: an all-NaN median
        gaps[~np.isfinite(gaps) | (gaps <= 0)] = np.inf
        nearest = gaps.min(-1)
        nearest[~np.isfinite(nearest)] = np.nan
        per_keypoint = np.nanmedian(nearest, axis=0) if np.isfinite(nearest).any() else np.array([np.nan])
    spacing = float(np.nanmedian(per_keypoint)) if np.isfinite(per_keypoint).any() else 0.0
    return extent, spacing, _image_size(project, indices)


def _image_size(project: Project, indices: list[int]) -> tuple[int, int]:
    """The largest image among the first frame of each labelled folder (folders hold one video's frames)."""
    seen: dict[str, int] = {}
    for i in indices:
        seen.setdefault(project.images[i].rsplit("/", 1)[0], i)
    shapes = [project.load_image(i).shape[:2] for i in seen.values()]
    return max(s[0] for s in shapes), max(s[1] for s in shapes)


def choose(extent: float, spacing: float, image: tuple[int, int], *, scale: float | None = None,
           multiple: int = 32) -> tuple[float, int]:
    """(scale, crop side) for animals of ``extent`` px whose keypoints are ``spacing`` px apart
    (the crop alone when ``scale`` is given)."""
    if scale is None:
        if extent <= 0:  # one labelled keypoint per animal: nothing to measure, keep the image as it is
            return 1.0, BASE_CROP
        context = ANIMAL_FRACTION * BASE_CROP / extent
        detail = MIN_SPACING / spacing if spacing > 0 else context
        scale = float(f"{min(1.0, max(context, min(detail, MAX_DETAIL * context))):.2g}")  # readable in the spec
    want = round(extent * scale / ANIMAL_FRACTION / multiple) * multiple
    fits = math.ceil(max(image) * scale / multiple) * multiple  # no wider than the scaled image needs
    return scale, int(min(MAX_CROP, max(BASE_CROP, min(fits, want))))


def batch_for(height: int, width: int, frames: int) -> int:
    """Images per step for crops of this size: about the pixels of BASE_BATCH BASE_CROP crops."""
    return max(1, min(frames, max(MIN_BATCH, round(BASE_BATCH * BASE_CROP ** 2 / (height * width)))))


def resolve(cfg: TrainConfig, project: Project, train: list[int]) -> tuple[TrainConfig, Sizing | None]:
    """``cfg`` with every input setting left open (null) chosen from the training labels."""
    if cfg.input.scale is not None and cfg.input.train_size is not None and cfg.train.batch_size is not None:
        return cfg, None
    extent, spacing, image = measure(project, train)
    scale, crop = choose(extent, spacing, image, scale=cfg.input.scale, multiple=cfg.input.size_multiple)
    size = tuple(cfg.input.train_size) if cfg.input.train_size is not None else (crop, crop)
    batch = cfg.train.batch_size if cfg.train.batch_size is not None else batch_for(*size, len(train))
    resolved = cfg.with_overrides({"input.scale": scale, "input.train_size": list(size), "train.batch_size": batch})
    return resolved, Sizing(extent, spacing, scale, (int(size[0]), int(size[1])), batch)
