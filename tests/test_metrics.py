"""Tests for posezoo.runtime.metrics: hand-computed cases and a cross-check with pycocotools."""
from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pandas as pd
import pytest

from posezoo.runtime.metrics import (
    evaluate_keypoints,
    object_keypoint_similarity,
    pck,
    to_jsonable,
)

EPS = np.spacing(1)


def _pred_from(gt: np.ndarray, offset=(0.0, 0.0), score: float = 0.9) -> np.ndarray:
    """Prediction = ground truth + offset, with a constant score."""
    xy = np.asarray(gt, dtype=float) + np.asarray(offset, dtype=float)
    return np.concatenate([xy, np.full(xy.shape[:-1] + (1,), score)], axis=-1)


def _two_animals() -> np.ndarray:
    """One image, two well separated animals of 3 keypoints, box 20 x 10 each."""
    return np.array([[
        [[10.0, 10.0], [30.0, 10.0], [20.0, 20.0]],
        [[110.0, 110.0], [130.0, 110.0], [120.0, 120.0]],
    ]])


# --- RMSE, pcutoff, PCK ---------------------------------------------------------------------

def test_345_offset_gives_rmse_5_and_exact_pck():
    gt = np.random.default_rng(0).uniform(0, 200, size=(7, 4, 2))
    res = evaluate_keypoints(gt, _pred_from(gt, (3.0, 4.0)), pck_thresholds=(4.99, 5.0, 10.0))
    assert res["rmse"] == pytest.approx(5.0)
    assert res["rmse_pcutoff"] == pytest.approx(5.0)
    assert res["per_keypoint_rmse"] == pytest.approx([5.0] * 4)
    assert res["pck"] == {4.99: 0.0, 5.0: 1.0, 10.0: 1.0}
    assert res["n_images"] == 7 and res["n_keypoints_labeled"] == 28
    assert res["single_animal"] is True


def test_unlabeled_keypoints_are_excluded():
    gt = np.array([[[0.0, 0.0], [10.0, 0.0], [np.nan, np.nan]],
                   [[0.0, 0.0], [np.nan, np.nan], [0.0, 10.0]]])
    offsets = np.array([[[3.0, 4.0], [6.0, 8.0], [100.0, 0.0]],
                        [[0.0, 1.0], [50.0, 0.0], [0.0, 2.0]]])
    pred = _pred_from(gt + offsets)
    pred[np.isnan(pred)] = 0.0  # a prediction exists where the label is missing
    res = evaluate_keypoints(gt, pred, pck_thresholds=(2.0,))
    # errors on labeled keypoints only: 5, 10, 1, 2
    assert res["rmse"] == pytest.approx(18.0 / 4)
    assert res["per_keypoint_rmse"] == pytest.approx([3.0, 10.0, 2.0])
    assert res["n_keypoints_labeled"] == 4 and res["n_keypoints_matched"] == 4
    assert res["pck"][2.0] == pytest.approx(2 / 4)


def test_pcutoff_filters_by_keypoint_score():
    gt = np.array([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]])
    pred = _pred_from(gt, (0.0, 0.0))
    pred[0, :, 0] += [1.0, 2.0, 3.0, 4.0]
    pred[0, :, 2] = [0.9, 0.2, 0.6, 0.59]
    res = evaluate_keypoints(gt, pred, pcutoff=0.6)
    assert res["rmse"] == pytest.approx(2.5)
    assert res["rmse_pcutoff"] == pytest.approx(2.0)  # keypoints 0 and 2
    assert res["n_keypoints_pcutoff"] == 2
    assert res["per_keypoint_rmse_pcutoff"][0] == pytest.approx(1.0)
    assert math.isnan(res["per_keypoint_rmse_pcutoff"][1])
    no_cut = evaluate_keypoints(gt, pred)
    assert no_cut["rmse_pcutoff"] == no_cut["rmse"] and no_cut["pcutoff"] is None
    assert math.isnan(evaluate_keypoints(gt, pred, pcutoff=0.95)["rmse_pcutoff"])


