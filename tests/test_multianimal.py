"""Multi-animal projects end to end: reading, targets, assembly, metrics by hand, training,
export with the parity gate on assembled animals, and every command on a multi-animal model."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from posezoo.runtime.assemble import AssemblyParams, assemble, assemble_batch
from posezoo.runtime.metrics import evaluate_keypoints, evaluate_poses
from posezoo.runtime.poses import Poses
from posezoo.runtime.spec import SCHEMA_VERSION
from posezoo.training.data import TargetConfig, edge_affinities, make_multi_targets, peak_candidates
from posezoo.training.paf_graph import paf_graph

from conftest import MULTI_TRAIN

def _cli(*args: object) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "posezoo.runtime.cli", *map(str, args)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


# --- reading ------------------------------------------------------------------------------------

def test_project_with_napari_key_and_unique_keypoints_is_read(multi_project):
    from posezoo.training.project import load_project

    table = multi_project / "labeled-data" / "mice1" / "CollectedData_synthetic.h5"
    with pd.HDFStore(table, "r") as store:
        assert store.keys() == ["/keypoints"]
    project = load_project(multi_project)
    labels = project.labels
    assert project.multi_animal and project.config.individuals == ["mouse1", "mouse2", "mouse3"]
    assert labels.individuals == ["mouse1", "mouse2", "mouse3"] and labels.unique_keypoints == ["port"]
    assert labels.coords.shape == (12, 3, 6, 3) and labels.unique.shape == (12, 1, 3)
    assert np.isfinite(labels.unique[..., :2]).all()  # the port is labelled in every frame
    present = np.isfinite(labels.xy).all(-1).any(-1)  # (frames, individuals)
    assert (present.sum(1) == 2).any() and (present.sum(1) == 3).any()  # frames with fewer animals
    assert np.isnan(labels.xy[present]).any(-1).sum() < present.sum() * 6 / 4  # most keypoints labelled


def test_a_keypoint_under_another_mouse_is_left_unlabeled():
    from posezoo.training.synthetic import Pose, _look
    from posezoo.training.synthetic_multi import _scene

    rng = np.random.default_rng(0)
    pose = Pose(80.0, 60.0, 0.3, 0.0, 0.0, 40.0, 0.2, 0.0)
    apart = Pose(20.0, 20.0, 0.3, 0.0, 0.0, 40.0, 0.2, 0.0)
    background = np.full((120, 160, 3), 200.0, np.float32)
    looks = [_look(rng), _look(rng)]
    _, kps = _scene(background, [pose, pose], looks, ("snout", "tailbase"), rng, None, 40.0)
    assert np.isnan(kps[0]).all() and np.isfinite(kps[1]).all()  # the first mouse lies under the second
    _, kps = _scene(background, [pose, apart], looks, ("snout", "tailbase"), rng, None, 40.0)
    assert np.isfinite(kps).all()


def test_paf_graph_all_pairs_and_skeleton():
    names = ["a", "b", "c", "d"]
    assert paf_graph(names, "all") == [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d")]
    assert paf_graph(names, "skeleton", skeleton=[("a", "b"), ("c", "x")]) == [("a", "b")]
    many = [f"k{i}" for i in range(15)]  # 105 pairs: pruned to average degree 6, still connected
    labels = np.random.default_rng(0).uniform(0, 100, (20, 2, 15, 2))
    edges = paf_graph(many, "all", labels=labels)
    assert len(edges) == 6 * 15 // 2
    reached, frontier = {"k0"}, ["k0"]
    while frontier:
        node = frontier.pop()
        for a, b in edges:
            for x, y in ((a, b), (b, a)):
                if x == node and y not in reached:
                    reached.add(y)
                    frontier.append(y)
    assert reached == set(many)


# --- targets and the reference decoding -----------------------------------------------------------

def test_targets_cover_every_animal_with_fields_along_its_limbs():
    tcfg = TargetConfig(stride=8)
    coords = np.array([[[20.0, 20.0], [60.0, 20.0]],   # animal 0: a horizontal limb
                       [[100.0, 40.0], [100.0, 100.0]]])  # animal 1: a vertical one
    t = make_multi_targets(coords, (128, 128), tcfg, [(0, 1)], paf_width=8.0, identities=2)
    heat, paf, ident = t["heatmap"], t["paf"], t["identity"]
    assert heat.shape == (2, 16, 16) and paf.shape == (1, 2, 16, 16)
    # each keypoint channel peaks at both animals (cell centres (c*8+3.5, r*8+3.5))
    assert heat[0, 2, 2] > 0.9 and heat[0, 5, 12] > 0.9 and heat[1, 2, 7] > 0.9 and heat[1, 12, 12] > 0.9
    assert np.allclose(paf[0, :, 2, 5], [1.0, 0.0]) and np.allclose(paf[0, :, 8, 12], [0.0, 1.0])
    assert np.allclose(paf[0, :, 14, 1], 0.0)  # off every limb
    assert ident[2, 2] == 0 and ident[12, 12] == 1 and ident[15, 0] == -1
    # locref points to the nearest animal's keypoint
    assert np.allclose(t["locref"][0, :, 2, 2] * tcfg.locref_scale, [20 - 19.5, 20 - 19.5])


def test_peak_candidates_and_affinities_find_two_animals():
    probs = np.zeros((1, 2, 16, 16), np.float32)
    probs[0, 0, 2, 2], probs[0, 0, 10, 10] = 0.9, 0.8
    probs[0, 1, 2, 6], probs[0, 1, 14, 10] = 0.7, 0.95
    cand = peak_candidates(probs, np.zeros((1, 2, 2, 16, 16), np.float32), 3, 8)
    assert np.allclose(cand[0, 0, :2], [[19.5, 19.5, 0.9], [83.5, 83.5, 0.8]])
    assert cand[0, 0, 2, 2] == 0.0  # no third peak
    paf = np.zeros((1, 1, 2, 16, 16), np.float32)
    paf[0, 0, 0, 2, 2:7] = 1.0  # field from (2, 2) to (2, 6), pointing +x
    paf[0, 0, 1, 10:15, 10] = 1.0  # field from (10, 10) down to (14, 10), pointing +y
    aff = edge_affinities(paf, cand, [(0, 1)], 8)[0, 0]
    # rows: keypoint 0's candidates (0.9 at (2,2), 0.8 at (10,10)); cols: keypoint 1's (0.95 at (14,10), 0.7 at (2,6))
    assert aff[0, 1] == pytest.approx(1.0) and aff[1, 0] == pytest.approx(1.0)
    assert aff[0, 0] < 0.3 and aff[1, 1] < 0.3


# --- assembly --------------------------------------------------------------------------------------

def _touching_frame() -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Two 3-keypoint animals side by side, 6 px apart (their bodies touch): the cross-animal
    affinities are high too (0.6) but lower than the true ones (0.9)."""
    xy = np.array([[[10.0, 10.0], [10.0, 30.0], [10.0, 50.0]],
                   [[16.0, 12.0], [16.0, 32.0], [16.0, 52.0]]])
    cand = np.zeros((4, 2, 3))  # 3 keypoints + 1 unique
    cand[:3, :, :2] = xy.transpose(1, 0, 2)
    cand[:3, :, 2] = [[0.9, 0.8], [0.85, 0.95], [0.7, 0.9]]
    cand[3] = [[70.0, 70.0, 0.9], [5.0, 5.0, 0.3]]
    graph = [(0, 1), (1, 2), (0, 2)]
    aff = np.full((3, 2, 2), 0.6)
    for e in range(3):
        aff[e, 0, 0] = aff[e, 1, 1] = 0.9
    return cand, aff, graph


