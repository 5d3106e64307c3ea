"""Multi-animal tracking: each frame's assembled animals -> the same individual names all video long.

Two passes over the detections, in the spirit of DeepLabCut's tracklets + stitching:

1. Tracklets (`Linker`, streaming). Each open tracklet predicts its centroid with a
   constant-velocity Kalman filter and shifts its last keypoints along; a frame's animals are
   linked to tracklets by the Hungarian algorithm on a keypoint distance (in units of the
   animal's size), with a gate and a cost for a tracklet left unlinked (`_assign`). A link
   with a close rival is cut rather than guessed: where two animals became one (a lost tracklet,
   still open, was as near), one became two (a new animal is as near) or a lost tracklet comes
   back beside another, the tracklet ends and a new one begins, so a tracklet does not run from one
   animal onto another. A tracklet unseen for ``max_gap`` frames ends. Each tracklet keeps a
   summary (ends, first sightings, body sizes measured when the animal is alone, colours (beside
   other animals, only of the keypoints away from theirs), identity votes); each detection row
   keeps its tracklet's number.
   With colours (to name the pieces by), a new animal within the gate of a tracklet cuts it
   too, and a tracklet whose animal may be two seen as one (another was lost beside it, or fewer
   animals are seen than the project has) is cut where a new animal appears near it. One that
   covers a lost tracklet remembers where it was when they met; where its one detection had slid
   from its animal onto the one that comes out beside it, the rows since then go to that
   animal's tracklet (`_slid`).
2. Stitching (`stitch`): tracklets in order of first frame get the project's individuals, the
   ones that begin together (within `_TOGETHER` frames: animals that just parted) jointly: by
   how well each continues a name's tracklet before it (where that animal was going), by body
   size, by colour (where the animals differ; `appearance`) and by identity votes. Tracklets
   seen in `_SOLID` frames or more are named first; the brief fragments left where animals
   tangle then go into the gaps. Then, with colours, stretches that two names hold between the
   frames where both change tracklets are exchanged where that makes motion through both ends
   and colours over whole chains agree better (`_exchange`): the naming in time order decided
   with what it had seen so far.

The second pass reads the detections again and writes each row under its tracklet's name (with
``min_length`` > 1, not those of short tracklets that met another animal, nor the first row of a
tracklet that began beside another, nor the last rows of one that an unseen animal came out
beside: where assembly mixes touching animals most). Memory
holds the open tracklets, one summary per tracklet and one small integer per detection row.
Tracking is deterministic: the same detections give the same names.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import zip_longest

import numpy as np
from scipy.optimize import linear_sum_assignment

from .poses import Poses

#: Raised whenever the same detections and settings would give other tracks, so that tables
#: tracked by an earlier posezoo are tracked again (the package version does not say so).
REVISION = 6
_BIG = 1e6
_JUST_LOST = 3  # frames: a tracklet lost this recently beside a covering one may be one more under it
_SIZE_MEMORY = 500  # body sizes kept per tracklet and per individual
_SIZE_SAMPLES = 5  # fewer and a body size says too little
_SIZE_STEP = 0.1  # a 10 % difference in body size costs as much as one body size of distance
_EARLY = 10  # first sightings of a tracklet kept, to see where it goes
_LOOK_NOISE = 2.0  # colour levels: no animal's colour is steadier than this
_NEW_NAME = 2.0  # the cost of a name nobody holds yet: a poor continuation costs about this
_UNLIKE = 1.0  # colour cost (`_look_cost`) from which two animals count as told apart
_COVER_REACH = 2.0  # gates: a tracklet lost this near a linked animal may be under it ...
_COVER_GAPS = 4  # ... for this many max_gaps (1-4 measured alike) ...
_COVER_SPLIT = 2.0  # ... and a new animal this many gates near cuts it where they part
_EXCHANGE_GAIN = 1.0  # a smaller gain is no reason to overturn the naming in time order
_EXCHANGE_SPAN = 2  # an exchange spans at most this many changes of tracklet
_EXCHANGE_ROUNDS = 100  # at most; a round exchanges each name once and rounds end when none gains
_SOLID = 10  # sightings: tracklets with fewer are named after the others, into the gaps they leave
_CROWD_REACH = 0.9  # animal sizes: a keypoint this near another animal's may show that one's colours
_TOGETHER = 1  # frames: tracklets that begin this near in time are named jointly (animals that just parted)
_UNLINKED = 0.75  # gates: the cost of leaving a tracklet unlinked in a frame (`_assign`)
_DOUBT = 5  # frames: the rows of a tracklet this near its cut where an unseen animal came out beside it are doubtful
_TRAIL = 60  # sightings of a covering tracklet kept, to see where it slid (a cover lasts 60 by default)


@dataclass(frozen=True)
class TrackerSettings:
    """``gate``: the largest link cost (keypoint distance / animal size) that still links an
    animal to a tracklet; ``max_gap``: frames a tracklet may go unseen before it ends;
    ``min_keypoints``: fewer visible keypoints than this is no animal; ``ambiguity``: a link whose
    rival costs less than the link plus this much is cut; ``gap_cost``: stitching cost per frame
    between two tracklets of one name; ``size_weight``: how much a change of body size (per 10 %)
    counts in stitching; ``colour_weight``: how much a difference in colour counts (in units of
    the animals' own variation; alike animals cost nothing either way); ``identity_weight``: how
    much an identity head's vote counts;
    ``min_length``: a tracklet spanning fewer frames that met another animal is stitched (it
    carries its animal's motion on) but left out of the results, as DeepLabCut's stitcher leaves
    out tracklets under 10 frames: short tracklets begin and end where animals tangle, and there a
    wrong name costs more than a gap (on the synthetic benchmark 10 instead of 1 gives 8 identity
    switches instead of 28 over four videos, for 0.7 % more missing animals; a detector that
    flickers in a crowded arena loses more). Above 1 it also leaves out the first frame of a
    tracklet that began beside another animal: where two touching animals are first told apart,
    assembly mixes their keypoints most (the benchmark: 4 switches instead of 8, 1.1 % more
    missing animals), and a tracklet's last `_DOUBT` frames where an animal unseen till then
    came out beside it: its one detection may have slid onto that one (12 videos: 10 switches
    instead of 6, 0.14 % more missing animals). 1 keeps every detected animal."""

    gate: float = 1.0
    max_gap: int = 15
    min_keypoints: int = 2
    ambiguity: float = 0.5
    gap_cost: float = 0.02
    size_weight: float = 1.0
    identity_weight: float = 10.0
    colour_weight: float = 1.0
    min_length: int = 10

    def __post_init__(self) -> None:
        if self.gate <= 0 or self.min_keypoints < 1 or self.max_gap < 1 or self.min_length < 1:
            raise ValueError(f"gate must be > 0, min_keypoints, max_gap and min_length >= 1, got {self.gate}, "
                             f"{self.min_keypoints}, {self.max_gap}, {self.min_length}")
        if min(self.size_weight, self.colour_weight, self.identity_weight) < 0:
            raise ValueError("size_weight, colour_weight and identity_weight must be >= 0")

    def to_dict(self) -> dict[str, float]:
        """The settings and the tracker's revision, as recorded in (and compared with) sidecars."""
        return {**asdict(self), "revision": REVISION}


@dataclass
class _Kalman:
    """Constant-velocity Kalman filter on a centroid (x, y, vx, vy)."""

    x: np.ndarray
    P: np.ndarray = field(default_factory=lambda: np.diag([4.0, 4.0, 25.0, 25.0]))

    _F = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    _H = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], float)
    _Q = np.diag([1.0, 1.0, 2.0, 2.0])
    _R = np.diag([4.0, 4.0])

    @classmethod
    def at(cls, xy: np.ndarray) -> _Kalman:
        return cls(np.array([xy[0], xy[1], 0.0, 0.0]))

    def step(self) -> None:
        self.x = self._F @ self.x
        self.P = self._F @ self.P @ self._F.T + self._Q

    def correct(self, xy: np.ndarray) -> None:
        y = xy - self._H @ self.x
        S = self._H @ self.P @ self._H.T + self._R
        K = self.P @ self._H.T @ np.linalg.inv(S)
        self.x = self.x + K @ y
        self.P = (np.eye(4) - K @ self._H) @ self.P