def test_missing_predicted_keypoints_excluded_from_rmse_but_miss_in_pck():
    gt = np.array([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]])
    pred = _pred_from(gt, (1.0, 0.0))
    pred[0, 1] = np.nan  # no prediction
    pred[0, 2, 2] = -1.0  # negative score = invalid (DeepLabCut)
    res = evaluate_keypoints(gt, pred)
    assert res["rmse"] == pytest.approx(1.0)
    assert res["n_keypoints_matched"] == 1
    assert pck(gt, pred, 5.0) == pytest.approx(1 / 3)


def test_multi_animal_rmse_matches_predictions_to_the_right_animal():
    gt = _two_animals()
    # predictions in the opposite order, an unmatched far-away extra, a NaN padding row
    pred = np.stack([
        _pred_from(gt[0, 1], (0.0, 0.6), score=0.8),
        _pred_from(gt[0, 0], (0.3, 0.4), score=0.7),
        _pred_from(gt[0, 0], (5000.0, 5000.0), score=0.99),
        np.full((3, 3), np.nan),
    ])[None]
    res = evaluate_keypoints(gt, pred)
    assert res["single_animal"] is False
    assert res["rmse"] == pytest.approx(0.55)  # 3 errors of 0.6 and 3 of 0.5
    assert res["per_keypoint_rmse"] == pytest.approx([0.55, 0.55, 0.55])
    assert res["n_keypoints_labeled"] == 6 and res["n_keypoints_matched"] == 6
    # OKS of both true pairs > 0.95. mAP by hand: ranked FP, TP, TP -> precision envelope
    # 2/3 at every recall point; recall 1 at every threshold.
    assert res["mAP"] == pytest.approx(100 * 2 / 3)
    assert res["mAR"] == pytest.approx(100.0)


def _crowded() -> tuple[np.ndarray, np.ndarray]:
    first = _two_animals()[0, 0]
    gt = np.stack([first, first + (0.5, 0.0)])[None]  # two animals almost on top
    pred = np.stack([_pred_from(first, score=0.9),
                     _pred_from(first + (0.1, 0.0), score=0.8)])[None]
    oks = object_keypoint_similarity(gt, pred)[0]
    assert oks[1, 0] > oks[1, 1] > 0.95  # prediction 1 prefers animal 0, which prediction 0 takes
    return gt, pred


def test_crowded_match_takes_best_free_animal_like_pycocotools():
    """matching="coco": the second prediction's best animal is taken; it matches the other one."""
    res = evaluate_keypoints(*_crowded(), matching="coco")
    assert res["mAP"] == pytest.approx(100.0) and res["mAR"] == pytest.approx(100.0)
    assert res["rmse"] == pytest.approx((0.0 + 0.4) / 2)


def test_crowded_match_skips_a_taken_best_animal_like_deeplabcut():
    """The default, DeepLabCut's match_greedy_oks: the second prediction's own best animal is
    taken, so it stays unmatched. By hand: ranked TP, FP -> precision 1 up to recall 0.5 (51 of
    the 101 recall points), 0 beyond; recall 0.5 at every threshold; RMSE from prediction 0 only."""
    res = evaluate_keypoints(*_crowded())
    assert res["mAP"] == pytest.approx(100 * 51 / 101) and res["mAR"] == pytest.approx(50.0)
    assert res["rmse"] == pytest.approx(0.0) and res["n_keypoints_matched"] == 3


def test_unmatched_animal_counts_as_miss_in_pck():
    gt = _two_animals()
    pred = _pred_from(gt[:, :1], (0.0, 0.0))
    res = evaluate_keypoints(gt, pred, pck_thresholds=(1.0,))
    assert res["rmse"] == pytest.approx(0.0) and res["n_keypoints_matched"] == 3
    assert res["pck"][1.0] == pytest.approx(0.5)
    assert res["mAR"] == pytest.approx(50.0)


# --- OKS, mAP, mAR --------------------------------------------------------------------------

