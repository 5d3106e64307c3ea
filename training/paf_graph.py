"""The part-affinity graph of a multi-animal model: which keypoint pairs get a field.

DeepLabCut links every pair of keypoints, and when that makes 105 edges or more (15+ keypoints)
it prunes the graph to an average degree of 6 (Lauer et al. 2022, Suppl. Fig. S9c) at random.
We prune by a measured rule instead: pairs that are close on the labelled animals carry the
most reliable fields (short limbs rarely cross another animal), so the edges kept are a
spanning tree of the shortest median labelled lengths, then the next shortest ones until the
average degree is reached. ``skeleton`` uses the project's skeleton as the graph.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: DeepLabCut's thresholds: prune from this many edges, down to this average degree.
PRUNE_FROM_EDGES = 105
AVERAGE_DEGREE = 6


def paf_graph(keypoints: Sequence[str], rule: str, *, skeleton: Sequence[Sequence[str]] = (),
              labels: np.ndarray | None = None) -> list[tuple[str, str]]:
    """Edges (name pairs) for ``rule`` "all" or "skeleton"; ``labels`` (frames, animals, K, 2)
    measure the pair lengths that pruning needs."""
    names = list(keypoints)
    if rule == "skeleton":
        edges = [(str(a), str(b)) for a, b in skeleton if a in names and b in names and a != b]
        if not edges:
            raise ValueError("multi.graph is 'skeleton' but the project's skeleton links none of the keypoints "
                             f"{names}; add a skeleton to config.yaml or use multi.graph: all")
        return list(dict.fromkeys(edges))
    if rule != "all":
        raise ValueError(f"multi.graph must be 'all' or 'skeleton', got {rule!r}")
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    if len(pairs) >= PRUNE_FROM_EDGES:
        pairs = _prune(len(names), pairs, _median_lengths(labels, len(names)))
    return [(names[i], names[j]) for i, j in pairs]


def _median_lengths(labels: np.ndarray | None, k: int) -> np.ndarray:
    lengths = np.full((k, k), np.inf)
    if labels is None:
        return lengths
    xy = np.asarray(labels, np.float64).reshape(-1, k, 2)
    d = np.linalg.norm(xy[:, :, None] - xy[:, None, :], axis=-1)  # (animals, K, K)
    with np.errstate(all="ignore"):
        med = np.nanmedian(np.where(np.isfinite(d), d, np.nan), axis=0)
    return np.where(np.isfinite(med), med, np.inf)


def _prune(k: int, pairs: list[tuple[int, int]], lengths: np.ndarray) -> list[tuple[int, int]]:
    ranked = sorted(pairs, key=lambda p: (lengths[p], p))
    parent = list(range(k))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    kept = []
    for i, j in ranked:  # Kruskal: the shortest spanning tree keeps every keypoint reachable
        if root(i) != root(j):
            parent[root(i)] = root(j)
            kept.append((i, j))
    budget = AVERAGE_DEGREE * k // 2
    for pair in ranked:
        if len(kept) >= budget:
            break
        if pair not in kept:
            kept.append(pair)
    return sorted(kept)