@dataclass
class Tracklet:
    """One animal followed from frame to frame: what stitching needs of it, not its rows."""

    ident: int
    start: int
    last: int  # frame of the last sighting
    kalman: _Kalman
    keypoints: np.ndarray  # (K, 2) last seen position of each keypoint (NaN never seen)
    centroid: np.ndarray  # at the last sighting (filtered)
    scale: float
    early: list[tuple[int, np.ndarray]]  # (frame, centroid) of the first sightings
    sizes: list[float] = field(default_factory=list)  # body size in frames where it was alone
    looks: _Colours = field(default_factory=lambda: _Colours())  # colour descriptors in those frames
    votes: np.ndarray | None = None  # identity-head rows it was assembled in (counts)
    crowded: bool = False  # seen with another animal near at least once
    born_crowded: bool = False  # began beside another animal
    covers: int = -1  # until this frame its animal may be two seen as one (another was lost beside it)
    met: tuple[int, np.ndarray, np.ndarray] | None = None  # (frame, centroid, velocity) when that began
    parted: tuple[int, np.ndarray, np.ndarray] | None = None  # `met`, once it ended as two parting
    under: np.ndarray | None = None  # where the animal lost beside it was last seen, when they met
    trail: deque[tuple[int, np.ndarray]] = field(default_factory=lambda: deque(maxlen=_TRAIL))  # since they met
    slid: int = -1  # from this frame on, its rows are those of tracklet `heir`'s animal ...
    heir: int = -1  # ... (one detection of two animals slid onto the other before they parted)
    seen: int = 1  # frames it was seen in
    doubt: int = -1  # from this frame on its rows may be those of an unseen animal that came out beside it

    @property
    def velocity(self) -> np.ndarray:
        return self.kalman.x[2:]