def test_oks_by_hand_uses_keypoint_box_area_and_sigma():
    gt = np.array([[[0.0, 0.0], [20.0, 0.0], [0.0, 10.0], [np.nan, np.nan]]])
    pred = _pred_from(gt)
    pred[0, 0, :2] += (3.0, 4.0)  # d^2 = 25 on keypoint 0
    pred[0, 3] = (5.0, 5.0, 0.9)  # prediction on an unlabeled keypoint is ignored
    area = (20.0 + EPS) * (10.0 + EPS)
    sigmas = np.array([0.1, 0.2, 0.3, 0.4])
    expected = (math.exp(-25.0 / (2 * area * (2 * 0.1) ** 2)) + 2.0) / 3.0
    oks = object_keypoint_similarity(gt, pred, sigmas)
    assert oks.shape == (1, 1, 1)
    assert oks[0, 0, 0] == pytest.approx(expected, rel=1e-12)
    scalar = object_keypoint_similarity(gt, pred, 0.2)[0, 0, 0]
    assert scalar == pytest.approx((math.exp(-25.0 / (2 * area * 0.16)) + 2.0) / 3.0)


def test_oks_undefined_for_fewer_than_two_labeled_keypoints():
    gt = np.array([[[5.0, 5.0], [np.nan, np.nan]]])
    assert np.isnan(object_keypoint_similarity(gt, _pred_from(gt))[0, 0, 0])
    res = evaluate_keypoints(gt, _pred_from(gt))
    assert math.isnan(res["mAP"]) and math.isnan(res["mAR"])  # no usable ground truth
    assert res["rmse"] == 0.0  # single animal: paired directly, as in DeepLabCut


def test_perfect_prediction_gives_map_100():
    gt = np.random.default_rng(1).uniform(0, 300, size=(5, 2, 6, 2))
    res = evaluate_keypoints(gt, _pred_from(gt))
    assert res["mAP"] == pytest.approx(100.0) and res["mAR"] == pytest.approx(100.0)
    assert res["rmse"] == 0.0


def test_far_prediction_gives_map_0():
    gt = np.random.default_rng(2).uniform(0, 300, size=(5, 2, 6, 2))
    res = evaluate_keypoints(gt, _pred_from(gt, (1000.0, -1000.0)))
    assert res["mAP"] == 0.0 and res["mAR"] == 0.0
    assert math.isnan(res["rmse"])  # nothing matched: OKS is 0 for every pair
    assert res["pck"] == {5.0: 0.0, 10.0: 0.0}


def test_no_predictions_gives_zero():
    gt = _two_animals()
    res = evaluate_keypoints(gt, np.full((1, 2, 3, 3), np.nan))
    assert res["mAP"] == 0.0 and res["mAR"] == 0.0 and math.isnan(res["rmse"])


def test_map_between_thresholds():
    """An OKS of exactly ~0.72 is a true positive at 0.50..0.70 (5 of 10 thresholds)."""
    gt = np.array([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]])
    area = (10.0 + EPS) ** 2
    d = math.sqrt(-math.log(0.72) * 2 * area * 0.04)  # per-keypoint OKS 0.72
    res = evaluate_keypoints(gt, _pred_from(gt, (d, 0.0)))
    assert res["mAP"] == pytest.approx(50.0) and res["mAR"] == pytest.approx(50.0)


# --- cross-check with pycocotools -----------------------------------------------------------

def _random_case(seed: int):
    """Multi-animal images with unlabeled keypoints, padding, near-duplicates and clutter."""
    rng = np.random.default_rng(seed)
    n_img, n_anim, n_pred, k = 25, 3, 5, 6
    gt = np.full((n_img, n_anim, k, 2), np.nan)
    pred = np.full((n_img, n_pred, k, 3), np.nan)
    for i in range(n_img):
        n_a = rng.integers(0, n_anim + 1)
        centres = rng.uniform(40, 160, size=(n_a, 2))  # often overlapping animals
        for a in range(n_a):
            gt[i, a] = centres[a] + rng.normal(0, rng.uniform(5, 30), size=(k, 2))
            if a and rng.random() < 0.3:  # animals nearly on top of each other
                gt[i, a] = gt[i, a - 1] + rng.normal(0, 2, size=(k, 2))
            gt[i, a, rng.random(k) < 0.25] = np.nan  # unlabeled keypoints
        if n_a and rng.random() < 0.2:
            gt[i, 0, 1:] = np.nan  # an animal with a single labeled keypoint
        for p in range(rng.integers(0, n_pred + 1)):
            base = gt[i, rng.integers(n_a)] if n_a and rng.random() < 0.8 else \
                rng.uniform(0, 200, size=(k, 2))
            xy = np.where(np.isnan(base), rng.uniform(0, 200, size=(k, 2)), base)
            xy = xy + rng.normal(0, rng.uniform(0.2, 5), size=(k, 2))
            pred[i, p, :, :2] = xy
            pred[i, p, :, 2] = rng.uniform(0, 1, size=k)
            bad = rng.random(k) < 0.08
            pred[i, p, bad, 2] = rng.choice([np.nan, -1.0], size=bad.sum())
            if rng.random() < 0.1:
                pred[i, p, 1:, 2] = -1.0  # a single valid keypoint: not a detection
    sigmas = rng.uniform(0.05, 0.15, size=k)
    return gt, pred, sigmas


