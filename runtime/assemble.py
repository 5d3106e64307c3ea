"""Assembly: a bottom-up model's candidate keypoints and part affinities -> animals (numpy/scipy).

The graph of a multi-animal model ends in candidates (the highest peaks of each keypoint's
heatmap) and, for every edge of its part-affinity graph, the affinity of each candidate pair.
This module groups them into animals the way DeepLabCut's assembler does
(``deeplabcut/core/inferenceutils.py``, ``Assembler`` with its defaults), written anew:

1. per keypoint keep the ``max_animals`` best candidates scoring at least ``min_score``;
2. per edge, the optimal one-to-one pairing of its two keypoints' candidates (Hungarian,
   maximising affinity); pairs weaker than ``min_affinity`` are not linked;
3. connected groups of links holding every keypoint once are animals as they stand; the other
   links, strongest first, each seed an animal that grows along its strongest links to
   candidates not yet taken and keypoints it lacks;
4. with more animals than ``max_animals``, partial animals with no keypoint in common are
   joined where an unused link connects them; partial animals then take what links remain;
5. animals held by fewer than ``min_links`` links are dropped, animals overlapping a stronger one
   by ``max_overlap`` or more are suppressed, and at most ``max_animals`` (the most complete) stay.

Beyond DeepLabCut: a spec measured on labelled frames gives the nearest and farthest two
keypoints of one animal may lie apart (``assembly.nearest``/``farthest``). With them each edge
is paired among the candidate pairs within that range, and no animal, growth or join puts two
candidates at a distance outside it in one animal. Where two animals cross, the part-affinity
fields of both overlap and pair one animal's head with the other's body; such an animal is far
too short between snout and tail, and is not assembled (the synthetic 3-mouse benchmark: identity
switches after tracking 82 -> 47 over twelve videos).

Unique keypoints (one per frame, DeepLabCut's ``uniquebodyparts``) never join animals: each is
its best candidate when that scores above ``min_score``.
"""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from .poses import Poses
from .spec import Spec

Edge = tuple[int, int]


@dataclass(frozen=True)
class AssemblyParams:
    """See the module docstring; the defaults are DeepLabCut's. ``nearest`` and ``farthest``
    (K, K) are the distances two keypoints of one animal may lie apart (NaN: any), or None."""

    max_animals: int
    min_score: float = 0.1
    min_affinity: float = 0.05
    min_links: int = 2
    max_overlap: float = 0.8
    nearest: np.ndarray | None = field(default=None, compare=False)
    farthest: np.ndarray | None = field(default=None, compare=False)


class _Animal:
    """An animal being assembled: candidate id per keypoint, its links and their affinity sum."""

    __slots__ = ("by_part", "ids", "links", "affinity")

    def __init__(self) -> None:
        self.by_part: dict[int, int] = {}
        self.ids: set[int] = set()
        self.links: list[tuple[int, int, float]] = []
        self.affinity = 0.0

    def add_link(self, a: int, b: int, w: float, part: np.ndarray) -> bool:
        """Add link (a, b); False when it would give a keypoint a second candidate."""
        if a in self.ids and b in self.ids:
            self.links.append((a, b, w))
            self.affinity += w
            return False
        if part[a] in self.by_part and part[b] in self.by_part:
            return False
        for c in (a, b):
            if c not in self.ids and part[c] not in self.by_part:
                self.by_part[int(part[c])] = c
                self.ids.add(c)
        self.links.append((a, b, w))
        self.affinity += w
        return True

    def shares_part(self, other: _Animal) -> bool:
        return not self.by_part.keys().isdisjoint(other.by_part.keys())

    def merge(self, other: _Animal, part: np.ndarray) -> None:
        for a, b, w in other.links:
            self.add_link(a, b, w, part)