def _features(animal: np.ndarray) -> tuple[np.ndarray, float]:
    """Centroid and size (sqrt of the keypoint box area, at least 4 px) of one animal."""
    xy = animal[:, :2][np.isfinite(animal[:, :2]).all(1)]
    span = xy.max(0) - xy.min(0)
    return xy.mean(0), max(4.0, float(np.sqrt(max(span[0], 1.0) * max(span[1], 1.0))))


def _own_colours(look: np.ndarray, animals: np.ndarray, a: int, size: float) -> np.ndarray:
    """Animal ``a``'s colour descriptor (K*3) in a crowded frame, NaN for the keypoints within
    `_CROWD_REACH` of its size from another animal's keypoints (their squares may show that one)."""
    xy = animals[a, :, :2]
    others = np.delete(animals[:, :, :2], a, axis=0).reshape(-1, 2)
    others = others[np.isfinite(others).all(1)]
    own = look.copy()
    if len(others):
        near = ~(np.linalg.norm(xy[:, None] - others[None], axis=-1).min(1) > _CROWD_REACH * size)
        own.reshape(len(xy), -1)[near] = np.nan
    return own


def _body_size(animal: np.ndarray) -> float | None:
    """Mean distance between keypoints (turning does not change it), of a pose with all of them."""
    xy = animal[:, :2]
    if len(xy) < 2 or not np.isfinite(xy).all():
        return None
    return float(np.linalg.norm(xy[:, None] - xy[None], axis=-1).sum() / (len(xy) * (len(xy) - 1)))


