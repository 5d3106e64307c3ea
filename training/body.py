"""The body plan a model is deployed with, measured on its training frames' labels: a
single-animal model's `posezoo.runtime.spec.BodySpec` (the runtime's check is
`posezoo.runtime.body`), a multi-animal model's keypoint distances for assembly
(`AssemblySpec.nearest`/``farthest``, read by `posezoo.runtime.assemble`)."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from posezoo.runtime.spec import BodySpec

#: Keypoints may lie this much farther apart than the farthest labelled (a stretch, a pose the
#: few labelled frames did not show), plus `slack`.
MARGIN = 1.5
#: Fewer frames labelling two keypoints together say nothing about how far apart they can be.
MIN_TOGETHER = 3
#: Assembly keeps one animal's keypoints within the labelled distances widened by this fraction
#: (plus `slack`): tight, because where two animals cross a mixed pose is only somewhat off (the
#: synthetic 3-mouse benchmark, 12 videos: 0.05 / 0.1 / 0.15 / 0.25 gave 51 / 45-48 / 49 / 69
#: identity switches; none 82).
ASSEMBLY_MARGIN = 0.1


def _labelled_gaps(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``xy`` (animals, K, 2) -> the widest and nearest labelled distance of each keypoint pair
    (K, K) and whether they were labelled together at least `MIN_TOGETHER` times."""
    xy = np.asarray(xy, np.float64)
    gap = np.linalg.norm(xy[:, :, None] - xy[:, None], axis=-1)  # (N, K, K), NaN unless both labelled
    enough = np.isfinite(gap).sum(0) >= MIN_TOGETHER
    np.fill_diagonal(enough, False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: pairs never labelled together
        return np.nanmax(gap, 0), np.nanmin(gap, 0), enough


def body_spec(xy: np.ndarray, keypoints: Sequence[str], pairs: Sequence[tuple[int, int]],
              slack: float) -> BodySpec | None:
    """``xy`` (frames, K, 2) labelled positions in frame pixels (NaN: not labelled), ``pairs``
    the left/right index pairs, ``slack`` the localisation error to allow (frame pixels, e.g.
    two heatmap cells) -> limits as `BodySpec` describes them; None without enough labels."""
    widest, nearest, enough = _labelled_gaps(xy)
    if not enough.any():
        return None
    limit = [[round(float(MARGIN * widest[i, j] + slack), 1) if enough[i, j] else None
              for j in range(len(keypoints))] for i in range(len(keypoints))]
    sides = [(a, b) for a, b in pairs if enough[a, b] and nearest[a, b] > 0]
    return BodySpec(limit=limit, pairs=[[keypoints[a], keypoints[b]] for a, b in sides],
                    pair_limit=[round(float(nearest[a, b] / 2), 1) for a, b in sides])


def assembly_distances(xy: np.ndarray, slack: float
                       ) -> tuple[list[list[float | None]], list[list[float | None]]] | None:
    """``xy`` (animals, K, 2) labelled positions of single animals in frame pixels (NaN: not
    labelled), ``slack`` the localisation error to allow (frame pixels) -> (nearest, farthest):
    how near and far apart two keypoints of one animal may lie, the labelled extremes widened by
    `ASSEMBLY_MARGIN` and ``slack`` (None where not labelled together often enough); None
    without enough labels."""
    widest, nearest, enough = _labelled_gaps(xy)
    if not enough.any():
        return None
    k = len(widest)
    low = [[round(max(0.0, float(nearest[i, j] * (1 - ASSEMBLY_MARGIN) - slack)), 1) if enough[i, j] else None
            for j in range(k)] for i in range(k)]
    high = [[round(float(widest[i, j] * (1 + ASSEMBLY_MARGIN) + slack), 1) if enough[i, j] else None
             for j in range(k)] for i in range(k)]
    return low, high
