"""Keypoint accuracy metrics with DeepLabCut's definitions: RMSE, OKS mAP/mAR and PCK.

One module computes every number posezoo reports (training evaluation, export provenance,
the command line), so train-time and deploy-time metrics cannot disagree.

Definitions (DeepLabCut 3, ``deeplabcut/core/metrics``):

- A ground-truth keypoint is *labeled* when x and y are finite. A predicted keypoint is
  *valid* when x, y and score are finite and score >= 0.
- OKS between a prediction and a ground-truth animal is the mean, over the animal's labeled
  keypoints, of ``exp(-d^2 / (2 * area * (2 * sigma)^2))``; ``area`` is the product of the
  labeled keypoints' bounding-box width and height, each plus ``np.spacing(1)``. OKS is
  undefined (never matches) for animals with fewer than 2 labeled keypoints or a box whose
  area is close to 0. A missing predicted keypoint contributes similarity 0.
- mAP/mAR: COCO keypoint evaluation over OKS thresholds 0.50:0.05:0.95 with 101 recall
  points, x100. Only animals with >= 2 labeled keypoints count as ground truth, only
  predictions with >= 2 valid keypoints count as detections, and a prediction's score is
  the mean of its keypoint scores >= 0 (as DeepLabCut). Every prediction counts (no ``maxDets`` cap).
- RMSE (despite the name, DeepLabCut's mean Euclidean error in pixels): single animal pairs
  the prediction with the ground truth directly; several animals are paired by greedy OKS
  matching (OKS > 1e-6), and unmatched predictions are left out. Unique keypoints (one per
  frame) are paired directly and pooled into ``rmse`` and ``rmse_pcutoff``, as DeepLabCut does.

Greedy matching, predictions in descending score order, is DeepLabCut's
(``deeplabcut/core/metrics/matching.py``, ``match_greedy_oks``) by default: a prediction takes
its single best animal (highest OKS, the first on ties) if that animal is still free and the
OKS reaches the threshold, and stays unmatched otherwise. ``matching="coco"`` is pycocotools'
rule instead (a prediction takes the best animal *still free* whose OKS reaches the
threshold, the last on ties); the two agree except in crowded images. RMSE matching uses
``oks_sigma`` (DeepLabCut hard-codes 0.1, which is also our default).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .poses import Poses

#: COCO's OKS thresholds 0.50:0.05:0.95 and its 101 recall points 0:0.01:1.
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
#: DeepLabCut pairs predictions with animals for RMSE whenever their OKS is non-zero.
RMSE_MATCH_OKS = 1e-6
MATCHING_RULES = ("deeplabcut", "coco")
#: Upper bound on elements of one (images, predictions, animals, keypoints) OKS block.
_OKS_BLOCK_ELEMENTS = 1 << 22


def evaluate_keypoints(
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    pcutoff: float | None = None,
    oks_sigma: float | Sequence[float] | np.ndarray = 0.1,
    pck_thresholds: Iterable[float] = (5.0, 10.0),
    single_animal: bool | None = None,
    matching: str = "deeplabcut",
) -> dict[str, Any]:
    """All keypoint metrics of ``pred`` against ``gt``, as a JSON-serialisable dict.

    Args:
        gt: ``(images, animals, K, 2)`` ground truth, NaN = unlabeled, or ``(images, K, 2)``.
        pred: ``(images, predictions, K, 3)`` x, y, score (NaN rows = no prediction), or
            ``(images, K, 3)``.
        pcutoff: keypoints whose predicted score is below it are left out of
            ``rmse_pcutoff``. None means no cutoff, so ``rmse_pcutoff`` equals ``rmse``
            (DeepLabCut's default cutoff of -1 has the same effect).
        oks_sigma: OKS sigma, a scalar or one value per keypoint.
        pck_thresholds: pixel distances for PCK.
        single_animal: pair the one prediction with the one animal directly (True) or match
            by OKS (False). None chooses direct pairing when both have exactly one.
        matching: "deeplabcut" (default) or "coco": the greedy matching rule (module docstring).

    Returns:
        ``rmse``, ``rmse_pcutoff``, ``mAP``, ``mAR`` (floats, NaN when undefined, e.g. no
        labeled keypoints), ``per_keypoint_rmse``, ``per_keypoint_rmse_pcutoff`` (lists of K
        floats), ``pck`` ({threshold: fraction of labeled keypoints within it}; unmatched
        labeled keypoints count as misses), ``n_images``, ``n_keypoints_labeled``,
        ``n_keypoints_matched`` (pairs behind ``rmse``), ``n_keypoints_pcutoff`` (pairs
        behind ``rmse_pcutoff``), ``pcutoff`` and ``single_animal``. NaN is kept as a float
        (``json.dumps`` writes it as ``NaN``); the float keys of ``pck`` become strings in JSON.
    """
    gt_a, pred_a = _as_arrays(gt, pred)
    sigmas = _sigmas(oks_sigma, gt_a.shape[2])
    thresholds = [float(t) for t in pck_thresholds]
    if any(not math.isfinite(t) or t < 0 for t in thresholds):
        raise ValueError(f"pck_thresholds must be finite and >= 0, got {thresholds}")
    single = _single_animal(gt_a, pred_a, single_animal)
    if matching not in MATCHING_RULES:
        raise ValueError(f"matching must be one of {MATCHING_RULES}, got {matching!r}")

    errors, scores = _matched_errors(gt_a, pred_a, sigmas, single, matching)
    finite = np.isfinite(errors)
    keep = finite if pcutoff is None else finite & (scores >= float(pcutoff))
    n_labeled = int(np.isfinite(gt_a).all(-1).sum())
    m_ap, m_ar = _coco_map_mar(gt_a, pred_a, sigmas, matching)

    return to_jsonable({
        "rmse": _masked_mean(errors, finite),
        "rmse_pcutoff": _masked_mean(errors, keep),
        "mAP": m_ap,
        "mAR": m_ar,
        "per_keypoint_rmse": _masked_mean(errors, finite, axis=0),
        "per_keypoint_rmse_pcutoff": _masked_mean(errors, keep, axis=0),
        "pck": {t: _pck_fraction(errors, finite, t, n_labeled) for t in thresholds},
        "n_images": gt_a.shape[0],
        "n_keypoints_labeled": n_labeled,
        "n_keypoints_matched": int(finite.sum()),
        "n_keypoints_pcutoff": int(keep.sum()),
        "pcutoff": None if pcutoff is None else float(pcutoff),
        "single_animal": single,
    })


def evaluate_poses(
    gt: Poses,
    pred: Poses,
    *,
    pcutoff: float | None = None,
    oks_sigma: float | Sequence[float] | np.ndarray = 0.1,
    pck_thresholds: Iterable[float] = (5.0, 10.0),
    matching: str = "deeplabcut",
) -> dict[str, Any]:
    """:func:`evaluate_keypoints` of predicted against labeled `Poses` of the same frames.

    Keypoints are matched by name (the metrics and their per-keypoint lists follow ``gt``'s
    order; every labeled keypoint must be predicted); a single unnamed animal on both sides is
    paired directly, anything else is matched by OKS. Unique keypoints labeled in ``gt`` and
    predicted are paired directly and pooled into ``rmse`` / ``rmse_pcutoff`` (DeepLabCut's
    ``compute_rmse``); their own figures are ``rmse_unique`` / ``rmse_pcutoff_unique`` and they
    close the per-keypoint lists. Adds ``keypoints`` (the names those lists follow).
    """
    if len(gt) != len(pred):
        raise ValueError(f"{len(pred)} predicted frames for {len(gt)} labeled ones")
    missing = [k for k in gt.keypoints if k not in pred.keypoints]
    if missing:
        raise ValueError(f"the predictions have no keypoints {missing} (they have {pred.keypoints})")
    unique = [k for k in gt.unique_keypoints if k in pred.unique_keypoints]
    pred = pred.select(keypoints=gt.keypoints + unique)
    single = gt.single_animal and pred.single_animal
    metrics = evaluate_keypoints(gt.xy, pred.coords, pcutoff=pcutoff, oks_sigma=oks_sigma,
                                 pck_thresholds=pck_thresholds, single_animal=True if single else None,
                                 matching=matching)
    metrics["keypoints"] = list(gt.keypoints)
    if unique and gt.unique is not None and pred.unique is not None:
        _pool_unique(metrics, gt.select(keypoints=unique).unique, pred.unique, pcutoff)  # type: ignore[arg-type]
        metrics["keypoints"] += unique
    return metrics


def _pool_unique(metrics: dict[str, Any], gt: np.ndarray, pred: np.ndarray, pcutoff: float | None) -> None:
    """Add unique keypoints (frames, U, 3), paired directly, to the RMSE figures in place."""
    xy = _valid_xy(pred[:, None])[:, 0]
    errors = np.linalg.norm(xy - gt[..., :2], axis=-1)  # (frames, U), NaN where unlabeled or missing
    finite = np.isfinite(errors)
    keep = finite if pcutoff is None else finite & (np.nan_to_num(pred[..., 2], nan=-1.0) >= float(pcutoff))
    for key, count, mask in (("rmse", "n_keypoints_matched", finite), ("rmse_pcutoff", "n_keypoints_pcutoff", keep)):
        n_a, n_u = metrics[count], int(mask.sum())
        total = (metrics[key] * n_a if n_a else 0.0) + float(errors[mask].sum())
        metrics[f"{key}_unique"] = _masked_mean(errors, mask)
        metrics[key] = total / (n_a + n_u) if n_a + n_u else math.nan
        metrics[count] = n_a + n_u
        name = "per_keypoint_rmse" if key == "rmse" else "per_keypoint_rmse_pcutoff"
        metrics[name] = list(metrics[name]) + to_jsonable(_masked_mean(errors, mask, axis=0))
    metrics["n_keypoints_labeled"] += int(np.isfinite(gt[..., :2]).all(-1).sum())


def pck(
    gt: np.ndarray,
    pred: np.ndarray,
    threshold: float,
    *,
    oks_sigma: float | Sequence[float] | np.ndarray = 0.1,
    single_animal: bool | None = None,
) -> float:
    """Fraction of labeled keypoints predicted within ``threshold`` pixels (NaN if none labeled).

    Predictions are paired with animals exactly as for RMSE in :func:`evaluate_keypoints`.
    """
    gt_a, pred_a = _as_arrays(gt, pred)
    sigmas = _sigmas(oks_sigma, gt_a.shape[2])
    errors, _ = _matched_errors(gt_a, pred_a, sigmas, _single_animal(gt_a, pred_a, single_animal), "deeplabcut")
    n_labeled = int(np.isfinite(gt_a).all(-1).sum())
    return _pck_fraction(errors, np.isfinite(errors), float(threshold), n_labeled)


def object_keypoint_similarity(
    gt: np.ndarray,
    pred: np.ndarray,
    oks_sigma: float | Sequence[float] | np.ndarray = 0.1,
) -> np.ndarray:
    """OKS of every prediction with every animal, ``(images, predictions, animals)``.

    NaN where OKS is undefined (animal with < 2 labeled keypoints or a zero-area box).
    """
    gt_a, pred_a = _as_arrays(gt, pred)
    return _oks(gt_a, _valid_xy(pred_a), _sigmas(oks_sigma, gt_a.shape[2]))


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays turned into Python floats, ints, bools and lists."""
    if isinstance(value, Mapping):
        return {to_jsonable(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()] if value.ndim else to_jsonable(value.item())
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- input checking -------------------------------------------------------------------------

def _as_arrays(gt: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Float64 ``(I, A, K, 2)`` and ``(I, P, K, 3)``, expanding the single-animal shorthand."""
    gt_a = np.asarray(gt, dtype=np.float64)
    pred_a = np.asarray(pred, dtype=np.float64)
    if gt_a.ndim == 3:
        gt_a = gt_a[:, None]
    if pred_a.ndim == 3:
        pred_a = pred_a[:, None]
    if gt_a.ndim != 4 or gt_a.shape[-1] != 2:
        raise ValueError(
            f"ground truth must have shape (images, animals, K, 2) or (images, K, 2), "
            f"got {np.shape(gt)}")
    if pred_a.ndim != 4 or pred_a.shape[-1] != 3:
        raise ValueError(
            f"predictions must have shape (images, predictions, K, 3) or (images, K, 3) "
            f"with x, y, score, got {np.shape(pred)}")
    if gt_a.shape[0] != pred_a.shape[0] or gt_a.shape[2] != pred_a.shape[2]:
        raise ValueError(
            f"ground truth {np.shape(gt)} and predictions {np.shape(pred)} disagree on the "
            f"number of images or keypoints")
    return gt_a, pred_a


def _sigmas(oks_sigma: Any, n_keypoints: int) -> np.ndarray:
    """Per-keypoint sigma array ``(K,)`` from a scalar or a length-K sequence."""
    sig = np.asarray(oks_sigma, dtype=np.float64)
    if sig.ndim == 0:
        sig = np.full(n_keypoints, float(sig))
    if sig.shape != (n_keypoints,) or not np.all(np.isfinite(sig) & (sig > 0)):
        raise ValueError(
            f"oks_sigma must be a positive scalar or {n_keypoints} positive values, "
            f"got {oks_sigma!r}")
    return sig


def _single_animal(gt: np.ndarray, pred: np.ndarray, single_animal: bool | None) -> bool:
    """Resolve ``single_animal=None`` and reject direct pairing of several animals."""
    one_each = gt.shape[1] == 1 and pred.shape[1] == 1
    if single_animal is None:
        return one_each
    if single_animal and not one_each:
        raise ValueError(
            f"single_animal=True needs exactly one animal and one prediction per image, "
            f"got {gt.shape[1]} animals and {pred.shape[1]} predictions")
    return bool(single_animal)


# --- OKS and matching -----------------------------------------------------------------------

def _valid_xy(pred: np.ndarray) -> np.ndarray:
    """Predicted x, y with invalid keypoints (non-finite, or score < 0) set to NaN."""
    valid = np.isfinite(pred).all(-1) & (np.nan_to_num(pred[..., 2], nan=-1.0) >= 0)
    return np.where(valid[..., None], pred[..., :2], np.nan)


def _oks(gt: np.ndarray, pred_xy: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """OKS ``(I, P, A)`` from gt ``(I, A, K, 2)`` and pred xy ``(I, P, K, 2)`` (NaN = missing)."""
    n_img, n_anim, n_kpt, _ = gt.shape
    n_pred = pred_xy.shape[1]
    labeled = np.isfinite(gt).all(-1)  # (I, A, K)
    n_labeled = labeled.sum(-1)
    lo = np.where(labeled[..., None], gt, np.inf).min(axis=2)
    hi = np.where(labeled[..., None], gt, -np.inf).max(axis=2)
    with np.errstate(invalid="ignore"):
        area = np.prod(hi - lo + np.spacing(1), axis=-1)  # (I, A)
    defined = (n_labeled >= 2) & ~np.isclose(area, 0.0)
    # 1 / (2 * area * (2 sigma)^2) per animal and keypoint; 0 where undefined or unlabeled.
    inv = np.where(defined, 1.0 / (2.0 * np.where(defined, area, 1.0)), 0.0)
    coef = inv[..., None] / (2.0 * sigmas) ** 2 * labeled  # (I, A, K)
    count = np.maximum(n_labeled, 1)

    out = np.empty((n_img, n_pred, n_anim))
    block = max(1, _OKS_BLOCK_ELEMENTS // max(1, n_pred * n_anim * n_kpt))
    for s in range(0, n_img, block):  # bounded memory for long test sets
        sl = slice(s, s + block)
        d2 = ((pred_xy[sl, :, None] - gt[sl, None]) ** 2).sum(-1)  # (b, P, A, K)
        # A missing prediction is infinitely far: similarity 0 on that keypoint.
        d2 = np.where(np.isnan(d2) & labeled[sl, None], np.inf, np.nan_to_num(d2))
        with np.errstate(invalid="ignore"):  # inf * 0 on undefined animals, masked below
            sim = np.exp(-d2 * coef[sl, None]) * labeled[sl, None]
        out[sl] = sim.sum(-1) / count[sl, None]
    return np.where(defined[:, None, :], out, np.nan)


def _rank_predictions(pred: np.ndarray, min_valid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image, prediction indices by descending score, their scores and usability.

    A prediction's score is the mean of its keypoint scores >= 0 (DeepLabCut's); predictions
    with fewer than ``min_valid`` valid keypoints are unusable and sorted last. The sort is stable, as
    in pycocotools, so ties keep their input order.
    """
    xy = _valid_xy(pred)
    valid_kp = np.isfinite(xy).all(-1)  # (I, P, K)
    n_valid = valid_kp.sum(-1)
    usable = n_valid >= max(min_valid, 1)
    # As DeepLabCut: the mean of every score >= 0, a keypoint without coordinates included.
    scored = np.nan_to_num(pred[..., 2], nan=-1.0) >= 0
    score = np.where(scored, pred[..., 2], 0.0).sum(-1) / np.maximum(scored.sum(-1), 1)
    order = np.argsort(np.where(usable, -score, np.inf), axis=1, kind="stable")
    return (order, np.take_along_axis(score, order, axis=1),
            np.take_along_axis(usable, order, axis=1))


def _greedy_match(oks: np.ndarray, usable: np.ndarray, thresholds: np.ndarray,
                  rule: str = "deeplabcut") -> np.ndarray:
    """Greedy matching for every threshold at once.

    ``oks`` is ``(I, P, A)`` with predictions already in descending score order per image.
    Returns ``(T, I, P)`` matched animal index, -1 for unmatched. Each prediction in turn
    takes ("deeplabcut") its highest-OKS animal (the first on ties) when that one is free and
    reaches the threshold, or ("coco") the highest-OKS animal not yet taken whose OKS reaches
    the threshold (the last such animal on exact ties, as pycocotools does). Loops over
    prediction rank only; images and thresholds are vectorised.
    """
    n_img, n_pred, n_anim = oks.shape
    match = np.full((len(thresholds), n_img, n_pred), -1, dtype=np.int64)
    if n_anim == 0 or n_pred == 0:
        return match
    sim = np.where(np.isnan(oks), -np.inf, oks)
    thr = np.minimum(thresholds, 1 - 1e-10)[:, None, None]
    taken = np.zeros((len(thresholds), n_img, n_anim), dtype=bool)
    if rule == "deeplabcut":
        images = np.arange(n_img)
        for r in range(n_pred):
            best = np.argmax(sim[:, r, :], -1)  # (I,): the prediction's own best animal
            value = sim[images, r, best]
            free = ~taken[:, images, best]  # (T, I)
            hit = free & (value[None] >= thr[..., 0]) & usable[None, :, r] & np.isfinite(value)[None]
            match[:, :, r] = np.where(hit, best[None], -1)
            t_idx, i_idx = np.nonzero(hit)
            taken[t_idx, i_idx, best[i_idx]] = True
        return match
    for r in range(n_pred):
        cand = (sim[None, :, r, :] >= thr) & ~taken & usable[None, :, r, None]
        best = n_anim - 1 - np.argmax(np.where(cand, sim[None, :, r, :], -np.inf)[..., ::-1], -1)
        hit = cand.any(-1)
        match[:, :, r] = np.where(hit, best, -1)
        t_idx, i_idx = np.nonzero(hit)
        taken[t_idx, i_idx, best[t_idx, i_idx]] = True
    return match


def _matched_errors(gt: np.ndarray, pred: np.ndarray, sigmas: np.ndarray,
                    single: bool, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Pixel errors and predicted scores ``(pairs, K)`` of matched keypoints (NaN = none)."""
    xy = _valid_xy(pred)
    if single:
        return np.linalg.norm(xy[:, 0] - gt[:, 0], axis=-1), pred[:, 0, :, 2]
    order, _, usable = _rank_predictions(pred, min_valid=1)
    xy_ranked = np.take_along_axis(xy, order[..., None, None], axis=1)
    score_ranked = np.take_along_axis(pred[..., 2], order[..., None], axis=1)
    match = _greedy_match(_oks(gt, xy_ranked, sigmas), usable, np.array([RMSE_MATCH_OKS]), rule)[0]
    img, rank = np.nonzero(match >= 0)
    errors = np.linalg.norm(xy_ranked[img, rank] - gt[img, match[img, rank]], axis=-1)
    return errors, score_ranked[img, rank]


def _coco_map_mar(gt: np.ndarray, pred: np.ndarray, sigmas: np.ndarray, rule: str) -> tuple[float, float]:
    """COCO keypoint mAP and mAR (x100) over :data:`OKS_THRESHOLDS`."""
    n_gt = int((np.isfinite(gt).all(-1).sum(-1) >= 2).sum())
    if n_gt == 0:
        return math.nan, math.nan
    order, score, usable = _rank_predictions(pred, min_valid=2)
    xy_ranked = np.take_along_axis(_valid_xy(pred), order[..., None, None], axis=1)
    match = _greedy_match(_oks(gt, xy_ranked, sigmas), usable, OKS_THRESHOLDS, rule)
    flat_usable = usable.reshape(-1)
    if not flat_usable.any():
        return 0.0, 0.0
    # All detections of the data set, highest score first (stable: image order on ties).
    ranked = np.argsort(-score.reshape(-1)[flat_usable], kind="stable")
    tp_flags = (match.reshape(len(OKS_THRESHOLDS), -1)[:, flat_usable] >= 0)[:, ranked]
    tp = np.cumsum(tp_flags, axis=1)
    fp = np.cumsum(~tp_flags, axis=1)
    recall = tp / n_gt
    precision = tp / (tp + fp + np.spacing(1))
    # Precision envelope: best precision at any higher recall.
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    sampled = np.zeros((len(OKS_THRESHOLDS), len(RECALL_THRESHOLDS)))
    for t in range(len(OKS_THRESHOLDS)):
        idx = np.searchsorted(recall[t], RECALL_THRESHOLDS, side="left")
        ok = idx < precision.shape[1]
        sampled[t, ok] = precision[t, idx[ok]]
    return 100.0 * float(sampled.mean()), 100.0 * float(recall[:, -1].mean())


# --- reductions -----------------------------------------------------------------------------

def _masked_mean(values: np.ndarray, mask: np.ndarray, axis: int | None = None) -> Any:
    """Mean of ``values`` where ``mask``; NaN where nothing is selected (no warnings)."""
    total = np.where(mask, values, 0.0).sum(axis=axis)
    count = mask.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return float(mean) if axis is None else mean


def _pck_fraction(errors: np.ndarray, finite: np.ndarray, threshold: float,
                  n_labeled: int) -> float:
    """Matched keypoints within ``threshold`` pixels over all labeled keypoints."""
    if n_labeled == 0:
        return math.nan
    return float((finite & (np.nan_to_num(errors, nan=np.inf) <= threshold)).sum() / n_labeled)