class Linker:
    """Pass 1: links each frame's animals into tracklets; feed frames in order with `add`."""

    def __init__(self, n_individuals: int, settings: TrackerSettings = TrackerSettings(), *,
                 identity: bool = False) -> None:
        self.n = n_individuals
        self.settings = settings
        self.identity = identity
        self.open: list[Tracklet] = []
        self.tracklets: list[Tracklet] = []  # every tracklet, by number

    def add(self, frame: int, animals: np.ndarray, looks: np.ndarray | None = None) -> np.ndarray:
        """One frame's animals (A, K, 3), NaN rows where fewer, and optionally their colour
        descriptors (A, D) (`appearance.describe`); returns each row's tracklet number (-1: no
        animal)."""
        s = self.settings
        ids = np.full(len(animals), -1, np.int32)
        found = [a for a in range(len(animals)) if np.isfinite(animals[a, :, :2]).all(1).sum() >= s.min_keypoints]
        for t in self.open:
            t.kalman.step()
        features = {a: _features(animals[a]) for a in found}  # (centroid, size) of each animal
        linked, alone = self._link(frame, animals, features, colours=looks is not None)
        for a in found:
            t = linked.get(a) or self._start(frame, animals[a], a, features[a], alone=a in alone)
            ids[a] = t.ident
            if looks is not None:
                t.looks.add([looks[a] if a in alone else _own_colours(looks[a], animals, a, features[a][1])])
        for t in self.open:
            if frame - t.last >= s.max_gap:
                t.trail.clear()  # ended: nothing more to cut
        self.open = [t for t in self.open if frame - t.last < s.max_gap]
        return ids

    @staticmethod
    def _alone(features: dict[int, tuple[np.ndarray, float]], lost: list[Tracklet]) -> set[int]:
        """The animals with no other within two body sizes, seen or ``lost`` (the open tracklets
        that found no animal in this frame: theirs may be under this one): their size and colours
        are their own."""
        gone = [(t.kalman.x[:2], t.scale) for t in lost]
        return {a for a, (c, size) in features.items()
                if all(np.linalg.norm(c - c2) > 2 * max(size, size2)
                       for c2, size2 in [v for b, v in features.items() if b != a] + gone)}

    def _cost(self, t: Tracklet, animal: np.ndarray, centroid: np.ndarray) -> float:
        guess = t.keypoints + (t.kalman.x[:2] - t.centroid)  # the filter has already stepped to this frame
        seen = np.isfinite(guess).all(1) & np.isfinite(animal[:, :2]).all(1)
        if seen.any():
            d = float(np.linalg.norm(guess[seen] - animal[seen, :2], axis=1).mean())
        else:
            d = float(np.linalg.norm(t.kalman.x[:2] - centroid))
        return d / t.scale

    def _link(self, frame: int, animals: np.ndarray, features: dict[int, tuple[np.ndarray, float]],
              *, colours: bool = False) -> tuple[dict[int, Tracklet], set[int]]:
        """Link this frame's animals to the open tracklets; a link with a close rival is cut
        instead (the tracklet ends; the animal begins a new one). With ``colours`` (the frames
        come with colour descriptors) two crossing animals that may differ in colour are cut
        too, rather than paired by a guess. Returns the tracklet of each linked animal and the
        animals that are alone (`_alone`)."""
        found = list(features)
        if not self.open or not found:
            return {}, self._alone(features, self.open)
        s = self.settings
        by_colour = colours and s.colour_weight > 0  # colours will name what is cut here
        # fewer animals seen last frame than the project has: the one unseen may be under any
        hidden = sum(t.last == frame - 1 for t in self.open) < self.n
        cost = np.array([[self._cost(t, animals[a], features[a][0]) for a in found] for t in self.open])
        links = _assign(cost, s.gate)
        linked_rows, linked_cols = {r for r, _ in links}, {c for _, c in links}
        alone = self._alone(features, [t for q, t in enumerate(self.open) if q not in linked_rows])
        out: dict[int, Tracklet] = {}
        cuts: list[tuple[Tracklet, int, int]] = []  # (tracklet, animal that begins anew, `slid`)
        # two animals so close that the pairing is a guess (either way round costs about the same),
        # and whose colours differ: stitching can tell which is which after they part
        crossed = {i for i, (r, c) in enumerate(links) for j, (q, b) in enumerate(links)
                   if i != j and cost[r, b] + cost[q, c] < cost[r, c] + cost[q, b] + s.ambiguity
                   and _may_differ(self.open[r], self.open[q])} if by_colour else set()
        for i, (r, c) in enumerate(links):
            t, covering = self.open[r], self.open[r].covers >= frame
            near = min(cost[r, c] + s.ambiguity, 2 * s.gate)
            # two animals became one: a tracklet unseen in this frame (still open: an animal can
            # walk out from under another a while after it was lost) was as near; where this
            # tracklet may already cover a lost animal, only one lost just now (the cover's cut
            # and slide where they part say the rest)
            merge = any(q != r and q not in linked_rows and cost[q, c] < near
                        and (not covering or self.open[q].last >= frame - _JUST_LOST)
                        for q in range(len(self.open)))
            # one animal became two: a new animal is as near this tracklet or, with colours to
            # name the pieces by, within the gate (within `_COVER_SPLIT` gates while this
            # tracklet's animal may be two seen as one, or an animal is unseen)
            reach = max(near, (_COVER_SPLIT if covering or hidden else 1.0) * s.gate) if by_colour else near
            split = [b for b in range(len(found)) if b != c and b not in linked_cols and cost[r, b] < reach]
            # a lost tracklet comes back beside another: it may be that one's animal that came out
            back = t.last < frame - 1 and any(q != r and cost[q, c] < near for q in range(len(self.open)))
            if merge or split or back or i in crossed:
                slid = -1
                if split and covering:
                    t.parted = t.met
                    other = min(split, key=lambda b: cost[r, b])
                    slid = _slid(t, frame, features[found[c]][0], features[found[other]][0])
                elif split and hidden:  # the unseen one may have been under it, its detection sliding
                    t.doubt = max(t.start + 1, frame - _DOUBT)
                cuts.append((t, found[c], slid))
            else:
                a = found[c]
                out[a] = self._extend(t, frame, animals[a], a, features[a], a in alone)
        rowed = list(self.open)  # the cost matrix's rows, before the cut tracklets leave
        for t, a, slid in cuts:
            self.open.remove(t)
            t.trail.clear()
            out[a] = self._start(frame, animals[a], a, features[a], alone=a in alone)
            if slid >= 0:  # its detection since then was this animal's: written under its name
                t.slid, t.heir = slid, out[a].ident
        # a tracklet lost just now beside a linked animal may be under it: that animal's
        # tracklet may be two animals for a while (cut where they part, with colours to name
        # the pieces; without, motion alone named such pieces worse than the whole)
        for q, lost in enumerate(rowed if by_colour else []):
            if lost.last == frame - 1 and q not in linked_rows:
                near_c = [c for _, c in links if cost[q, c] < _COVER_REACH * s.gate]
                if near_c:
                    a = found[min(near_c, key=lambda c: cost[q, c])]
                    if a in out:
                        cover = out[a]
                        if cover.covers < frame:
                            cover.met = (frame, cover.centroid.copy(), cover.velocity.copy())
                            cover.under = lost.centroid.copy()
                            cover.trail.clear()
                        cover.covers = frame + _COVER_GAPS * s.max_gap
        return out, alone

    def _extend(self, t: Tracklet, frame: int, animal: np.ndarray, row: int, feature: tuple[np.ndarray, float],
                alone: bool) -> Tracklet:
        centroid, scale = feature
        t.kalman.correct(centroid)
        seen = np.isfinite(animal[:, :2]).all(1)
        t.keypoints = t.keypoints + (t.kalman.x[:2] - t.centroid)  # unseen keypoints move along
        t.keypoints[seen] = animal[seen, :2]
        t.centroid, t.scale, t.last = t.kalman.x[:2].copy(), 0.8 * t.scale + 0.2 * scale, frame
        t.seen += 1
        if t.covers >= frame:
            t.trail.append((frame, centroid))
        if len(t.early) < _EARLY:
            t.early.append((frame, centroid))
        self._observe(t, animal, row, alone)
        return t

    def _start(self, frame: int, animal: np.ndarray, row: int, feature: tuple[np.ndarray, float], *,
               alone: bool) -> Tracklet:
        centroid, scale = feature
        t = Tracklet(len(self.tracklets), frame, frame, _Kalman.at(centroid),
                     np.where(np.isfinite(animal[:, :2]).all(1)[:, None], animal[:, :2], np.nan), centroid, scale,
                     [(frame, centroid)], votes=np.zeros(self.n) if self.identity else None, born_crowded=not alone)
        self._observe(t, animal, row, alone)
        self.tracklets.append(t)
        self.open.append(t)
        return t

    @staticmethod
    def _observe(t: Tracklet, animal: np.ndarray, row: int, alone: bool) -> None:
        if t.votes is not None and row < len(t.votes):
            t.votes[row] += 1
        t.crowded |= not alone
        size = _body_size(animal) if alone else None  # alone: nobody else near, seen or lost
        if size is not None and len(t.sizes) < _SIZE_MEMORY:
            t.sizes.append(size)