def test_touching_animals_are_assembled_apart_not_merged():
    cand, aff, graph = _touching_frame()
    animals, unique, slots = assemble(cand, aff, graph, 3, AssemblyParams(max_animals=3))
    found = animals[np.isfinite(animals[:, :, 0]).any(1)]
    assert len(found) == 2
    xs = sorted(found[:, :, 0].mean(1))
    assert xs == [10.0, 16.0]  # each animal's keypoints all from one column
    for animal in found:
        assert np.ptp(animal[:, 0]) == 0.0
    assert np.allclose(unique[0], [70.0, 70.0, 0.9])
    assert (slots[2] == -1).all()  # the third row is empty


def test_assembly_limits_and_drops():
    cand, aff, graph = _touching_frame()
    one, _, _ = assemble(cand, aff, graph, 3, AssemblyParams(max_animals=1))
    assert np.isfinite(one[0]).all()  # one animal: the best candidate of every keypoint
    assert np.allclose(one[0, :, :2], [[10, 10], [16, 32], [16, 52]])
    weak = aff.copy()
    weak[:, 1, 1] = 0.01  # animal 2's links vanish and its keypoints go to nothing weaker than 0.05
    weak[:, 0, 1] = weak[:, 1, 0] = 0.0
    animals, _, _ = assemble(cand, weak, graph, 3, AssemblyParams(max_animals=3))
    assert np.isfinite(animals[:, :, 0]).any(1).sum() == 1
    low = cand.copy()
    low[:, :, 2] = 0.05  # every candidate under min_score: nothing
    animals, unique, _ = assemble(low, aff, graph, 3, AssemblyParams(max_animals=3))
    assert np.isnan(animals).all() and np.isnan(unique).all()