def _pycocotools_map_mar(gt: np.ndarray, pred: np.ndarray, sigmas: np.ndarray):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, detections = [], [], []
    for i in range(gt.shape[0]):
        images.append({"id": i + 1, "width": 1000, "height": 1000})
        for animal in gt[i]:
            labeled = np.isfinite(animal).all(-1)
            if labeled.sum() < 2:  # DeepLabCut drops these ground-truth animals
                continue
            pts = animal[labeled]
            w, h = np.ptp(pts, axis=0)
            kps = np.zeros((len(animal), 3))
            kps[labeled, :2] = pts
            kps[labeled, 2] = 2
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                "num_keypoints": int(labeled.sum()), "keypoints": kps.ravel().tolist(),
                "area": float((w + EPS) * (h + EPS)),
                "bbox": [float(pts[:, 0].min()), float(pts[:, 1].min()), float(w), float(h)],
            })
        for det in pred[i]:
            valid = np.isfinite(det).all(-1) & (np.nan_to_num(det[:, 2], nan=-1) >= 0)
            if valid.sum() < 2:
                continue
            kps = det.copy()
            kps[~valid] = (5000.0, 5000.0, 0.0)  # missing keypoint: similarity 0
            detections.append({"image_id": i + 1, "category_id": 1,
                               "keypoints": kps.ravel().tolist(),
                               "score": float(det[valid, 2].mean())})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": annotations,
                        "categories": [{"id": 1, "name": "animal"}]}
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(detections), iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = sigmas
        evaluator.params.maxDets = [100]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, 0, 0, -1]  # area "all", last maxDets
    recall = evaluator.eval["recall"][:, 0, 0, -1]
    return 100 * precision.mean(), 100 * recall.mean()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_map_mar_agree_with_pycocotools(seed):
    pytest.importorskip("pycocotools")
    gt, pred, sigmas = _random_case(seed)
    res = evaluate_keypoints(gt, pred, oks_sigma=sigmas, matching="coco")
    ref_map, ref_mar = _pycocotools_map_mar(gt, pred, sigmas)
    assert 0.0 < res["mAP"] < 100.0  # a non-trivial case
    assert res["mAP"] == pytest.approx(ref_map, abs=1e-6)
    assert res["mAR"] == pytest.approx(ref_mar, abs=1e-6)


def test_oks_matrix_agrees_with_pycocotools_formula():
    """Every (prediction, animal) OKS against a per-pair transcription of the COCO formula."""
    gt, pred, sigmas = _random_case(5)
    oks = object_keypoint_similarity(gt, pred, sigmas)
    for i, p, a in np.ndindex(oks.shape):
        labeled = np.isfinite(gt[i, a]).all(-1)
        if labeled.sum() < 2:
            assert np.isnan(oks[i, p, a])
            continue
        area = np.prod(np.ptp(gt[i, a][labeled], axis=0) + EPS)
        ok = np.isfinite(pred[i, p]).all(-1) & (np.nan_to_num(pred[i, p, :, 2], nan=-1) >= 0)
        d2 = np.where(ok, ((pred[i, p, :, :2] - gt[i, a]) ** 2).sum(-1), np.inf)[labeled]
        expected = np.mean(np.exp(-d2 / (2 * area * (2 * sigmas[labeled]) ** 2)))
        assert oks[i, p, a] == pytest.approx(expected, rel=1e-9, abs=1e-12)