def _assign(cost: np.ndarray, gate: float) -> list[tuple[int, int]]:
    """Links (tracklet row, animal column) of least total cost within ``gate``, where leaving a
    tracklet unlinked costs `_UNLINKED` gates: not simply as many links as possible (a lost
    fragment's fair link and its neighbour's fair link to another animal would otherwise beat
    the neighbour's near-perfect link to the fragment's animal)."""
    n = len(cost)
    unlinked = np.where(np.eye(n, dtype=bool), _UNLINKED * gate, _BIG)
    rows, cols = linear_sum_assignment(np.hstack([np.where(cost <= gate, cost, _BIG), unlinked]))
    return [(r, c) for r, c in zip(rows, cols) if c < cost.shape[1] and cost[r, c] <= gate]


def _slid(t: Tracklet, frame: int, here: np.ndarray, there: np.ndarray) -> int:
    """Where the covering tracklet ``t`` parts into two animals, one ``here`` (its detection's
    own link) and one ``there``: the first frame of its last sightings that lie nearer the way
    from the animal lost under it to ``here`` than the way from where ``t`` was when they met to
    ``there`` (both taken straight, at even speed): from then on, its one detection of two
    animals was the one that comes out ``here``. -1 where its last sighting was not."""
    if t.met is None or t.under is None:
        return -1
    start, home = t.met[:2]
    slid = -1
    for f, xy in reversed(t.trail):
        w = (f - start) / max(1, frame - start)
        if np.linalg.norm(xy - ((1 - w) * t.under + w * here)) >= np.linalg.norm(xy - ((1 - w) * home + w * there)):
            break
        slid = f
    return slid


# -- pass 2: stitching ---------------------------------------------------------------------------------
def _continues(before: Tracklet, after: Tracklet, s: TrackerSettings) -> float:
    """How badly ``after`` continues ``before``: how far ``after``'s first sightings lie from
    where ``before``'s animal would be, carried on at its last velocity (not forever), in body
    sizes that grow with the gap, plus a cost per frame of gap. Several sightings, not one: where
    two animals parted, both begin beside where one was, but only one goes on its way. A
    tracklet that ended as two animals seen as one parted may have followed either: it also
    continues from where it was before they met."""
    gap = max(1, after.start - before.last)
    ends = [(before.last, before.centroid, before.velocity)] + ([before.parted] if before.parted else [])
    far = min(_distance(last, centroid, velocity, before.scale, after, s) for last, centroid, velocity in ends)
    return min(far, 3.0) + min(s.gap_cost * gap, 1.5)


def _distance(last: int, centroid: np.ndarray, velocity: np.ndarray, scale: float, after: Tracklet,
              s: TrackerSettings) -> float:
    far = 0.0
    for frame, xy in after.early:
        steps = max(1, frame - last)
        reach = centroid + min(steps, s.max_gap) * velocity
        far += float(np.linalg.norm(reach - xy)) / (scale * (1.0 + steps / s.max_gap))
    return far / len(after.early)


def _size_cost(these: list[float], known: list[float]) -> float:
    """How unlike two sets of body-size measurements are, in units of their uncertainty (the
    spread of each over the square root of its count, and no less than `_SIZE_STEP`), capped."""
    if len(these) < _SIZE_SAMPLES or len(known) < _SIZE_SAMPLES:
        return 0.0
    a, b = np.log(these), np.log(known)
    spread = np.hypot(a.std() / np.sqrt(len(a)), b.std() / np.sqrt(len(b)))
    return min(abs(float(np.median(a) - np.median(b))) / max(_SIZE_STEP, 3 * spread), 4.0)