def _crossing_frame() -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Two head-neck-tail animals crossing (head-neck 20 px, neck-tail 40, head-tail 60): one
    lies along y = 50, the other along x = 40. Their fields overlap where they cross, so the
    neck-tail and head-tail affinities favour the wrong pairing (0.8 and 0.6 against 0.5)."""
    cand = np.zeros((3, 2, 3))
    cand[:, 0, :2] = [[0, 50], [20, 50], [60, 50]]
    cand[:, 1, :2] = [[40, 20], [40, 40], [40, 80]]
    cand[:, :, 2] = 0.9
    graph = [(0, 1), (1, 2), (0, 2)]
    aff = np.array([[[0.9, 0.1], [0.1, 0.9]], [[0.5, 0.8], [0.8, 0.5]], [[0.5, 0.6], [0.6, 0.5]]])
    return cand, aff, graph


def test_crossing_animals_are_assembled_within_the_labelled_distances():
    cand, aff, graph = _crossing_frame()
    tail_of = lambda animals: {tuple(a[0, :2]): tuple(a[2, :2]) for a in animals if np.isfinite(a).all()}
    mixed, _, _ = assemble(cand, aff, graph, 3, AssemblyParams(max_animals=2))
    assert tail_of(mixed) == {(0, 50): (40, 80), (40, 20): (60, 50)}  # affinity alone: heads on the wrong tails
    labelled = np.array([[0, 20, 60], [20, 0, 40], [60, 40, 0]], float)
    shape = AssemblyParams(max_animals=2, nearest=0.9 * labelled, farthest=1.1 * labelled)
    right, _, _ = assemble(cand, aff, graph, 3, shape)
    assert tail_of(right) == {(0, 50): (60, 50), (40, 20): (40, 80)}
    # a pair the labels say nothing of (NaN) is not held to any distance
    loose = AssemblyParams(max_animals=2, nearest=np.full((3, 3), np.nan), farthest=np.full((3, 3), np.nan))
    assert tail_of(assemble(cand, aff, graph, 3, loose)[0]) == tail_of(mixed)


def test_assembly_distances_in_the_spec_are_validated():
    from posezoo.runtime.spec import AssemblySpec, SpecError

    AssemblySpec(nearest=[[None, 1.0], [1.0, None]], farthest=[[None, 9.0], [9.0, None]]).validate("m", 2)
    with pytest.raises(SpecError, match="come together"):
        AssemblySpec(nearest=[[None, 1.0], [1.0, None]]).validate("m", 2)
    with pytest.raises(SpecError, match="2x2 matrix"):
        AssemblySpec(nearest=[[1.0]], farthest=[[1.0]]).validate("m", 2)
    with pytest.raises(SpecError, match="positive"):
        AssemblySpec(nearest=[[None, 1.0], [1.0, None]], farthest=[[None, 0.0], [0.0, None]]).validate("m", 2)


def test_assembly_distances_come_from_the_labelled_animals():
    from posezoo.training.body import ASSEMBLY_MARGIN, assembly_distances

    animals = np.array([[[0, 0], [10, 0], [30, 0]], [[0, 0], [0, 12], [0, 40]], [[5, 5], [15, 5], [np.nan, np.nan]]])
    near, far = assembly_distances(animals, slack=1.0)
    assert near[0][1] == pytest.approx(10 * (1 - ASSEMBLY_MARGIN) - 1, abs=0.05)
    assert far[0][1] == pytest.approx(12 * (1 + ASSEMBLY_MARGIN) + 1, abs=0.05)
    assert near[0][2] is None and far[1][2] is None  # labelled together twice: too few to say
    assert near[0][0] is None
    assert assembly_distances(animals[:2], slack=1.0) is None


def test_assembly_with_identity_puts_animals_in_their_individuals_rows():
    cand, aff, graph = _touching_frame()
    identity = np.zeros((1, 4, 2, 3))
    identity[0, :, 0] = [0.1, 0.1, 0.8]  # the x = 10 animal votes for individual 3
    identity[0, :, 1] = [0.7, 0.2, 0.1]  # the x = 16 animal for individual 1
    animals, _ = assemble_batch(cand[None], aff[None], graph, 3, AssemblyParams(max_animals=3), identity)
    assert np.allclose(animals[0, 2, :, 0], 10.0) and np.allclose(animals[0, 0, :, 0], 16.0)
    assert np.isnan(animals[0, 1]).all()


# --- metrics: DeepLabCut's multi-animal definitions, by hand ---------------------------------------

def test_multi_animal_metrics_by_hand():
    """Two labelled animals (3 keypoints, boxes 20 x 10, area 200) and one with a single keypoint
    (not an animal for OKS). Predictions: A exact (score 0.9), B off by (3, 4) = 5 px on every
    keypoint (score 0.8), and a stray 2-keypoint prediction far away (score 0.95).

    OKS(B) = exp(-25 / (2 * 200 * 0.2^2)) = exp(-25/16) = 0.2096 (below 0.5: a false positive
    at every threshold); OKS(A) = 1. Ranked by score: stray (FP), A (TP), B (FP): precision
    1/2 from recall 0 to 0.5 (51 points), 0 beyond -> mAP = 100 * 0.5 * 51/101 = 25.25; recall
    1/2 -> mAR 50. RMSE after matching (OKS > 1e-6): A 0 px x 3, B 5 px x 3 -> 2.5 px; the stray
    matches nothing. rmse_pcutoff (0.85): A's keypoints only -> 0."""
    a = [[10.0, 10.0], [30.0, 10.0], [20.0, 20.0]]
    b = [[110.0, 110.0], [130.0, 110.0], [120.0, 120.0]]
    lone = [[300.0, 300.0], [np.nan, np.nan], [np.nan, np.nan]]
    gt = np.array([[a, b, lone]])
    pa = np.concatenate([np.array(a), np.full((3, 1), 0.9)], 1)
    pb = np.concatenate([np.array(b) + (3.0, 4.0), np.full((3, 1), 0.8)], 1)
    stray = np.array([[500.0, 500.0, 0.95], [520.0, 500.0, 0.95], [np.nan, np.nan, np.nan]])
    pred = np.array([[stray, pa, pb]])
    res = evaluate_keypoints(gt, pred, pcutoff=0.85)
    assert math.exp(-25 / 16) == pytest.approx(0.2096, abs=1e-4)
    assert res["mAP"] == pytest.approx(100 * 0.5 * 51 / 101)
    assert res["mAR"] == pytest.approx(50.0)
    assert res["rmse"] == pytest.approx(2.5) and res["n_keypoints_matched"] == 6
    assert res["rmse_pcutoff"] == pytest.approx(0.0) and res["n_keypoints_pcutoff"] == 3
    assert res["per_keypoint_rmse"] == pytest.approx([2.5, 2.5, 2.5])


