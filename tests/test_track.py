"""Tracking: names that stay with their animal, and the identity metrics that say so."""
from __future__ import annotations

import numpy as np
import pytest

from posezoo.runtime.poses import Poses
from posezoo.runtime.track import Tracker, TrackerSettings, track
from posezoo.runtime.track_metrics import tracking_scores

KP = ["snout", "leftear", "rightear", "tailbase"]
NAMES = ["mouse1", "mouse2", "mouse3"]


def _animal(centre: np.ndarray, heading: float, size: float = 20.0) -> np.ndarray:
    """A 4-keypoint animal at ``centre`` facing ``heading`` (radians)."""
    d = np.array([np.cos(heading), np.sin(heading)])
    left = np.array([d[1], -d[0]])
    pts = [centre + size * d, centre + 0.6 * size * d + 0.3 * size * left,
           centre + 0.6 * size * d - 0.3 * size * left, centre - size * d]
    return np.column_stack([np.array(pts), np.ones(4)])


def _truth(frames: int = 2000, seed: int = 0) -> Poses:
    """Three animals on smooth paths around one arena: they meet, touch and cross."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None]
    coords = np.zeros((frames, 3, 4, 3))
    for a in range(3):
        fx, fy = rng.uniform(0.01, 0.03, 2)
        px, py = rng.uniform(0, 2 * np.pi, 2)
        centre = np.concatenate([320 + 150 * np.sin(fx * t + px), 240 + 110 * np.sin(fy * t + py)], 1)
        velocity = np.gradient(centre, axis=0)
        heading = np.arctan2(velocity[:, 1], velocity[:, 0])
        for f in range(frames):
            coords[f, a] = _animal(centre[f], heading[f])
    return Poses(coords, KP, NAMES)


def _detections(truth: Poses, seed: int = 1, drop: float = 0.03, noise: float = 1.0, fp: float = 0.01,
                identity_rows: bool = False) -> Poses:
    """What an assembler gives: the animals in any row order, noisy, some missing, a rare ghost."""
    rng = np.random.default_rng(seed)
    coords = np.full((len(truth), 4, 4, 3), np.nan)
    for f in range(len(truth)):
        rows = [a for a in range(3) if rng.random() > drop]
        animals = [truth.coords[f, a].copy() for a in rows]
        for animal in animals:
            animal[:, :2] += rng.normal(0, noise, (4, 2))
            animal[rng.random(4) < 0.05] = np.nan  # a hidden keypoint now and then
        if rng.random() < fp:
            ghost = _animal(rng.uniform([20, 20], [620, 460]), rng.uniform(0, 6.28))
            animals.append(ghost)
            rows.append(3)
        order = rows if identity_rows else list(rng.permutation(len(animals)))
        for slot, animal in zip(order, animals):
            coords[f, slot] = animal
    return Poses(coords, KP, ["a", "b", "c", "d"], frame_indices=truth.frame_numbers())


# -- metrics, worked by hand -------------------------------------------------------------------------
def _line(frames: int, y: float) -> np.ndarray:
    return np.stack([_animal(np.array([100.0 + f, y]), 0.0) for f in range(frames)])


def test_metrics_on_worked_examples():
    truth = Poses(np.stack([_line(10, 100), _line(10, 300)], axis=1), KP, ["a", "b"])
    perfect = tracking_scores(truth, truth)
    assert perfect["idf1"] == 1.0 and perfect["mota"] == 1.0 and perfect["switches"] == 0

    swapped = truth.coords.copy()
    swapped[5:] = swapped[5:, ::-1]  # the names swap at frame 5
    s = tracking_scores(truth, Poses(swapped, KP, ["x", "y"]))
    assert s["switches"] == 2 and s["mota"] == pytest.approx(1 - 2 / 20)
    assert s["idf1"] == pytest.approx(2 * 10 / (2 * 10 + 10 + 10))  # each name right half the time

    missed = truth.coords.copy()
    missed[3:5, 0] = np.nan  # animal a lost for two frames
    m = tracking_scores(truth, Poses(missed, KP, ["x", "y"]))
    assert m["misses"] == 2 and m["switches"] == 0 and m["mota"] == pytest.approx(1 - 2 / 20)
    assert m["idf1"] == pytest.approx(2 * 18 / (2 * 18 + 0 + 2))

    far = truth.coords.copy()
    far[7, 1, :, 0] += 200  # a tracked animal far from any true one: a miss and a false positive
    f = tracking_scores(truth, Poses(far, KP, ["x", "y"]))
    assert f["misses"] == 1 and f["false_positives"] == 1 and f["mota"] == pytest.approx(1 - 2 / 20)

    # two true animals touching, both near one tracked name that each held once: only one keeps it
    touching = np.stack([_line(10, 100), _line(10, 104)], axis=1)
    one = touching.copy()
    one[:, 1] = np.nan
    touching[3, 0] = np.nan  # a is gone for a frame, so b takes the name x
    t = tracking_scores(Poses(touching, KP, ["a", "b"]), Poses(one, KP, ["x", "y"]), threshold=10)
    assert t["false_positives"] == 0 and t["misses"] == 9 and t["matches"] == 10, t


# -- the tracker -------------------------------------------------------------------------------------
def test_three_animals_that_cross_keep_their_names():
    truth = _truth()
    tracked = Poses.concat(list(track([_detections(truth)], NAMES)))
    assert list(tracked.frame_numbers()) == list(range(len(truth))) and tracked.individuals == NAMES
    scores = tracking_scores(truth, tracked)
    assert scores["idf1"] >= 0.97 and scores["switches_per_1000_frames"] <= 1, scores


def test_chunking_does_not_change_the_result():
    truth = _truth(600, seed=3)
    det = _detections(truth, seed=4)
    whole = Poses.concat(list(track([det], NAMES)))
    for size in (1, 7, 256):
        parts = Poses.concat(list(track((det[i:i + size] for i in range(0, len(det), size)), NAMES)))
        np.testing.assert_array_equal(parts.coords, whole.coords)


def test_memory_stays_bounded_and_frames_leave_after_the_delay():
    settings = TrackerSettings(delay=20)
    tracker = Tracker(NAMES, 4, settings)
    det = _detections(_truth(400, seed=5))
    emitted = 0
    for f in range(len(det)):
        emitted += len(tracker.update(f, det.coords[f]))
        held = sum(len(t.rows) for t in tracker.open + tracker._held)
        assert len(tracker.pending) <= settings.delay + 1 and held <= 4 * (settings.delay + settings.max_gap + 2)
    assert emitted >= len(det) - settings.delay - 1
    assert emitted + len(tracker.finish()) == len(det)


def test_identity_rows_vote_across_a_long_absence():
    truth = _truth(900, seed=6)
    det = _detections(truth, seed=7, identity_rows=True, fp=0.0)
    det.coords[300:450, 0] = np.nan  # mouse1 hides for 150 frames (longer than any gap)
    tracked = Poses.concat(list(track([det], NAMES, identity=True)))
    scores = tracking_scores(truth.select(individuals=NAMES), tracked)
    assert scores["switches"] == 0 and scores["idf1"] >= 0.95, scores
    # with identity rows the names are the identities: the i-th name is the i-th true animal
    assert np.nanmean(np.linalg.norm(tracked.xy[500:, 0] - truth.xy[500:, 0], axis=-1)) < 5


def test_settings_are_checked():
    with pytest.raises(ValueError, match="delay"):
        TrackerSettings(delay=5, max_gap=10)