@dataclass
class _Colours:
    """One animal's colour descriptors (the first `_SIZE_MEMORY`), with their per-channel count,
    median and variance kept until more come: stitching and the linker compare them often."""

    samples: list[np.ndarray] = field(default_factory=list)
    _summary: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    _at: int = 0  # samples the summary was taken over

    def __len__(self) -> int:
        return len(self.samples)

    def add(self, looks: list[np.ndarray]) -> None:
        self.samples.extend(looks[: _SIZE_MEMORY - len(self.samples)])

    def summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(finite samples, median, variance) per channel; NaN where a channel has none."""
        if self._summary is None or self._at != len(self.samples):
            a = np.asarray(self.samples)
            count = np.isfinite(a).sum(0)
            some = count > 0
            median, var = np.full(a.shape[1], np.nan), np.full(a.shape[1], np.nan)
            median[some], var[some] = np.nanmedian(a[:, some], 0), np.nanvar(a[:, some], 0)
            self._summary, self._at = (count, median, var), len(self.samples)
        return self._summary


def _look_cost(these: _Colours | _Pooled, known: _Colours | _Pooled) -> float:
    """How unlike two animals' colours are: per channel and keypoint, the difference of medians
    over the animals' own spread (pooled; at least `_LOOK_NOISE` levels), then the root mean
    square over them (a few telling channels count more than many alike ones), capped. Animals
    that look alike cost about nothing; only a difference larger than each animal's variation
    from frame to frame (light, posture, compression) counts."""
    if len(these) < _SIZE_SAMPLES or len(known) < _SIZE_SAMPLES:
        return 0.0
    (na, ma, va), (nb, mb, vb) = these.summary(), known.summary()
    enough = (na >= _SIZE_SAMPLES) & (nb >= _SIZE_SAMPLES)
    if not enough.any():
        return 0.0
    spread = np.sqrt((va[enough] + vb[enough]) / 2).clip(min=_LOOK_NOISE)
    z = np.abs(ma[enough] - mb[enough]) / spread
    return min(float(np.sqrt(np.mean(z ** 2))), 4.0)


class _Names:
    """What each name holds so far: its tracklets in time order, and the body sizes and colours
    measured on them (the first `_SIZE_MEMORY` of each)."""

    def __init__(self, n: int) -> None:
        self.starts: list[list[int]] = [[] for _ in range(n)]
        self.held: list[list[Tracklet]] = [[] for _ in range(n)]
        self.sizes: list[list[float]] = [[] for _ in range(n)]
        self.looks = [_Colours() for _ in range(n)]

    def before(self, name: int, t: Tracklet) -> tuple[bool, Tracklet | None]:
        """Whether ``name`` is free over ``t``'s frames, and its tracklet that ends last before them."""
        i = bisect_right(self.starts[name], t.last)
        prior = self.held[name][i - 1] if i else None
        if prior is not None and prior.last >= t.start:
            return False, None  # following its animal then
        return True, prior

    def give(self, name: int, t: Tracklet) -> None:
        i = bisect_right(self.starts[name], t.start)
        self.starts[name].insert(i, t.start)
        self.held[name].insert(i, t)
        if len(self.sizes[name]) < _SIZE_MEMORY:
            self.sizes[name].extend(t.sizes[: _SIZE_MEMORY - len(self.sizes[name])])
        self.looks[name].add(t.looks.samples)


def _name_in_order(tracklets: list[Tracklet], names: _Names, out: np.ndarray, s: TrackerSettings) -> None:
    """Name ``tracklets`` in order of first frame, those that begin together (`_together`) jointly
    (Hungarian)."""
    n = len(names.held)
    for group in _together(sorted(tracklets, key=lambda t: (t.start, t.ident))):
        cost = np.full((len(group), n), _BIG)
        for r, t in enumerate(group):
            for name in range(n):
                free, before = names.before(name, t)
                if not free:
                    continue
                c = _NEW_NAME if before is None else _continues(before, t, s)
                if t.votes is not None and t.votes.sum():
                    c -= s.identity_weight * t.votes[name] / t.votes.sum()
                c += s.size_weight * _size_cost(t.sizes, names.sizes[name])
                c += s.colour_weight * _look_cost(t.looks, names.looks[name])
                cost[r, name] = c
        for r, name in zip(*linear_sum_assignment(cost)):
            if cost[r, name] < _BIG:
                out[group[r].ident] = name
                names.give(name, group[r])


def _together(tracklets: list[Tracklet]) -> Iterator[list[Tracklet]]:
    """Tracklets (in order of first frame) in groups that begin within `_TOGETHER` frames of
    the group's first."""
    group: list[Tracklet] = []
    for t in tracklets:
        if group and t.start - group[0].start > _TOGETHER:
            yield group
            group = []
        group.append(t)
    if group:
        yield group


def _may_differ(a: Tracklet, b: Tracklet) -> bool:
    """Whether colours may tell two tracklets' animals apart: they differ, or are not known yet."""
    if min(len(a.looks), len(b.looks)) < _SIZE_SAMPLES:
        return True
    return _look_cost(a.looks, b.looks) >= _UNLIKE