def test_unique_keypoints_pool_into_rmse_like_deeplabcut():
    """Animals: errors 0 and 5 px on 2 keypoints each (mean 2.5 over 4); the unique keypoint is
    2 px off in frame 0 and unpredicted in frame 1 -> rmse = (0+0+5+5+2) / 5 = 2.4 px."""
    k, ind = ["a", "b"], ["m1", "m2"]
    gt_xy = np.array([[[[0, 0], [10, 20]], [[50, 50], [60, 70]]]] * 2, float)
    gt = Poses(np.concatenate([gt_xy, np.ones((*gt_xy.shape[:3], 1))], -1), k, ind,
               unique=np.array([[[5.0, 5.0, 1.0]], [[6.0, 6.0, 1.0]]]), unique_keypoints=["port"], kind="labels")
    pred_xy = gt_xy.copy()
    pred_xy[:, 1] += (3.0, 4.0)
    pred = Poses(np.concatenate([pred_xy, np.full((*pred_xy.shape[:3], 1), 0.9)], -1), k, ind,
                 unique=np.array([[[5.0, 7.0, 0.9]], [[np.nan, np.nan, np.nan]]]), unique_keypoints=["port"])
    res = evaluate_poses(gt, pred)
    # frames: 2 x (0, 0, 5, 5) animals + one unique error of 2 -> (2 * 10 + 2) / 9
    assert res["rmse"] == pytest.approx((2 * 10 + 2) / 9)
    assert res["rmse_unique"] == pytest.approx(2.0)
    assert res["keypoints"] == ["a", "b", "port"] and res["per_keypoint_rmse"][2] == pytest.approx(2.0)


