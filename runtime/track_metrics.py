"""How well tracking keeps identities, against known tracks: IDF1, MOTA and identity switches.

The standard definitions (CLEAR MOT: Bernardin & Stiefelhagen 2008; IDF1: Ristani et al. 2016),
with animals as the objects. A tracked animal and a true one *correspond* in a frame when their
mean keypoint distance (over keypoints visible in both) is under ``threshold`` pixels, by default
half the true animal's size (the square root of its keypoint box area).

- MOTA = 1 - (misses + false positives + identity switches) / true animals. Each frame, pairs
  kept from the previous frame stay matched while they still correspond; the rest are matched by
  the Hungarian algorithm. A switch is a true animal matched to another name than before.
- IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN), with the one-to-one name <-> true-individual map that
  maximises the frames in which they correspond (IDTP), over the whole video.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from .poses import Poses


def _present(coords: np.ndarray) -> np.ndarray:
    """(frames, animals): an animal is there when at least 2 keypoints are."""
    return np.isfinite(coords[..., :2]).all(-1).sum(-1) >= 2


def _distances(truth: np.ndarray, tracked: np.ndarray) -> np.ndarray:
    """(T, G, H) mean keypoint distance between every true and tracked animal (NaN when none shared)."""
    d = np.linalg.norm(truth[:, :, None, :, :2] - tracked[:, None, :, :, :2], axis=-1)  # (T, G, H, K)
    shared = np.isfinite(d)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(shared, d, 0.0).sum(-1) / shared.sum(-1)  # NaN where nothing is shared


def _size(truth: np.ndarray) -> np.ndarray:
    xy = truth[..., :2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an absent animal has no size (NaN)
        span = np.nanmax(xy, axis=-2) - np.nanmin(xy, axis=-2)
    return np.sqrt(np.clip(span[..., 0], 1, None) * np.clip(span[..., 1], 1, None))


def tracking_scores(truth: Poses, tracked: Poses, *, threshold: float | None = None) -> dict[str, Any]:
    """IDF1, MOTA, identity switches (and per 1,000 frames), misses and false positives of
    ``tracked`` against ``truth`` (the same frames, animals in any order and number)."""
    if len(truth) != len(tracked):
        raise ValueError(f"{len(tracked)} tracked frames for {len(truth)} true ones")
    truth = truth.select(keypoints=[k for k in truth.keypoints if k in tracked.keypoints])
    tracked = tracked.select(keypoints=truth.keypoints)
    g_on, h_on = _present(truth.coords), _present(tracked.coords)
    with np.errstate(invalid="ignore", all="ignore"):
        dist = _distances(truth.coords, tracked.coords)
        limit = (0.5 * _size(truth.coords) if threshold is None else np.full(g_on.shape, float(threshold)))
        close = (dist < limit[:, :, None]) & g_on[:, :, None] & h_on[:, None, :]
    n_g, n_h = g_on.shape[1], h_on.shape[1]
    misses = false_pos = switches = matches = 0
    previous: dict[int, int] = {}
    for f in range(len(truth)):
        pairs: dict[int, int] = {}
        for g, h in sorted(previous.items(), key=lambda gh: dist[f, gh[0], gh[1]] if close[f, gh[0], gh[1]] else 1e9):
            if close[f, g, h] and h not in pairs.values():  # two animals touching may both be near one name
                pairs[g] = h
        free_g = [g for g in range(n_g) if g_on[f, g] and g not in pairs]
        free_h = [h for h in range(n_h) if h_on[f, h] and h not in pairs.values()]
        if free_g and free_h:
            cost = np.where(close[f][np.ix_(free_g, free_h)], dist[f][np.ix_(free_g, free_h)], 1e9)
            for r, c in zip(*linear_sum_assignment(cost)):
                if cost[r, c] < 1e9:
                    g, h = free_g[r], free_h[c]
                    if g in previous and previous[g] != h:
                        switches += 1
                    pairs[g] = h
        matches += len(pairs)
        misses += int(g_on[f].sum()) - len(pairs)
        false_pos += int(h_on[f].sum()) - len(pairs)
        previous.update(pairs)
    n_true = int(g_on.sum())
    overlap = close.sum(axis=0)  # (G, H): frames in which true g and name h correspond
    rows, cols = linear_sum_assignment(-overlap)
    idtp = int(overlap[rows, cols].sum())
    idfn, idfp = n_true - idtp, int(h_on.sum()) - idtp
    return {
        "idf1": 2 * idtp / (2 * idtp + idfp + idfn) if n_true else float("nan"),
        "mota": 1 - (misses + false_pos + switches) / n_true if n_true else float("nan"),
        "switches": switches,
        "switches_per_1000_frames": 1000 * switches / max(1, len(truth)),
        "misses": misses,
        "false_positives": false_pos,
        "matches": matches,
        "true_animals": n_true,
        "frames": len(truth),
    }