def _exchange(tracklets: list[Tracklet], out: np.ndarray, n: int, s: TrackerSettings) -> None:
    """Revisit the names given in time order, two at a time. Where two names both change
    tracklets at one frame, exchanging what they hold from there until one of their next such
    frames (or to the end) is a move; its gain is how much better motion through the changes
    and colours (each stretch's against the rest of its name's: hundreds of sightings, where the
    naming in time order saw a few) agree afterwards. The best moves first, each name moved
    once per round, until no move gains `_EXCHANGE_GAIN`."""
    colours: dict[tuple[int, ...], _Pooled] = {}  # by the tracklets pooled: windows recur
    for _ in range(_EXCHANGE_ROUNDS):
        held = [sorted((t for t in tracklets if out[t.ident] == name), key=lambda t: (t.start, t.ident))
                for name in range(n)]
        moves = sorted(((gain, a, b, f, g) for a in range(n) for b in range(a + 1, n)
                        for f, g, gain in _moves(held[a], held[b], s, colours) if gain < -_EXCHANGE_GAIN),
                       key=lambda m: m[:4])
        if not moves:
            return
        moved: set[int] = set()
        for _, a, b, f, g in moves:
            if a in moved or b in moved:
                continue  # its gain was measured on what that name held before
            for t in held[a] + held[b]:
                if t.start >= f and (g is None or t.start < g):
                    out[t.ident] = b if out[t.ident] == a else a
            moved |= {a, b}


def _moves(held_a: list[Tracklet], held_b: list[Tracklet], s: TrackerSettings,
           colours: dict[tuple[int, ...], _Pooled]) -> Iterator[tuple[int, int | None, float]]:
    """(from frame, until frame or None, gain) of each exchange between two names' tracklets."""
    cuts, reach = [], -1  # frames where neither name is in the middle of a tracklet
    for t in sorted(held_a + held_b, key=lambda t: t.start):
        if t.start > reach and (not cuts or cuts[-1] != t.start):
            cuts.append(t.start)
        reach = max(reach, t.last)
    starts = ([t.start for t in held_a], [t.start for t in held_b])
    for i, f in enumerate(cuts):
        for g in cuts[i + 1:i + 1 + _EXCHANGE_SPAN] + [None]:
            a, b = (_around(held, at, f, g, colours) for held, at in zip((held_a, held_b), starts))
            move = (_junctions(a[0], b[1], a[2], s) + _junctions(b[0], a[1], b[2], s)
                    - _junctions(a[0], a[1], a[2], s) - _junctions(b[0], b[1], b[2], s))
            look = (_look_cost(b[4], a[3]) + _look_cost(a[4], b[3])
                    - _look_cost(a[4], a[3]) - _look_cost(b[4], b[3]))
            yield f, g, move + s.colour_weight * look


def _around(held: list[Tracklet], starts: list[int], f: int, g: int | None,
            colours: dict[tuple[int, ...], _Pooled]
            ) -> tuple[Tracklet | None, list[Tracklet], Tracklet | None, _Pooled, _Pooled]:
    """A name's tracklets around the stretch [f, g): the last before, the first and last inside,
    the first after; colours of the nearest ones outside and of the first ones inside."""
    i = bisect_left(starts, f)
    j = len(held) if g is None else bisect_left(starts, g)
    outside = _pooled(_interleave(held[i - 1::-1] if i else [], held[j:]), colours)
    inside = _pooled(iter(held[i:j]), colours)
    ends = [held[i], held[j - 1]] if j - i > 1 else held[i:j]
    return (held[i - 1] if i else None), ends, (held[j] if j < len(held) else None), outside, inside


@dataclass(frozen=True)
class _Pooled:
    """Colours pooled over several tracklets, kept as what `_look_cost` reads (not the samples)."""

    count: int
    stats: tuple[np.ndarray, np.ndarray, np.ndarray] | None

    def __len__(self) -> int:
        return self.count

    def summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self.stats is not None
        return self.stats


def _pooled(tracklets: Iterator[Tracklet], colours: dict[tuple[int, ...], _Pooled]) -> _Pooled:
    """The colours of tracklets in turn, up to `_SIZE_MEMORY`, from ``colours`` when pooled before."""
    taken, count = [], 0
    for t in tracklets:
        if count >= _SIZE_MEMORY:
            break
        taken.append(t)
        count += len(t.looks)
    key = tuple(t.ident for t in taken)
    if key not in colours:
        pooled = _Colours()
        for t in taken:
            pooled.add(t.looks.samples)
        colours[key] = _Pooled(len(pooled), pooled.summary() if len(pooled) >= _SIZE_SAMPLES else None)
    return colours[key]


def _interleave(first: list[Tracklet], second: list[Tracklet]) -> Iterator[Tracklet]:
    """Nearest first from both sides of a stretch."""
    for pair in zip_longest(first, second):
        yield from (t for t in pair if t is not None)


def _junctions(before: Tracklet | None, ends: list[Tracklet], after: Tracklet | None, s: TrackerSettings) -> float:
    """Motion cost of a name's chain through a stretch: into its first tracklet and out of its
    last (`_NEW_NAME` for a name that begins there). The link between the stretch's own first
    and last is counted too: it moves with them, so it cancels in a move's gain."""
    chain = [t for t in (before, *ends, after) if t is not None]
    cost = _NEW_NAME if before is None and chain else 0.0
    return cost + sum(_continues(x, y, s) for x, y in zip(chain, chain[1:]))