# --- training, export, runtime and every command on a multi-animal model -----------------------

def test_run_spec_and_export_parity_on_assembled_animals(multi_run, multi_model):
    from posezoo.runtime.model import PoseModel

    spec = json.loads((multi_run / "spec.json").read_text())
    assert spec["schema_version"] == SCHEMA_VERSION and spec["multi"]["individuals"] == ["mouse1", "mouse2", "mouse3"]
    assert spec["multi"]["unique_keypoints"] == ["port"] and len(spec["multi"]["graph"]) == 15
    near, far = spec["assembly"]["nearest"], spec["assembly"]["farthest"]  # measured on the training labels
    assert len(near) == len(spec["keypoints"]) and all(0 <= n < f for rn, rf in zip(near, far) for n, f in zip(rn, rf)
                                                       if n is not None)
    model = PoseModel.load(multi_model)
    assert model.body_check and not PoseModel.load(multi_model, body_check=False).body_check
    parity = model.spec.provenance["parity"]
    assert parity["passed"] and "keypoints_found_on_one_side_only" in parity
    empty = model.layout(2)
    assert empty.individuals == ["mouse1", "mouse2", "mouse3"] and empty.unique_keypoints == ["port"]


def test_runtime_assembles_animals_and_video_results_have_individuals(multi_model, multi_project, tmp_path):
    from posezoo.runtime.io import load_poses

    video = multi_project / "videos" / "mice1.mp4"
    out = _cli("analyze", multi_model, video, "--output-dir", tmp_path, "--csv", "-q")
    assert "done" in out.stdout
    (detections,) = tmp_path.glob("*_detections.h5")  # each frame's animals as assembled, port included
    df = pd.read_hdf(detections)
    assert df.columns.names == ["scorer", "individuals", "bodyparts", "coords"]
    assert {"mouse1", "mouse2", "mouse3", "single"} == set(df.columns.get_level_values("individuals"))
    assert len(load_poses(detections)) == 12 and load_poses(detections).unique_keypoints == ["port"]
    h5 = detections.with_name(detections.name.replace("_detections", ""))  # tracked; the port apart
    poses = load_poses(h5)
    assert len(poses) == 12 and poses.individuals == ["mouse1", "mouse2", "mouse3"] and not poses.unique_keypoints
    assert load_poses(h5.with_name(h5.stem + "_unique.h5")).keypoints == ["port"]
    _cli("label-video", h5, video, "--output", tmp_path / "labeled.mp4", "-q")
    _cli("plot", h5, "--output-dir", tmp_path / "plots")
    assert (tmp_path / "labeled.mp4").stat().st_size > 0 and any((tmp_path / "plots").iterdir())


def test_evaluate_predict_inspect_on_a_multi_animal_model(multi_model, multi_project, multi_run, tmp_path):
    out = _cli("evaluate", multi_model, multi_project, "--split", "all", "--json", tmp_path / "m.json")
    assert "mAP" in out.stdout and "port" in out.stdout
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert metrics["keypoints"][-1] == "port" and not metrics["single_animal"]
    assert "mAP" in _cli("evaluate", multi_run).stdout
    image = next((multi_project / "labeled-data" / "mice1").glob("*.png"))
    _cli("predict", multi_model, image, "--output", tmp_path / "p.csv")
    assert pd.read_csv(tmp_path / "p.csv", header=[0, 1, 2, 3], index_col=0).shape[1] == (3 * 6 + 1) * 3
    shown = _cli("inspect", multi_model).stdout
    assert "mouse1, mouse2, mouse3" in shown and "within the labelled distances of 15 of 15 pairs" in shown
    assert json.loads(_cli("inspect", multi_model, "--json").stdout)["multi"]["max_animals"] == 3