# --- output and input handling --------------------------------------------------------------

def test_result_is_plain_json():
    gt, pred, sigmas = _random_case(4)
    res = evaluate_keypoints(gt, pred, pcutoff=0.5, oks_sigma=sigmas)
    back = json.loads(json.dumps(res))
    assert set(back) >= {"rmse", "rmse_pcutoff", "mAP", "mAR", "per_keypoint_rmse",
                         "per_keypoint_rmse_pcutoff", "pck", "n_images", "n_keypoints_labeled"}
    assert type(res["rmse"]) is float and type(res["n_images"]) is int
    assert all(type(v) is float for v in res["per_keypoint_rmse"])
    assert back["per_keypoint_rmse"] == pytest.approx(res["per_keypoint_rmse"], nan_ok=True)
    assert back["pck"] == {"5.0": res["pck"][5.0], "10.0": res["pck"][10.0]}
    assert to_jsonable({np.float32(1.5): np.arange(2)}) == {1.5: [0, 1]}


def test_shorthand_equals_full_shape():
    gt = np.random.default_rng(3).uniform(0, 100, size=(4, 5, 2))
    pred = _pred_from(gt, (1.0, 2.0))
    assert evaluate_keypoints(gt, pred) == evaluate_keypoints(gt[:, None], pred[:, None])


def test_single_animal_flag():
    gt = _two_animals()
    with pytest.raises(ValueError, match="single_animal=True"):
        evaluate_keypoints(gt, _pred_from(gt), single_animal=True)
    # forcing OKS matching on one animal drops a prediction with zero OKS from RMSE
    one = gt[:, :1]
    far = _pred_from(one, (500.0, 0.0))
    assert evaluate_keypoints(one, far)["rmse"] == pytest.approx(500.0)
    assert math.isnan(evaluate_keypoints(one, far, single_animal=False)["rmse"])


@pytest.mark.parametrize("gt_shape, pred_shape, message", [
    ((2, 4, 3), (2, 4, 3), "ground truth must have shape"),
    ((2, 4, 2), (2, 4, 2), "predictions must have shape"),
    ((2, 4, 2), (3, 4, 3), "disagree"),
    ((2, 1, 4, 2), (2, 1, 5, 3), "disagree"),
])
def test_bad_shapes_raise_clear_errors(gt_shape, pred_shape, message):
    with pytest.raises(ValueError, match=message):
        evaluate_keypoints(np.zeros(gt_shape), np.zeros(pred_shape))


def test_bad_sigma_and_thresholds():
    gt = np.zeros((1, 3, 2))
    with pytest.raises(ValueError, match="oks_sigma"):
        evaluate_keypoints(gt, _pred_from(gt), oks_sigma=[0.1, 0.1])
    with pytest.raises(ValueError, match="pck_thresholds"):
        evaluate_keypoints(gt, _pred_from(gt), pck_thresholds=(-1.0,))


# --- real data ------------------------------------------------------------------------------

def test_openfield_labels_with_known_offset(openfield_dir):
    table = pd.read_hdf(openfield_dir / "labeled-data" / "m4s1" / "CollectedData_Pranav.h5")
    gt = table.to_numpy(dtype=float).reshape(len(table), -1, 2)  # (116, 4 bodyparts, 2)
    assert gt.shape == (116, 4, 2) and np.isfinite(gt).all()
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, size=gt.shape[:2])
    offset = 3.0 * np.stack([np.cos(angle), np.sin(angle)], axis=-1)  # exactly 3 px away
    res = evaluate_keypoints(gt, _pred_from(gt + offset), pck_thresholds=(2.9, 3.1))
    assert res["rmse"] == pytest.approx(3.0)
    assert res["pck"] == {2.9: 0.0, 3.1: 1.0}
    assert res["n_keypoints_labeled"] == 116 * 4
    # OKS per frame from its own keypoint box: check mAP against the per-frame OKS directly
    oks = object_keypoint_similarity(gt, _pred_from(gt + offset))[:, 0, 0]
    expected = 100 * np.mean([(oks >= t).mean() for t in np.linspace(0.5, 0.95, 10)])
    assert res["mAR"] == pytest.approx(expected)
