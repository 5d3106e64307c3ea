"""The body plan a single-animal model is deployed with (`posezoo.runtime.spec.BodySpec`),
measured on its training frames' labels; the runtime's check is `posezoo.runtime.body`."""
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


def body_spec(xy: np.ndarray, keypoints: Sequence[str], pairs: Sequence[tuple[int, int]],
              slack: float) -> BodySpec | None:
    """``xy`` (frames, K, 2) labelled positions in frame pixels (NaN: not labelled), ``pairs``
    the left/right index pairs, ``slack`` the localisation error to allow (frame pixels, e.g.
    two heatmap cells) -> limits as `BodySpec` describes them; None without enough labels."""
    xy = np.asarray(xy, np.float64)
    gap = np.linalg.norm(xy[:, :, None] - xy[:, None], axis=-1)  # (N, K, K), NaN unless both labelled
    together = np.isfinite(gap).sum(0)
    enough = together >= MIN_TOGETHER
    np.fill_diagonal(enough, False)
    if not enough.any():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: pairs never labelled together
        widest, nearest = np.nanmax(gap, 0), np.nanmin(gap, 0)
    limit = [[round(float(MARGIN * widest[i, j] + slack), 1) if enough[i, j] else None
              for j in range(len(keypoints))] for i in range(len(keypoints))]
    sides = [(a, b) for a, b in pairs if enough[a, b] and nearest[a, b] > 0]
    return BodySpec(limit=limit, pairs=[[keypoints[a], keypoints[b]] for a, b in sides],
                    pair_limit=[round(float(nearest[a, b] / 2), 1) for a, b in sides])