def test_runtime_imports_no_framework_while_assembling():
    code = ("import sys, numpy as np; from posezoo.runtime.assemble import AssemblyParams, assemble; "
            "import posezoo.runtime.model, posezoo.runtime.video; "
            "assemble(np.zeros((2, 2, 3)), np.zeros((1, 2, 2)), [(0, 1)], 2, AssemblyParams(2)); "
            "bad = {m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras')}; "
            "bad |= {m for m in sys.modules if m.startswith(('posezoo.training', 'posezoo.export'))}; "
            "assert not bad, sorted(bad)")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_overfit_model_assembles_every_animal_within_a_few_pixels(tmp_path):
    """A model trained on 9 synthetic frames (3 mice each, some touching) finds and assembles every
    labelled mouse of them within a few pixels, framework and exported model alike."""
    pytest.importorskip("torch")
    from posezoo.export import export
    from posezoo.runtime.model import PoseModel
    from posezoo.training.api import train
    from posezoo.training.project import load_project
    from posezoo.training.synthetic_multi import make_multi_project

    project = make_multi_project(tmp_path / "p", n_frames=9, video_frames=2, image_size=(256, 192), seed=5,
                                 fewer_prob=0.0)
    run = train(project, backend="torch", output=tmp_path / "run", progress=False, epochs=250, batch_size=8,
                eval_every=250, scale=1.0, **{"input.train_size": [192, 256], "split.test_indices": [0],
                                             "augment.enabled": False, "optimizer.lr": 2e-3})
    model = PoseModel.load(export(run, tmp_path / "m.onnx", progress=lambda _m: None).path)
    trained = list(range(1, 9))  # frame 0 was held out
    labels = load_project(project).labels[trained]
    pred = model.predict([load_project(project).load_image(i) for i in trained], color="rgb")
    metrics = evaluate_poses(labels, pred)
    assert metrics["mAR"] > 95 and metrics["rmse"] < 2.0, metrics  # measured: 98.3 and 0.61 px
    found = np.isfinite(pred.xy).all(-1).any(-1).sum()
    assert found == np.isfinite(labels.xy).all(-1).any(-1).sum()  # every mouse, none merged or split


DLC_VENV = Path(__import__("os").environ.get("POSEZOO_DLC_VENV", "/work/dlc-venv"))
_DLC_METRICS = """
import json, sys
import numpy as np
from deeplabcut.core.metrics.api import compute_metrics
out = []
for case in json.load(open(sys.argv[1])):
    gt = {k: np.array(v, float) for k, v in case["gt"].items()}
    pred = {k: np.array(v, float) for k, v in case["pred"].items()}
    r = compute_metrics(gt, pred, single_animal=False, pcutoff=case["pcutoff"], compute_detection_rmse=False)
    out.append({k: float(r[k]) for k in ("rmse", "rmse_pcutoff", "mAP", "mAR")})
print(json.dumps(out))
"""


