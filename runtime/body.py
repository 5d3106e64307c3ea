"""The body-plan check: a keypoint that its own animal's other keypoints place somewhere else
gets a score below pcutoff instead of a confident point on a distant look-alike.

A single-animal model's spec may carry a ``body`` section, measured on the labelled training
frames (`posezoo.training.body`): for every pair of keypoints the farthest apart they may lie
(``limit``, frame pixels: the largest labelled distance with a margin), and for left/right pairs
how close they may come (``pair_limit``: half the smallest labelled distance). Per frame:

1. Two sides of a left/right pair that land on one spot (both ears on the same ear) cannot both
   be right: the weaker is demoted.
2. A keypoint farther than its limit from most of the confident keypoints that can vouch for it
   (at least two) is demoted, the worst first, until every confident keypoint is within reach
   of most of the rest. One far-off point never outvotes the body; two keypoints alone decide
   nothing.

Demoted keypoints keep their position; their score becomes ``min(score, pcutoff) / 2``, so
everything that reads likelihoods against pcutoff (plots, DeepLabCut's tools, filtering) treats
them as not found.
"""
from __future__ import annotations

import numpy as np

from .spec import Spec


class BodyCheck:
    """The rule of the module docstring for one spec, its limits read once (it runs on every batch)."""

    def __init__(self, spec: Spec) -> None:
        assert spec.body is not None
        index = {name: i for i, name in enumerate(spec.keypoints)}
        self.pcutoff = spec.pcutoff
        self.pairs = [(index[a], index[b], near) for (a, b), near in zip(spec.body.pairs, spec.body.pair_limit)]
        self.limit = np.array([[np.nan if v is None else v for v in row] for row in spec.body.limit], np.float32)
        self.known = np.isfinite(self.limit) & ~np.eye(len(self.limit), dtype=bool)

    def __call__(self, coords: np.ndarray) -> np.ndarray:
        """``coords`` (..., K, 3) x, y, score in frame pixels -> a copy with the implausible
        keypoints scored below pcutoff."""
        pcutoff = self.pcutoff
        out = np.array(coords, dtype=np.float32, copy=True)
        flat = out.reshape(-1, *out.shape[-2:])  # (P, K, 3): one row per animal per frame
        xy, score = flat[..., :2], flat[..., 2]
        confident = np.isfinite(score) & (score >= pcutoff) & np.isfinite(xy).all(-1)
        gap = np.sqrt(((xy[:, :, None] - xy[:, None]) ** 2).sum(-1))  # (P, K, K)
        rejected = np.zeros_like(confident)

        for a, b, near in self.pairs:
            both = confident[:, a] & confident[:, b] & (gap[:, a, b] < near)
            weaker = np.where(score[:, a] < score[:, b], a, b)
            rejected[both, weaker[both]] = True

        with np.errstate(invalid="ignore"):
            far = gap > self.limit  # NaN limits compare False
        while True:
            alive = confident & ~rejected
            voters = alive[:, None, :] & self.known[None]  # (P, K, K)
            support = voters.sum(-1)
            against = (voters & far).sum(-1)
            share = np.where(alive & (support >= 2), against / np.maximum(support, 1), 0.0)
            worst = (share + 1e-6 * (1 - np.nan_to_num(score))).argmax(-1)  # equal shares: the less sure one
            rows = np.flatnonzero(share[np.arange(len(share)), worst] > 0.5)
            if not len(rows):
                break
            rejected[rows, worst[rows]] = True

        score[rejected] = np.minimum(score[rejected], np.float32(pcutoff)) * np.float32(0.5)  # below pcutoff
        return out


def check_body(coords: np.ndarray, spec: Spec) -> np.ndarray:
    """``coords`` (..., K, 3) x, y, score in frame pixels -> a copy with the keypoints that
    ``spec.body`` finds implausible scored below ``spec.pcutoff`` (once; `BodyCheck` for many batches)."""
    return BodyCheck(spec)(coords)