def assemble(candidates: np.ndarray, affinities: np.ndarray, graph: Sequence[Edge], n_keypoints: int,
             params: AssemblyParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame: ``candidates`` (C, k, 3) x, y, score (the first ``n_keypoints`` rows are the
    animals' keypoints, the rest unique keypoints), ``affinities`` (E, k, k) for ``graph``'s
    edges -> ``animals`` (max_animals, n_keypoints, 3) and ``unique`` (C - n_keypoints, 3), both
    x, y, score with NaN where nothing was found (animals fill the first rows), and ``slots``
    (max_animals, n_keypoints): which candidate each keypoint is (-1 where none)."""
    C, k, _ = candidates.shape
    K = n_keypoints
    animals = np.full((params.max_animals, K, 3), np.nan, np.float32)
    slots = np.full((params.max_animals, K), -1, np.int64)
    unique = np.full((C - K, 3), np.nan, np.float32)
    for u in range(C - K):
        best = int(np.argmax(candidates[K + u, :, 2]))
        if candidates[K + u, best, 2] > params.min_score:
            unique[u] = candidates[K + u, best]
    # Kept candidates of every keypoint get ids 0..n-1; part[id] / slot[id] say which they are.
    scores = candidates[:K, :, 2]
    order = np.argsort(-scores, axis=1, kind="stable")[:, :params.max_animals]
    keep = np.take_along_axis(scores, order, 1) >= params.min_score
    part, slot = np.nonzero(keep)
    slot = order[part, slot]
    if not len(part):
        return animals, unique, slots
    if K == 1 or params.max_animals == 1:
        found = _without_links(part, slot, K, params.max_animals)
    else:
        ident = np.full((K, k), -1, np.int64)
        ident[part, slot] = np.arange(len(part))
        xy = candidates[part, slot, :2]
        fits = _fits(xy, part, params)
        if fits is not None:
            affinities = _within_reach(affinities, graph, ident, fits)
        links = _best_links(affinities, graph, ident, params.min_affinity)
        found = _prune(_build(links, part, K, params.max_animals, fits), xy, params)
    for row, animal in enumerate(found[:params.max_animals]):
        ids = np.fromiter(animal.by_part.values(), np.int64)
        animals[row, part[ids]] = candidates[part[ids], slot[ids]]
        slots[row, part[ids]] = slot[ids]
    return animals, unique, slots


def assemble_batch(candidates: np.ndarray, affinities: np.ndarray, graph: Sequence[Edge], n_keypoints: int,
                   params: AssemblyParams, identity: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`assemble` over a batch: (N, C, k, 3), (N, E, k, k) -> (N, max_animals, K, 3), (N, U, 3).

    With ``identity`` (N, C, k, I), the identity head's probabilities at the candidates, animal
    rows are the individuals instead (I rows): each animal goes to the individual its keypoints
    vote for, one animal per individual (Hungarian on the mean probabilities)."""
    n, u = len(candidates), candidates.shape[1] - n_keypoints
    rows = params.max_animals if identity is None else identity.shape[-1]
    animals = np.full((n, rows, n_keypoints, 3), np.nan, np.float32)
    unique = np.full((n, u, 3), np.nan, np.float32)
    for f in range(n):
        found, unique[f], slots = assemble(candidates[f], affinities[f], graph, n_keypoints, params)
        if identity is None:
            animals[f] = found
        else:
            animals[f, _identity_rows(identity[f, :n_keypoints], slots)] = found
    return animals, unique


def _identity_rows(identity: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """The individual row of each assembled animal (empty animals take the rows left over)."""
    n_ind = identity.shape[-1]
    votes = np.zeros((len(slots), n_ind))
    for a, row in enumerate(slots):
        parts = np.flatnonzero(row >= 0)
        if len(parts):
            votes[a] = identity[parts, row[parts]].mean(0)
    r, c = linear_sum_assignment(votes, maximize=True)
    out = np.full(len(slots), -1, np.int64)
    out[r] = c
    spare = iter(sorted(set(range(n_ind)) - set(out[out >= 0].tolist())))
    for a in np.flatnonzero(out < 0):
        out[a] = next(spare)
    return out


def _without_links(part: np.ndarray, slot: np.ndarray, K: int, max_animals: int) -> list[_Animal]:
    """One keypoint: every kept candidate is an animal. One animal: the best of each keypoint."""
    if K == 1:
        out = []
        for i in range(len(part)):
            animal = _Animal()
            animal.by_part[0] = i
            animal.ids.add(i)
            out.append(animal)
        return out
    animal = _Animal()
    for i, p in enumerate(part):  # ids run in score order per keypoint: the first is the best
        if int(p) not in animal.by_part:
            animal.by_part[int(p)] = i
            animal.ids.add(i)
    return [animal]


def _best_links(affinities: np.ndarray, graph: Sequence[Edge], ident: np.ndarray,
                min_affinity: float) -> list[tuple[int, int, float]]:
    """Per edge, the optimal one-to-one pairing (maximum total affinity) of the two keypoints'
    kept candidates. Negative affinities (a field pointing the other way) count as 0: such
    pairs are never linked. Up to 4 candidates a side every pairing is scored at once for all
    edges (the video case: a few animals); larger ones go to the Hungarian solver edge by edge."""
    kept = [np.flatnonzero(row >= 0) for row in ident]
    size = max(len(k) for k in kept)
    aff = np.nan_to_num(np.maximum(affinities, 0.0), nan=0.0)
    E = len(graph)
    if size <= _BRUTE_FORCE:
        # Kept candidates sit anywhere in each keypoint's row: gather them into (E, size, size),
        # zero-padded (a padded pairing has affinity 0 and is never a link).
        counts = np.array([len(k) for k in kept])
        if ((ident[:, :size] >= 0) == (np.arange(size) < counts[:, None])).all():
            # the usual case: candidates come sorted by score, so the kept ones lead each row
            src, dst = np.array([g[0] for g in graph]), np.array([g[1] for g in graph])
            mask = (np.arange(size) < counts[src, None])[:, :, None] & (np.arange(size) < counts[dst, None])[:, None]
            sub = np.where(mask, aff[:, :size, :size], 0.0)
        else:
            sub = np.zeros((E, size, size))
            for e, (s, t) in enumerate(graph):
                rows, cols = kept[s], kept[t]
                if len(rows) and len(cols):
                    sub[e, :len(rows), :len(cols)] = aff[e][rows][:, cols]
        perms = _PERMUTATIONS[size]
        totals = sub[:, np.arange(size), perms].astype(np.float64).sum(-1)  # (E, permutations)
        top = totals.max(axis=1, keepdims=True)
        best = perms[np.argmax(totals, axis=1)]  # (E, size): column of each row
        weight = np.take_along_axis(sub, best[:, :, None], 2)[..., 0]  # (E, size)
        # where two pairings tie (DeepLabCut's affinities are rounded to 3 decimals), the pairing
        # is the Hungarian solver's, as in DeepLabCut
        tied = set(np.flatnonzero((totals == top).sum(axis=1) > 1).tolist())
        links = []
        for e in range(E):
            if e in tied:
                links += _solved(aff[e], graph[e], kept, ident, min_affinity)
                continue
            s, t = graph[e]
            for i in np.flatnonzero(weight[e] >= max(min_affinity, 1e-12)):
                links.append((int(ident[s, kept[s][i]]), int(ident[t, kept[t][best[e, i]]]), float(weight[e, i])))
        return links
    links = []
    for e in range(E):
        links += _solved(aff[e], graph[e], kept, ident, min_affinity)
    return links


def _solved(aff: np.ndarray, edge: Edge, kept: list[np.ndarray], ident: np.ndarray,
            min_affinity: float) -> list[tuple[int, int, float]]:
    """One edge's links by the Hungarian solver over its kept candidates (score order)."""
    s, t = edge
    rows, cols = kept[s], kept[t]
    if not len(rows) or not len(cols):
        return []
    sub = aff[rows][:, cols]
    r, c = linear_sum_assignment(sub, maximize=True)
    return [(int(ident[s, rows[i]]), int(ident[t, cols[j]]), float(sub[i, j])) for i, j in zip(r, c)
            if sub[i, j] >= min_affinity and sub[i, j] > 0]


_BRUTE_FORCE = 4
_PERMUTATIONS = {n: np.array(list(itertools.permutations(range(n))), np.int64).reshape(-1, n)
                 for n in range(1, _BRUTE_FORCE + 1)}


def _within_reach(affinities: np.ndarray, graph: Sequence[Edge], ident: np.ndarray, fits: np.ndarray) -> np.ndarray:
    """``affinities`` with the kept candidate pairs of each edge that `_fits` rules out set to 0
    (never linked): each edge is paired among the plausible ones."""
    src, dst = np.array([g[0] for g in graph], np.intp), np.array([g[1] for g in graph], np.intp)
    a, b = ident[src][:, :, None], ident[dst][:, None, :]  # (E, k, 1), (E, 1, k): -1 where not kept
    ok = (a < 0) | (b < 0) | fits[np.maximum(a, 0), np.maximum(b, 0)]
    return np.where(ok, affinities, 0.0)


def _fits(xy: np.ndarray, part: np.ndarray, params: AssemblyParams) -> np.ndarray | None:
    """Which two kept candidates (at ``xy``, of keypoints ``part``) may be keypoints of one animal
    by their distance (True where the labels say nothing); None without a shape."""
    if params.nearest is None or params.farthest is None:
        return None
    gap = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    pair = np.ix_(part, part)
    return ~((gap < params.nearest[pair]) | (gap > params.farthest[pair]))  # NaN limits compare False


def _build(links: list[tuple[int, int, float]], part: np.ndarray, K: int, max_animals: int,
           fits: np.ndarray | None = None) -> list[_Animal]:
    lookup: dict[int, dict[int, tuple[int, int, float]]] = {}
    for link in links:
        a, b, _ = link
        lookup.setdefault(a, {})[b] = link
        lookup.setdefault(b, {})[a] = link
    animals: list[_Animal] = []
    taken: set[int] = set()

    # Complete, unambiguous animals first: groups of linked candidates with every keypoint once.
    for group in _components(links):
        if len(group) == K and (fits is None or fits[np.ix_(list(group), list(group))].all()):
            animal = _Animal()
            for a, b, w in links:
                if a in group and animal.add_link(a, b, w, part):
                    lookup[a].pop(b, None)
                    lookup[b].pop(a, None)
            taken |= animal.ids
            animals.append(animal)
    if len(animals) == max_animals:
        return animals

    for a, b, w in sorted(links, key=lambda x: -x[2]):
        if a in taken or b in taken:
            continue
        animal = _Animal()
        animal.add_link(a, b, w, part)
        _grow(animal, lookup, taken, part, K, fits)
        for x, y, _ in animal.links:
            lookup[x].pop(y, None)
            lookup[y].pop(x, None)
        taken |= animal.ids
        animals.append(animal)

    if len(animals) > max_animals:  # join partial animals an unused link connects
        owner = {i: animal for animal in animals if len(animal.by_part) != K for i in animal.ids}
        used = {(x, y) for animal in animals for x, y, _ in animal.links}
        for a, b, w in links:
            if (a, b) in used or a not in owner or b not in owner:
                continue
            first, second = owner[a], owner[b]
            if first is second or first.shares_part(second):
                continue
            if fits is not None and not fits[np.ix_(list(first.ids), list(second.ids))].all():
                continue
            first.merge(second, part)
            first.add_link(a, b, w, part)
            animals.remove(second)
            for i in second.ids:
                owner[i] = first
    for animal in animals:  # partial animals take what links remain
        if len(animal.by_part) != K:
            _grow(animal, lookup, taken, part, K, fits)
            taken |= animal.ids
    return animals


def _grow(animal: _Animal, lookup: dict[int, dict[int, tuple[int, int, float]]], taken: set[int],
          part: np.ndarray, K: int, fits: np.ndarray | None = None) -> None:
    """Add the strongest links from the animal to candidates not taken (and, with ``fits``, at
    a plausible distance from all its keypoints), keypoint by keypoint."""
    heap: list[tuple[float, int, tuple[int, int, float]]] = []
    seen: set[tuple[int, int]] = set()
    count = 0

    def push(i: int) -> None:
        nonlocal count
        for j, link in lookup.get(i, {}).items():
            if j in animal.ids or (link[0], link[1]) in seen:
                continue
            seen.add((link[0], link[1]))
            heapq.heappush(heap, (-link[2], count, link))
            count += 1

    for i in list(animal.ids):
        push(i)
    while heap and len(animal.by_part) < K:
        _, _, (a, b, w) = heapq.heappop(heap)
        new = b if a in animal.ids else a if b in animal.ids else None
        if new is None or new in taken:
            continue
        if fits is not None and not fits[new, list(animal.ids)].all():
            continue
        if animal.add_link(a, b, w, part):
            push(new)


def _components(links: list[tuple[int, int, float]]) -> list[set[int]]:
    parent: dict[int, int] = {}

    def root(i: int) -> int:
        while parent.setdefault(i, i) != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, _ in links:
        parent[root(a)] = root(b)
    groups: dict[int, set[int]] = {}
    for i in list(parent):
        groups.setdefault(root(i), set()).add(i)
    return list(groups.values())


def _prune(animals: list[_Animal], xy: np.ndarray, params: AssemblyParams) -> list[_Animal]:
    """Drop weakly linked animals, suppress overlapping ones, keep the most complete."""
    animals = [a for a in animals if a.by_part and not 0 < len(a.links) < params.min_links]
    if 0 < params.max_overlap < 1 and len(animals) > 1:
        ranked = sorted(animals, key=lambda a: -a.affinity)
        kept: list[_Animal] = []
        for animal in ranked:
            if all(_overlap(animal, other, xy) < params.max_overlap for other in kept):
                kept.append(animal)
        animals = kept
    if len(animals) > params.max_animals:
        animals = sorted(animals, key=lambda a: -len(a.by_part))
    return animals


def _overlap(a: _Animal, b: _Animal, xy: np.ndarray) -> float:
    """The smaller of the two animals' fractions of keypoints inside their boxes' intersection."""
    pa, pb = xy[list(a.ids)], xy[list(b.ids)]
    lo = np.maximum(pa.min(0), pb.min(0))
    hi = np.minimum(pa.max(0), pb.max(0))
    if (hi < lo).any():
        return 0.0
    ina = ((pa >= lo) & (pa <= hi)).all(1).sum() / len(pa)
    inb = ((pb >= lo) & (pb <= hi)).all(1).sum() / len(pb)
    return float(min(ina, inb))


def graph_indices(spec: Spec) -> list[Edge]:
    """The spec's part-affinity edges as keypoint index pairs."""
    assert spec.multi is not None
    index = {name: i for i, name in enumerate(spec.keypoints)}
    return [(index[a], index[b]) for a, b in spec.multi.graph]


def params_of(spec: Spec, shape: bool = True) -> AssemblyParams:
    """The spec's assembly parameters; ``shape=False`` leaves out its distances (affinity alone)."""
    assert spec.multi is not None and spec.assembly is not None
    a = spec.assembly
    near, far = (_matrix(a.nearest), _matrix(a.farthest)) if shape and a.nearest is not None else (None, None)
    return AssemblyParams(spec.multi.max_animals, a.min_score, a.min_affinity, a.min_links, a.max_overlap, near, far)


def _matrix(rows: list[list[float | None]] | None) -> np.ndarray | None:
    return None if rows is None else np.array([[np.nan if v is None else v for v in row] for row in rows], np.float64)


def poses_from_candidates(spec: Spec, candidates: np.ndarray, affinities: np.ndarray,
                          identity: np.ndarray | None = None, *, shape: bool = True) -> Poses:
    """A multi-animal graph's outputs for a batch (candidates already in frame pixels) -> the
    `Poses` of the assembled animals, one row per individual of the spec (NaN where fewer).
    ``shape=False``: assembly by affinity alone, without the spec's keypoint distances."""
    assert spec.multi is not None
    K = len(spec.keypoints)
    animals, unique = assemble_batch(candidates, affinities, graph_indices(spec), K, params_of(spec, shape),
                                     identity if spec.multi.identity else None)
    n_ind = len(spec.multi.individuals)
    coords = np.full((len(candidates), n_ind, K, 3), np.nan, np.float32)
    coords[:, :animals.shape[1]] = animals[:, :n_ind]
    return Poses(coords, list(spec.keypoints), spec.individuals, unique=unique if spec.unique_keypoints else None,
                 unique_keypoints=spec.unique_keypoints, skeleton=[(a, b) for a, b in spec.skeleton],
                 scorer=spec.name, model=spec.name)