def _crowded_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images of 2-4 animals (some keypoints unlabeled, some animals close together) and noisy
    predictions: some missing keypoints, duplicates of an animal, strays."""
    rng = np.random.default_rng(seed)
    n_img, n_anim, n_pred, k = 6, 4, 6, 5
    gt = np.full((n_img, n_anim, k, 2), np.nan)
    pred = np.full((n_img, n_pred, k, 3), np.nan)
    for i in range(n_img):
        centres = rng.uniform(40, 200, (n_anim, 2))
        centres[1] = centres[0] + rng.uniform(-6, 6, 2)  # two animals almost on top of each other
        for a in range(rng.integers(2, n_anim + 1)):
            gt[i, a] = centres[a] + rng.normal(0, 12, (k, 2))
            gt[i, a, rng.random(k) < 0.15] = np.nan
        labelled = np.flatnonzero(np.isfinite(gt[i]).any((-1, -2)))
        for p in range(n_pred):
            src = gt[i, labelled[rng.integers(len(labelled))]] if p < 5 else rng.uniform(0, 240, (k, 2))
            pred[i, p, :, :2] = src + rng.normal(0, rng.choice([0.5, 2.0, 6.0]), (k, 2))
            pred[i, p, :, 2] = rng.uniform(0.05, 1.0, k)
            pred[i, p, rng.random(k) < 0.1] = np.nan
    return gt, pred


@pytest.mark.slow
def test_metrics_equal_deeplabcuts_own_code(tmp_path):
    """Our numbers against DeepLabCut 3's compute_metrics, run in its own environment, on crowded
    random cases (the rule the two greedy matchers disagree on is exercised)."""
    if not (DLC_VENV / "bin" / "python").exists():
        pytest.skip(f"DeepLabCut's environment is absent at {DLC_VENV} (set POSEZOO_DLC_VENV)")
    cases, ours = [], []
    for seed in range(4):
        gt, pred = _crowded_case(seed)
        pcutoff = 0.4
        ours.append(evaluate_keypoints(gt, pred, pcutoff=pcutoff))

        def table(arr: np.ndarray, vis: bool) -> dict:
            out = {}
            for i, frame in enumerate(arr):
                rows = [a for a in frame if np.isfinite(a[..., :2]).any()]
                if vis:
                    rows = [np.concatenate([a, np.where(np.isfinite(a[:, :1]), 1.0, 0.0)], 1) for a in rows]
                out[f"img{i}"] = np.nan_to_num(np.array(rows), nan=-1.0).tolist() if not vis else \
                    np.where(np.isnan(np.array(rows)), np.nan, np.array(rows)).tolist()
            return out

        pred_dlc = np.where(np.isnan(pred[..., 2:]), -1.0, pred[..., 2:])  # DeepLabCut: score < 0 = missing
        pred_dlc = np.concatenate([pred[..., :2], pred_dlc], -1)
        cases.append({"gt": table(gt, True), "pred": {f"img{i}": f.tolist() for i, f in enumerate(pred_dlc)},
                      "pcutoff": pcutoff})
    (tmp_path / "cases.json").write_text(json.dumps(cases).replace("NaN", "NaN"))
    (tmp_path / "dlc.py").write_text(_DLC_METRICS)
    out = subprocess.run([str(DLC_VENV / "bin" / "python"), str(tmp_path / "dlc.py"), str(tmp_path / "cases.json")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    for mine, ref in zip(ours, theirs):
        for key in ("rmse", "rmse_pcutoff", "mAP", "mAR"):
            assert mine[key] == pytest.approx(ref[key], abs=1e-6), (key, mine[key], ref[key])


def test_zoo_pack_of_a_multi_animal_run(multi_run, multi_project, tmp_path):
    image = next((multi_project / "labeled-data" / "mice1").glob("*.png"))
    _cli("zoo", "pack", multi_run, "--output", tmp_path / "entry", "--sample", image, "--no-speed")
    entry = json.loads((tmp_path / "entry" / "entry.json").read_text())
    assert entry["keypoints"] == ["snout", "leftear", "rightear", "neck", "bodycenter", "tailbase"]
    assert (tmp_path / "entry" / entry["sample"]["file"]).stat().st_size > 0


@pytest.mark.slow
def test_tensorflow_trains_and_exports_a_multi_animal_model(multi_project, tmp_path):
    """The TF backend on the same project: its graph's candidates and affinities equal the
    numpy reference on its own forward pass, and the export's parity gate passes."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    import onnxruntime as ort

    from posezoo.export import export
    from posezoo.training.api import train
    from posezoo.training.predict import multi_outputs
    from posezoo.training.run import load_run
    from posezoo.training.tf import trainer

    run_dir = train(multi_project, backend="tf", output=tmp_path / "tf", progress=False, **MULTI_TRAIN)
    exported = export(run_dir, tmp_path / "tf.onnx", progress=lambda _m: None)
    assert exported.spec.provenance["parity"]["passed"]
    run = load_run(run_dir)
    tf_trainer = trainer(run)
    tf_trainer.restore("best")
    frames = np.random.default_rng(0).integers(0, 255, (2, 160, 192, 3), dtype=np.uint8)
    session = ort.InferenceSession(str(exported.path))
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"frames": frames})))
    ref = multi_outputs(tf_trainer.forward(frames), run.spec)
    for key in ("candidates", "affinities"):
        assert np.abs(got[key] - ref[key]).max() < 1e-3, key
