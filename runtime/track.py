"""Multi-animal tracking: each frame's assembled animals -> the same individual names all video long.

Two stages, both online, in the spirit of DeepLabCut's tracklets + stitching, in a bounded window:

1. Tracklets. Each open tracklet predicts its centroid with a constant-velocity Kalman filter and
   shifts its last keypoints along; a frame's animals are linked to tracklets by the Hungarian
   algorithm on a keypoint distance (in units of the animal's size), with a gate. A tracklet not
   seen for ``max_gap`` frames closes; an animal that matches no tracklet opens one.
2. Stitching. A new tracklet is given one of the project's individuals once it is ``delay`` frames
   old (or closes): a Hungarian match of the waiting tracklets to the free individuals, the cost
   being how far the individual's last position, carried forward at its last velocity, lies from
   where the tracklet starts, plus a penalty per frame of gap. When the model has an identity head,
   the assembler already put each animal in its identity's row; those rows vote.

Frames leave the tracker ``delay`` frames after they arrive, when every animal in them has its
final name, so memory stays flat for any video length. Tracking is deterministic: feeding the same
frames gives the same names (which is what resuming an interrupted analysis relies on).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from .poses import Poses

_BIG = 1e6


@dataclass(frozen=True)
class TrackerSettings:
    """``gate``: the largest link cost (keypoint distance / animal size) that still links an
    animal to a tracklet; ``max_gap``: frames a tracklet may go unseen before it closes;
    ``delay``: frames a new tracklet is watched before it gets a name (also the output delay);
    ``min_keypoints``: fewer visible keypoints than this is no animal; ``gap_cost``: stitching
    cost per frame between a name's last sighting and a tracklet's start; ``identity_weight``:
    how much an identity head's vote counts in stitching."""

    gate: float = 1.0
    max_gap: int = 15
    delay: int = 30
    min_keypoints: int = 2
    gap_cost: float = 0.02
    identity_weight: float = 10.0

    def __post_init__(self) -> None:
        if self.delay <= self.max_gap:
            raise ValueError(f"tracking delay ({self.delay} frames) must exceed max_gap ({self.max_gap}): a name is "
                             "only free again once its tracklet has closed")
        if self.gate <= 0 or self.min_keypoints < 1:
            raise ValueError(f"gate must be > 0 and min_keypoints >= 1, got {self.gate}, {self.min_keypoints}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


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

    def predict(self, steps: int = 1) -> np.ndarray:
        """The centroid ``steps`` frames ahead (the state is not changed)."""
        return self.x[:2] + steps * self.x[2:]

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
class _Tracklet:
    ident: int
    start: int
    last: int  # frame of the last sighting
    kalman: _Kalman
    keypoints: np.ndarray  # (K, 2) last seen position of each keypoint (NaN never seen)
    centroid: np.ndarray  # centroid at the last sighting
    scale: float
    rows: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> (K, 3), until emitted
    votes: np.ndarray | None = None  # identity-head rows this tracklet was assembled in (counts)
    name: int | None = None  # the individual it was stitched to


def _features(animal: np.ndarray) -> tuple[np.ndarray, float]:
    """Centroid and size (sqrt of the keypoint box area, at least 4 px) of one animal."""
    xy = animal[:, :2][np.isfinite(animal[:, :2]).all(1)]
    span = xy.max(0) - xy.min(0)
    return xy.mean(0), max(4.0, float(np.sqrt(max(span[0], 1.0) * max(span[1], 1.0))))


class Tracker:
    """Online tracker for one video; feed frames in order with `update`, then `finish`."""

    def __init__(self, individuals: list[str], n_keypoints: int, settings: TrackerSettings = TrackerSettings(), *,
                 identity: bool = False) -> None:
        self.individuals = list(individuals)
        self.k = n_keypoints
        self.settings = settings
        self.identity = identity
        self.open: list[_Tracklet] = []  # linked in stage 1
        self.waiting: list[_Tracklet] = []  # not yet stitched (also in `open` until they close)
        self.named: dict[int, _Tracklet] = {}  # individual -> its current (or last) tracklet
        self.pending: deque[int] = deque()  # frames received, not yet emitted
        self.unique: dict[int, np.ndarray] = {}
        self._held: list[_Tracklet] = []  # closed tracklets whose rows are not all emitted yet
        self._next_ident = 0

    # -- input -------------------------------------------------------------------------------------
    def update(self, frame: int, animals: np.ndarray, unique: np.ndarray | None = None) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        """One frame's animals (A, K, 3), NaN rows where fewer; returns the frames now final as
        (frame, (individuals, K, 3), unique)."""
        s = self.settings
        found = [a for a in range(len(animals)) if np.isfinite(animals[a, :, :2]).all(1).sum() >= s.min_keypoints]
        for t in self.open:
            t.kalman.step()
        matched = self._link(frame, animals, found)
        for a in found:
            if a not in matched:
                self._start(frame, animals[a], a)
        for t in [t for t in self.open if frame - t.last >= s.max_gap]:
            self._close(t)
        self.pending.append(frame)
        if unique is not None:
            self.unique[frame] = unique
        self._stitch(frame)
        return self._emit(frame - s.delay)

    def finish(self) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        """Close everything and return the remaining frames."""
        for t in list(self.open):
            self._close(t)
        self._stitch(None)
        return self._emit(None)

    # -- stage 1: tracklets ------------------------------------------------------------------------
    def _cost(self, t: _Tracklet, animal: np.ndarray, frame: int) -> float:
        shift = t.kalman.predict(0) - t.centroid  # the filter has already stepped to this frame
        guess = t.keypoints + shift
        seen = np.isfinite(guess).all(1) & np.isfinite(animal[:, :2]).all(1)
        if seen.any():
            d = float(np.linalg.norm(guess[seen] - animal[seen, :2], axis=1).mean())
        else:
            d = float(np.linalg.norm(t.kalman.predict(0) - _features(animal)[0]))
        return d / t.scale

    def _link(self, frame: int, animals: np.ndarray, found: list[int]) -> set[int]:
        if not self.open or not found:
            return set()
        cost = np.array([[self._cost(t, animals[a], frame) for a in found] for t in self.open])
        gate = self.settings.gate
        rows, cols = linear_sum_assignment(np.where(cost <= gate, cost, _BIG))
        matched = set()
        for r, c in zip(rows, cols):
            if cost[r, c] <= gate:
                self._extend(self.open[r], frame, animals[found[c]], found[c])
                matched.add(found[c])
        return matched

    def _extend(self, t: _Tracklet, frame: int, animal: np.ndarray, row: int) -> None:
        centroid, scale = _features(animal)
        t.kalman.correct(centroid)
        seen = np.isfinite(animal[:, :2]).all(1)
        t.keypoints = t.keypoints + (t.kalman.predict(0) - t.centroid)  # unseen keypoints move along
        t.keypoints[seen] = animal[seen, :2]
        t.centroid, t.scale, t.last = t.kalman.predict(0), 0.8 * t.scale + 0.2 * scale, frame
        t.rows[frame] = animal.copy()
        if t.votes is not None:
            t.votes[row] += 1

    def _start(self, frame: int, animal: np.ndarray, row: int) -> None:
        centroid, scale = _features(animal)
        t = _Tracklet(self._next_ident, frame, frame, _Kalman.at(centroid), np.where(
            np.isfinite(animal[:, :2]).all(1)[:, None], animal[:, :2], np.nan), centroid, scale,
            votes=np.zeros(len(self.individuals)) if self.identity else None)
        self._next_ident += 1
        t.rows[frame] = animal.copy()
        if t.votes is not None and row < len(t.votes):
            t.votes[row] += 1
        self.open.append(t)
        self.waiting.append(t)

    def _close(self, t: _Tracklet) -> None:
        self.open.remove(t)
        if t.rows:
            self._held.append(t)

    # -- stage 2: stitching ------------------------------------------------------------------------
    def _stitch(self, frame: int | None) -> None:
        """Name the waiting tracklets that are old enough (or closed), by a Hungarian match with
        the individuals whose tracklet has closed."""
        ready = [t for t in self.waiting if frame is None or t not in self.open
                 or frame - t.start >= self.settings.delay]
        if not ready:
            return
        busy = {i for i, t in self.named.items() if t in self.open and t.name == i}
        free = [i for i in range(len(self.individuals)) if i not in busy]
        if free:
            cost = np.array([[self._stitch_cost(t, i) for i in free] for t in ready])
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                ready[r].name = free[c]
                self.named[free[c]] = ready[r]
        for t in ready:
            self.waiting.remove(t)
            if t.name is None:  # more animals than individuals: this tracklet's rows are dropped
                t.rows.clear()

    def _stitch_cost(self, t: _Tracklet, individual: int) -> float:
        s = self.settings
        cost = 0.0
        if t.votes is not None and t.votes.sum():
            cost -= s.identity_weight * t.votes[individual] / t.votes.sum()
        before = self.named.get(individual)
        if before is None:
            return cost + individual * 1e-6  # never seen: names go in order of appearance
        gap = max(1, t.start - before.last)
        reach = before.centroid + min(gap, s.max_gap) * before.kalman.x[2:]  # carried on, not forever
        first = _features(t.rows[min(t.rows)])[0] if t.rows else t.centroid
        # The longer the gap, the further the animal may have gone: distance counts less (and
        # never more than a few body sizes), so after a long absence identity votes decide.
        spread = before.scale * (1.0 + gap / s.max_gap)
        return cost + min(float(np.linalg.norm(reach - first)) / spread, 5.0) + s.gap_cost * gap

    # -- output ------------------------------------------------------------------------------------
    def _emit(self, upto: int | None) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        out = []
        waiting_from = min((t.start for t in self.waiting), default=None)
        while self.pending and (upto is None or self.pending[0] <= upto):
            frame = self.pending[0]
            if waiting_from is not None and frame >= waiting_from and upto is not None:
                break  # an animal in this frame has no name yet
            self.pending.popleft()
            coords = np.full((len(self.individuals), self.k, 3), np.nan, np.float32)
            for t in self.open + self._held:
                row = t.rows.pop(frame, None)
                if row is not None and t.name is not None:
                    coords[t.name] = row
            self._held = [t for t in self._held if t.rows]
            out.append((frame, coords, self.unique.pop(frame, None)))
        return out


def track(detections: Iterable[Poses], individuals: list[str], settings: TrackerSettings = TrackerSettings(), *,
          identity: bool = False) -> Iterator[Poses]:
    """Track chunks of per-frame animals (consecutive frames, in order); yields chunks of tracked
    `Poses` named by ``individuals`` (the same frames, a ``settings.delay`` later)."""
    tracker: Tracker | None = None
    layout: Poses | None = None
    for chunk in detections:
        if tracker is None:
            tracker = Tracker(individuals, len(chunk.keypoints), settings, identity=identity)
            layout = chunk[:0]
        done = []
        for i, frame in enumerate(chunk.frame_numbers()):
            done += tracker.update(int(frame), chunk.coords[i], None if chunk.unique is None else chunk.unique[i])
        if done:
            yield _as_poses(done, layout, individuals)  # type: ignore[arg-type]
    if tracker is not None:
        rest = tracker.finish()
        if rest:
            yield _as_poses(rest, layout, individuals)  # type: ignore[arg-type]


def _as_poses(rows: list[tuple[int, np.ndarray, np.ndarray | None]], layout: Poses, individuals: list[str]) -> Poses:
    coords = np.stack([r[1] for r in rows])
    unique = np.stack([r[2] for r in rows]) if layout.unique_keypoints else None
    return Poses(coords, layout.keypoints, list(individuals), unique=unique, unique_keypoints=layout.unique_keypoints,
                 skeleton=layout.skeleton, frame_indices=np.array([r[0] for r in rows]), scorer=layout.scorer,
                 model=layout.model, video=layout.video)
