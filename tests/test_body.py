"""The body-plan check: limits measured from labels, implausible keypoints scored below pcutoff,
on arrays, through the framework predictor's spec and through a real onnxruntime `PoseModel`."""
from __future__ import annotations


import numpy as np
import pytest

from posezoo.runtime.body import check_body
from posezoo.runtime.model import PoseModel
from posezoo.runtime.spec import BodySpec, Spec, SpecError
from posezoo.runtime.summary import describe_model
from posezoo.training.body import MARGIN, body_spec
from onnx_models import make_pose_onnx, make_spec, paint_dots

NAMES = ["snout", "leftear", "rightear", "tailbase"]


def _labels() -> np.ndarray:
    """Six labelled frames of a 'mouse' 100 px long, ears 10 px apart, tail base unlabelled in two."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(6):
        x, y = rng.uniform(100, 300, 2)
        out.append([[x, y], [x - 20, y - 5], [x - 20, y + 5], [x - 100, y]])
    xy = np.array(out, float)
    xy[:2, 3] = np.nan
    return xy


def _spec(body: BodySpec | None) -> Spec:
    return Spec(name="m", keypoints=NAMES, pcutoff=0.6, body=body).validate()


def _mouse(x: float = 200, y: float = 200, score: float = 0.9) -> np.ndarray:
    return np.array([[x, y, score], [x - 20, y - 5, score], [x - 20, y + 5, score], [x - 100, y, score]], np.float32)


def test_limits_come_from_the_labels() -> None:
    body = body_spec(_labels(), NAMES, [(1, 2)], slack=4.0)
    assert body is not None
    assert body.limit[0][3] == pytest.approx(MARGIN * 100 + 4, abs=0.1)  # labelled together 4 times
    assert body.limit[0][1] == pytest.approx(MARGIN * np.hypot(20, 5) + 4, abs=0.1)
    assert body.limit[1][1] is None  # no limit of a keypoint to itself
    assert body.pairs == [["leftear", "rightear"]] and body.pair_limit == [5.0]  # half the nearest labelled
    xy = _labels()
    xy[3:, 3] = np.nan  # the tail base labelled in one frame only: nothing to say about it
    body = body_spec(xy, NAMES, [], slack=4.0)
    assert body is not None and body.limit[0][3] is None and body.limit[3][1] is None


def test_a_distant_lookalike_is_scored_below_pcutoff() -> None:
    spec = _spec(body_spec(_labels(), NAMES, [(1, 2)], slack=4.0))
    poses = np.stack([_mouse(), _mouse()])
    poses[1, 0, :2] = [600, 500]  # the snout on something 450 px away, confidently
    out = check_body(poses, spec)
    np.testing.assert_array_equal(out[0], poses[0])  # a plausible animal is left alone
    assert out[1, 0, 2] == pytest.approx(0.3) and out[1, 0, 2] < spec.pcutoff
    np.testing.assert_array_equal(out[1, 0, :2], poses[1, 0, :2])  # the position is kept
    np.testing.assert_array_equal(out[1, 1:], poses[1, 1:])  # the rest of the body vouches for itself
    assert poses[1, 0, 2] == pytest.approx(0.9)  # the input is not changed


def test_both_sides_on_one_spot_keep_the_stronger() -> None:
    spec = _spec(body_spec(_labels(), NAMES, [(1, 2)], slack=4.0))
    poses = _mouse()
    poses[2, :2] = poses[1, :2] + 1  # both ears on the left ear
    poses[1, 2] = 0.95
    out = check_body(poses, spec)
    assert out[1, 2] == pytest.approx(0.95) and out[2, 2] == pytest.approx(0.3)


def test_what_the_check_leaves_alone() -> None:
    spec = _spec(body_spec(_labels(), NAMES, [(1, 2)], slack=4.0))
    # two confident keypoints alone: no majority to tell which is wrong
    pair = _mouse()
    pair[[1, 2], 2] = 0.1
    pair[0, :2] = [900, 900]
    np.testing.assert_array_equal(check_body(pair, spec), pair)
    # keypoints not found or below pcutoff neither vote nor are judged
    low = _mouse()
    low[0, :2] = [900, 900]
    low[0, 2] = 0.5
    low[3] = np.nan
    np.testing.assert_array_equal(check_body(low, spec), low)


def test_two_far_keypoints_are_both_rejected_the_worst_first() -> None:
    names = [f"k{i}" for i in range(6)]
    xy = np.array([[[10.0 * i, 0.0] for i in range(6)]] * 4)  # a line 50 px long
    spec = Spec(name="m", keypoints=names, pcutoff=0.6, body=body_spec(xy, names, [], slack=0.0)).validate()
    pred = np.concatenate([xy[0], np.full((6, 1), 0.9)], axis=1).astype(np.float32)
    pred[4, :2] = [500, 0]
    pred[5, :2] = [500, 400]
    out = check_body(pred, spec)
    assert (out[4:, 2] < 0.6).all() and (out[:4, 2] == pytest.approx(0.9))


def test_spec_round_trip_and_validation() -> None:
    spec = _spec(body_spec(_labels(), NAMES, [(1, 2)], slack=4.0))
    again = Spec.from_json(spec.to_json())
    assert again.body == spec.body
    assert "body" not in _spec(None).to_dict()  # a spec without one reads as before
    with pytest.raises(SpecError, match="body.limit"):
        _spec(BodySpec(limit=[[None] * 3] * 3))
    with pytest.raises(SpecError, match=r"body.pairs\[0\]"):
        _spec(BodySpec(limit=[[None] * 4] * 4, pairs=[["leftear", "lefteye"]], pair_limit=[1.0]))


def test_pose_model_applies_the_spec_body(tmp_path) -> None:
    """A real onnxruntime model: the blue dot far from red and green loses its confidence,
    unless the check is switched off."""
    xy = np.array([[[10.0, 10.0], [20.0, 10.0], [15.0, 18.0]]] * 4)
    names = ["red", "green", "blue"]
    spec = make_spec(body=body_spec(xy, names, [], slack=2.0))
    path = make_pose_onnx(tmp_path / "m.onnx", spec)
    frame = paint_dots(np.zeros((120, 160, 3), np.uint8), {"red": (10, 10), "green": (20, 10), "blue": (150, 110)})
    checked = PoseModel.load(path, device="cpu")(frame).coords[0, 0]
    raw = PoseModel.load(path, device="cpu", body_check=False)(frame).coords[0, 0]
    assert raw[2, 2] == pytest.approx(1.0) and checked[2, 2] == pytest.approx(0.25)
    np.testing.assert_array_equal(checked[:2], raw[:2])
    np.testing.assert_array_equal(checked[2, :2], raw[2, :2])
    near = paint_dots(np.zeros((120, 160, 3), np.uint8), {"red": (10, 10), "green": (20, 10), "blue": (15, 25)})
    assert PoseModel.load(path, device="cpu")(near).coords[0, 0, 2, 2] == pytest.approx(1.0)
    summary = describe_model(PoseModel.load(path, device="cpu"))  # posezoo inspect
    assert "body check   largest distances of 3 of 3 keypoint pairs; left/right: (none)" in summary