def stitch(tracklets: list[Tracklet], n_individuals: int, settings: TrackerSettings = TrackerSettings()) -> np.ndarray:
    """The individual (0..n-1) of each tracklet, by number; -1 for one that no name is free for
    (more animals than individuals: a false detection, most likely) or shorter than
    ``settings.min_length`` frames where it met another animal.

    In order of first frame; the tracklets that begin together (animals that just parted)
    are named together, by the Hungarian algorithm over the names free then: a name's cost is how
    badly the tracklet continues the name's tracklet before it, how unlike their body sizes and
    colours are, less the identity head's votes. A name nobody held yet costs `_NEW_NAME`, so
    names go in order of first appearance. Two rounds: tracklets seen in `_SOLID` frames or
    more first, then the brief ones (where animals tangle) into the gaps left: a brief fragment
    that took a name first would keep that name from the animal that comes out of the tangle. Then,
    where tracklets carry colours, stretches of two names are exchanged where that agrees better
    with motion and colours seen over whole chains (`_exchange`)."""
    s = settings
    names = _Names(n_individuals)
    out = np.full(len(tracklets), -1, np.int64)
    _name_in_order([t for t in tracklets if t.seen >= _SOLID], names, out, s)
    _name_in_order([t for t in tracklets if t.seen < _SOLID], names, out, s)
    if s.colour_weight > 0 and any(len(t.looks) for t in tracklets):  # motion alone: measured worse
        _exchange(tracklets, out, n_individuals, s)
    for t in tracklets:
        if t.last - t.start + 1 < s.min_length and t.crowded:
            out[t.ident] = -1
    return out


# -- both passes ---------------------------------------------------------------------------------------
def track(read: Callable[[], Iterable[Poses]], individuals: list[str], settings: TrackerSettings = TrackerSettings(),
          *, identity: bool = False, looks: Iterable[np.ndarray] | None = None) -> Iterator[Poses]:
    """Track a video's per-frame animals: ``read()`` gives them as chunks of consecutive frames
    (it is called twice: tracklets, then the rows under their names); yields the same chunks
    named by ``individuals``. ``looks``, when given, holds each chunk's colour descriptors
    (frames, A, D) in the same chunks."""
    linker = Linker(len(individuals), settings, identity=identity)
    rows: list[np.ndarray] = []  # (frames, A) tracklet number of each detection row, per chunk
    colours = iter(looks) if looks is not None else None
    for chunk in read():
        seen = next(colours, None) if colours is not None else None
        if seen is not None and len(seen) != len(chunk):
            raise ValueError(f"{len(seen)} frames of colour descriptors for a chunk of {len(chunk)} frames")
        rows.append(np.stack([linker.add(int(f), chunk.coords[i], None if seen is None else seen[i])
                              for i, f in enumerate(chunk.frame_numbers())])
                    if len(chunk) else np.zeros((0, chunk.coords.shape[1]), np.int32))
    names = stitch(linker.tracklets, len(individuals), settings)
    # each tracklet's first frame written: a tracklet that began beside another animal skips its first
    first = np.array([t.start + int(settings.min_length > 1 and t.born_crowded) for t in linker.tracklets] or [0])
    never = np.iinfo(np.int64).max
    # ... and the first left out at its end: where an unseen animal came out beside it, its last rows
    doubt = np.array([t.doubt if settings.min_length > 1 and t.doubt >= 0 else never for t in linker.tracklets] or [0])
    slid = np.array([t.slid if t.slid >= 0 else never for t in linker.tracklets] or [0])
    heir = np.array([t.heir if t.slid >= 0 else t.ident for t in linker.tracklets] or [0])
    chunks = iter(rows)
    for chunk in read():
        ids = next(chunks, None)
        if ids is None or len(ids) != len(chunk):
            raise ValueError("the detections changed between the two tracking passes; track them again")
        coords = np.full((len(chunk), len(individuals), *chunk.coords.shape[2:]), np.nan, np.float32)
        frame, row = np.nonzero(ids >= 0)
        tracklet, at = ids[frame, row], chunk.frame_numbers()[frame]
        tail = at >= slid[tracklet]  # rows that belong to the tracklet's heir
        who = np.where(tail, names[heir[tracklet]], names[tracklet])
        keep = (who >= 0) & ((at >= first[tracklet]) | tail) & (at < doubt[tracklet])
        coords[frame[keep], who[keep]] = chunk.coords[frame[keep], row[keep]]
        yield Poses(coords, chunk.keypoints, list(individuals), unique=chunk.unique,
                    unique_keypoints=chunk.unique_keypoints, skeleton=chunk.skeleton,
                    frame_indices=chunk.frame_numbers(), scorer=chunk.scorer, model=chunk.model, video=chunk.video)
    if next(chunks, None) is not None:
        raise ValueError("the detections changed between the two tracking passes; track them again")
