"""Multi-animal DeepLabCut 3 models (part-affinity fields) imported into posezoo's multi-animal graph.

DeepLabCut itself runs in benchmarks/deeplabcut_parity.py (--multi-archs); here the weight layout,
the in-graph predictor against DeepLabCut's PartAffinityFieldPredictor written out in numpy, the
assembly of drawn animals, and the imported file through `posezoo analyze`.
"""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy import ndimage

torch = pytest.importorskip("torch")

from posezoo.export.deeplabcut import DeepLabCutModelError, from_deeplabcut  # noqa: E402
from posezoo.export.deeplabcut.dlc3 import DLC3Net  # noqa: E402
from posezoo.export.deeplabcut.graph import Decode, Normalize, export_onnx  # noqa: E402
from posezoo.export.deeplabcut.paf import DeepLabCutPafGraph, PafDecode  # noqa: E402
from posezoo.runtime import PoseModel  # noqa: E402
from posezoo.runtime.assemble import poses_from_candidates  # noqa: E402
from posezoo.runtime.cli import main  # noqa: E402

from test_deeplabcut_import import (INFERENCE_3_0_2, QUIET, RESNET50, frames, parity_rows,  # noqa: E402
                                    random_state, write_train_folder)

PARTS = ["snout", "neck", "tailbase"]
GRAPH = [[0, 1], [0, 2], [1, 2]]
DLCRNET = {"type": "DLCRNet", "model_name": "resnet50", "output_stride": 16, "pretrained": False}


def paf_config(backbone: dict, channels: int, bodyparts: list[str] = PARTS, individuals: int = 2,
               graph: list[list[int]] = GRAPH, keep: list[int] | None = None, unique: list[str] = (),
               **predictor) -> dict:
    """A pytorch_config.yaml as DeepLabCut 3.0.2 writes it for a multi-animal bottom-up shuffle
    (``unique``: unique bodyparts, with the head DeepLabCut adds for them)."""
    k, e = len(bodyparts), len(graph)
    head = {"type": "DLCRNetHead",
            "predictor": {"type": "PartAffinityFieldPredictor", "num_animals": individuals, "num_multibodyparts": k,
                          "num_uniquebodyparts": 0, "nms_radius": 5, "sigma": 1.0, "locref_stdev": 7.2801,
                          "min_affinity": 0.05, "graph": graph, "edges_to_keep": keep if keep is not None
                          else list(range(e)), "apply_sigmoid": True, "clip_scores": False, **predictor},
            "heatmap_config": {"channels": [channels, k], "kernel_size": [3], "strides": [2]},
            "locref_config": {"channels": [channels, 2 * k], "kernel_size": [3], "strides": [2]},
            "paf_config": {"channels": [channels, 2 * e], "kernel_size": [3], "strides": [2]},
            "num_stages": 5}
    heads = {"bodypart": head}
    if unique:
        u = len(unique)
        heads["unique_bodypart"] = {
            "type": "HeatmapHead", "weight_init": "normal",
            "predictor": {"type": "HeatmapPredictor", "apply_sigmoid": False, "clip_scores": True,
                          "location_refinement": True, "locref_std": 7.2801},
            "heatmap_config": {"channels": [channels, u], "kernel_size": [3], "strides": [2]},
            "locref_config": {"channels": [channels, 2 * u], "kernel_size": [3], "strides": [2]}}
    return {"method": "bu", "net_type": "resnet_50" if backbone["type"] == "ResNet" else "dlcrnet_stride16_ms5",
            "model": {"backbone": backbone, "backbone_output_channels": channels, "heads": heads},
            "data": {"colormode": "RGB", "inference": dict(INFERENCE_3_0_2)},
            "metadata": {"project_path": "/nowhere", "bodyparts": bodyparts, "unique_bodyparts": list(unique),
                         "individuals": [f"mouse{i + 1}" for i in range(individuals)], "with_identity": False}}


# -- the DeepLabCut 3 weight layout -------------------------------------------------------------

@pytest.mark.parametrize("backbone,channels,count", [(RESNET50, 2048, 193), (DLCRNET, 2304, 387)])
def test_state_dict_keys_are_deeplabcuts(backbone, channels, count):
    # Counts and names as DeepLabCut 3.0.2 saves them in a snapshot (measured, 6 bodyparts, 15 edges).
    cfg = paf_config(backbone, channels, ["a", "b", "c", "d", "e", "f"],
                     graph=[[i, j] for i in range(6) for j in range(i + 1, 6)])
    net = DLC3Net(cfg["model"])
    keys = net.state_dict()
    assert len(keys) == count and net.stride == 4.0
    shapes = {k: tuple(v.shape) for k, v in keys.items()}
    refined = 128 + 6 + 30  # features + keypoints + fields, the input of the refinement stages
    assert shapes["heads.bodypart.convt1.weight"] == (channels, 6, 3, 3)
    assert shapes["heads.bodypart.convt4.weight"] == (channels, 128, 3, 3)
    assert shapes["heads.bodypart.hm_ref_layers.4.weight"] == (6, refined, 3, 3)
    assert shapes["heads.bodypart.paf_ref_layers.0.weight"] == (30, refined, 3, 3)
    assert shapes["heads.bodypart.heatmap_head.deconv_layers.0.weight"] == (refined, 6, 3, 3)
    assert shapes["heads.bodypart.paf_head.deconv_layers.0.weight"] == (refined, 30, 3, 3)
    assert shapes["heads.bodypart.locref_head.deconv_layers.0.weight"] == (12, 12, 3, 3)
    if backbone["type"] == "DLCRNet":
        assert shapes["backbone.conv_block1.0.weight"] == (512, 512, 3, 3)
        assert shapes["backbone.conv_block5.1.running_var"] == (128,)
        assert "backbone.model.layer1.0.bn1.running_mean" in keys  # plain BatchNorm ResNet-50


def test_maps_are_four_times_finer_than_the_input():
    net = DLC3Net(paf_config(DLCRNET, 2304)["model"]).eval()
    with torch.no_grad():
        heat, locref, paf = net(torch.zeros(1, 3, 96, 128))
    # stride 16 features (6 x 8), 2x by the stages' transposed convs, then k3/s2/p0 heads: 2H+1
    assert heat.shape == (1, 3, 25, 33) and locref.shape == (1, 6, 25, 33) and paf.shape == (1, 6, 25, 33)


# -- the predictor in the graph against DeepLabCut's, written out in numpy ------------------------

def deeplabcut_predictor(logits, locref, paf, graph, keep, stride, radius=5, sigma=1.0, std=7.2801):
    """DeepLabCut 3's PartAffinityFieldPredictor up to assembly for one frame: peaks per keypoint
    as {(row, col): (x, y, score)} and per kept edge {(peak_s, peak_t): affinity}."""
    heat = 1 / (1 + np.exp(-logits.astype(np.float64)))
    size = 2 * radius + 1
    k = np.arange(-size // 2 + 1, size // 2 + 1, dtype=np.float64) ** 2
    g = np.exp(-k / (2 * sigma ** 2))
    g /= g.sum()
    kernel = np.outer(g, g)
    peaks = []
    for j in range(len(heat)):
        smooth = ndimage.correlate(heat[j], kernel, mode="constant", cval=0.0)
        pooled = ndimage.maximum_filter(smooth, size=radius, mode="constant", cval=-np.inf)
        found = {}
        for r, c in zip(*np.nonzero((smooth == pooled) & (smooth >= 0.01))):
            found[(r, c)] = (c * stride + stride // 2 + locref[2 * j, r, c] * std,
                             r * stride + stride // 2 + locref[2 * j + 1, r, c] * std, smooth[r, c])
        peaks.append(found)
    h, w = heat.shape[1:]
    fields = paf.reshape(-1, 2, h, w)
    costs = []
    for e in keep:
        s, t = graph[e]
        m = {}
        for ps in peaks[s]:
            for pt in peaks[t]:
                vs, vt = np.array(ps, np.float32), np.array(pt, np.float32)
                length = np.linalg.norm(vt - vs) + np.spacing(np.float32(1))
                xy = (vs + np.linspace(0, 1, 10, dtype=np.float32)[:, None] * (vt - vs)).astype(np.int32)
                xy = np.clip(xy, 0, [h - 1, w - 1])
                y = fields[e][:, xy[:, 0], xy[:, 1]].T  # (10, 2): x and y components
                integral = np.trapezoid(y, xy[:, ::-1].astype(np.float32), axis=0)
                m[(ps, pt)] = round(float(np.linalg.norm(integral) / length), 3)
        costs.append(m)
    return peaks, costs


class Maps(torch.nn.Module):
    """A 'network' that returns fixed maps whatever the frame: the predictor alone under test."""

    def __init__(self, *maps: np.ndarray) -> None:
        super().__init__()
        for i, m in enumerate(maps):
            self.register_buffer(f"m{i}", torch.from_numpy(m.astype(np.float32))[None])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        zero = x[:, :1, :1, :1] * 0
        return tuple(m + zero for _, m in self.named_buffers())


def drawn_animals(h: int = 40, w: int = 48):
    """Two 3-keypoint animals side by side (rows 12 and 20) as maps: logit bumps at their keypoint
    cells, unit fields along their limbs (two cells wide), random locref; plus a spurious bump."""
    rng = np.random.default_rng(0)
    animals = [[(12, 8), (12, 20), (12, 33)], [(20, 9), (21, 21), (20, 34)]]
    rr, cc = np.mgrid[0:h, 0:w]
    logits = np.full((3, h, w), -6.0)
    for animal, top in zip(animals, (6.0, 4.5)):  # unequal, so that the best-first order is defined
        for j, (r, c) in enumerate(animal):
            logits[j] = np.maximum(logits[j], top - ((rr - r) ** 2 + (cc - c) ** 2) / 2.0)
    logits[1] = np.maximum(logits[1], 1.0 - ((rr - 32) ** 2 + (cc - 40) ** 2) / 2.0)  # a weaker, lone neck
    paf = np.zeros((3, 2, h, w))
    for e, (s, t) in enumerate(GRAPH):
        for animal in animals:
            (r0, c0), (r1, c1) = animal[s], animal[t]
            v = np.array([c1 - c0, r1 - r0], float)
            length = np.linalg.norm(v)
            u = v / length
            along = (cc - c0) * u[0] + (rr - r0) * u[1]
            across = np.abs((cc - c0) * u[1] - (rr - r0) * u[0])
            on = (along >= 0) & (along <= length) & (across <= 2)
            paf[e, 0][on], paf[e, 1][on] = u[0], u[1]
    locref = rng.uniform(-0.3, 0.3, (6, h, w))
    return animals, logits, locref, paf.reshape(6, h, w)


def paf_graph(maps: tuple[np.ndarray, ...], keep: list[int], candidates: int = 3,
              unique: Decode | None = None) -> DeepLabCutPafGraph:
    decode = PafDecode(stride=4.0, locref_std=7.2801, sigmoid=True, clip=False, nms_radius=5, sigma=1.0,
                       edges=tuple(tuple(GRAPH[e]) for e in keep), channels=tuple(keep), candidates=candidates,
                       unique=unique)
    return DeepLabCutPafGraph(Maps(*maps), Normalize((0.0, 0.0, 0.0)), decode).eval()


@pytest.mark.parametrize("keep", [[0, 1, 2], [2, 0]])
def test_peaks_and_affinities_equal_deeplabcuts_predictor(keep, tmp_path):
    import onnxruntime as ort

    animals, logits, locref, paf = drawn_animals()
    graph = paf_graph((logits, locref, paf), keep)
    with torch.no_grad():
        _, cand, aff = (t.numpy()[0] for t in graph(torch.zeros(1, 160, 192, 3, dtype=torch.uint8)))
    peaks, costs = deeplabcut_predictor(logits, locref, paf, GRAPH, keep, 4.0)
    assert [len(p) for p in peaks] == [2, 3, 2]  # the lone neck is a peak too
    cells = []
    for j in range(3):  # the graph's candidates are DeepLabCut's peaks, best first (zero-score padding)
        best = sorted(peaks[j].items(), key=lambda kv: -kv[1][2])[:3]
        assert np.allclose(cand[j, :len(best)], [v for _, v in best], atol=1e-4)
        assert (cand[j, len(best):, 2] == 0).all()
        cells.append([cell for cell, _ in best])
    for i, e in enumerate(keep):
        s, t = GRAPH[e]
        for a, ps in enumerate(cells[s]):
            for b, pt in enumerate(cells[t]):
                assert aff[i, a, b] == pytest.approx(costs[i][(ps, pt)], abs=1e-6)
    assert aff.max() > 0.9 and np.sort(aff[0].ravel())[-3] < 0.5  # limbs near 1, cross pairs low
    export_onnx(graph, "frames", tmp_path / "g.onnx")
    session = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    onnx_cand, onnx_aff = session.run(["candidates", "affinities"], {"frames": np.zeros((1, 160, 192, 3), np.uint8)})
    real = cand[..., 2] > 0  # the order of the zero-score padding is onnxruntime's own
    assert np.allclose(onnx_cand[0][real], cand[real], atol=1e-4) and (onnx_cand[0][~real][:, 2] == 0).all()
    src, dst = (np.array([GRAPH[e][i] for e in keep]) for i in (0, 1))
    pairs = real[src][:, :, None] & real[dst][:, None, :]
    assert np.allclose(onnx_aff[0][pairs], aff[pairs], atol=1e-6)


def test_unique_bodyparts_are_their_heads_argmax():
    animals, logits, locref, paf = drawn_animals()
    u_heat = np.full((1, 20, 24), 0.1)
    u_heat[0, 7, 19] = 0.8  # DeepLabCut's unique head: raw scores, clipped, at its own stride (8)
    u_locref = np.zeros((2, 20, 24))
    u_locref[:, 7, 19] = (0.5, -0.25)
    graph = paf_graph((logits, locref, paf, u_heat, u_locref), [0, 1, 2], candidates=2,
                      unique=Decode(stride=8.0, locref_std=7.2801, sigmoid=False, clip=True))
    with torch.no_grad():
        kp, cand, _ = (t.numpy()[0] for t in graph(torch.zeros(1, 160, 192, 3, dtype=torch.uint8)))
    assert kp.shape == (3, 3) and cand.shape == (4, 2, 3)
    assert np.allclose(cand[3, 0], (19 * 8 + 4 + 0.5 * 7.2801, 7 * 8 + 4 - 0.25 * 7.2801, 0.8), atol=1e-5)
    assert (cand[3, 1] == 0).all()


def test_drawn_animals_are_assembled_apart():
    from posezoo.runtime.spec import AssemblySpec, MultiAnimalSpec, OutputSpec, Spec

    animals, logits, locref, paf = drawn_animals()
    locref[:] = 0
    graph = paf_graph((logits, locref, paf), [0, 1, 2])
    with torch.no_grad():
        _, cand, aff = (t.numpy() for t in graph(torch.zeros(1, 160, 192, 3, dtype=torch.uint8)))
    spec = Spec("t", PARTS, outputs={"keypoints": OutputSpec("keypoints", []), "candidates": OutputSpec("c", []),
                                     "affinities": OutputSpec("a", [])},
                multi=MultiAnimalSpec(["m1", "m2"], [[PARTS[s], PARTS[t]] for s, t in GRAPH], 2, 3, paf_samples=10),
                assembly=AssemblySpec()).validate()
    found = poses_from_candidates(spec, cand, aff).coords[0]
    expected = np.array([[(c * 4 + 2, r * 4 + 2) for r, c in animal] for animal in animals], np.float32)
    order = np.argsort(found[:, 0, 1])  # by the snout's row
    assert np.allclose(found[order, :, :2], expected, atol=1e-3)  # the lone neck joined neither


# -- import end to end ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    import cv2

    root = tmp_path_factory.mktemp("dlc3-multi")
    (root / "config.yaml").write_text(yaml.safe_dump({
        "Task": "mice", "scorer": "me", "pcutoff": 0.4, "multianimalproject": True, "individuals": ["mouse1", "mouse2"],
        "multianimalbodyparts": PARTS, "uniquebodyparts": [], "bodyparts": "MULTI!", "skeleton": [["snout", "neck"]]}))
    (root / "labeled-data" / "v1").mkdir(parents=True)
    for i, frame in enumerate(frames(3, 96, 128, seed=5)):
        cv2.imwrite(str(root / "labeled-data" / "v1" / f"img{i:03d}.png"), frame)
    cfg = paf_config(RESNET50, 2048, keep=[0, 2], unique=["port"])
    state = random_state(cfg, seed=2)
    train = write_train_folder(root, cfg, {"snapshot-004.pt": {"model": state, "metadata": {"epoch": 4}}})
    return root, from_deeplabcut(train, root / "m.onnx", **QUIET)


def test_import_writes_a_multi_animal_graph(imported):
    root, exported = imported
    spec = exported.spec
    assert spec.multi.individuals == ["mouse1", "mouse2"] and spec.multi.max_animals == 2
    assert spec.multi.graph == [["snout", "neck"], ["neck", "tailbase"]]  # edges_to_keep
    assert spec.decode.stride == 4 and spec.decode.offset == 2.0 and spec.pcutoff == 0.4
    assert spec.assembly.min_affinity == 0.05 and spec.skeleton == [["snout", "neck"]]
    assert spec.multi.unique_keypoints == ["port"] and spec.outputs["candidates"].shape == ["batch", 4, 2, 3]
    parity = spec.provenance["parity"]
    assert parity["passed"] and parity["max_px_diff"] < 1e-2 and parity["keypoints_found_on_one_side_only"] == 0
    model = PoseModel.load(exported.path, device="cpu")
    poses = model.predict(frames(2, 96, 128, seed=9), color="rgb")
    assert poses.coords.shape == (2, 2, 3, 3) and poses.individuals == ["mouse1", "mouse2"]
    assert poses.unique_keypoints == ["port"] and poses.unique.shape == (2, 1, 3)


def test_posezoo_analyze_tracks_an_imported_model(imported, tmp_path):
    import cv2
    import pandas as pd

    root, exported = imported
    video = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (128, 96))
    for frame in frames(12, 96, 128, seed=11):
        writer.write(frame)
    writer.release()
    assert main(["analyze", str(exported.path), str(video), "--output-dir", str(tmp_path / "out"), "-q"]) == 0
    stem = tmp_path / "out" / f"vDLC_posezoo_{exported.spec.name}"
    table = pd.read_hdf(f"{stem}.h5")  # tracked animals; the unique bodypart in a table of its own
    assert len(table) == 12 and list(table.columns.names) == ["scorer", "individuals", "bodyparts", "coords"]
    assert sorted(set(table.columns.get_level_values("individuals"))) == ["mouse1", "mouse2"]
    assert set(pd.read_hdf(f"{stem}_unique.h5").columns.get_level_values("bodyparts")) == {"port"}


@pytest.mark.parametrize("change,found", [
    ({"model_backbone": {"type": "DLCRNet", "model_name": "resnet50", "output_stride": 32}}, "DLCRNet at output stride 32"),
    ({"nms_radius": 4}, "nms_radius 4"),
    ({"fields": 4}, "4 part-affinity channels for a graph of 3 edges"),
    ({"unique": ["port"]}, r"heads \['bodypart'\] .*unique_bodypart"),
    ({"identity": True}, r"heads \['bodypart', 'identity'\]"),
])
def test_unsupported_multi_animal_models_are_named(tmp_path, change, found):
    cfg = paf_config(RESNET50, 2048)
    head = cfg["model"]["heads"]["bodypart"]
    if "model_backbone" in change:
        cfg["model"]["backbone"] = change["model_backbone"]
    elif "nms_radius" in change:
        head["predictor"]["nms_radius"] = change["nms_radius"]
    elif "fields" in change:
        head["paf_config"]["channels"][-1] = change["fields"]
    elif "unique" in change:
        cfg["metadata"]["unique_bodyparts"] = change["unique"]
    else:
        cfg["model"]["heads"]["identity"] = {"type": "HeatmapHead", "predictor": {"type": "IdentityPredictor"}}
    train = write_train_folder(tmp_path, cfg, {"snapshot-001.pt": {"model": {}}})
    with pytest.raises(DeepLabCutModelError, match=f"snapshot-001.pt: unsupported DeepLabCut model .*{found}.*Supported: "):
        from_deeplabcut(train, tmp_path / "x.onnx", **QUIET)


@pytest.mark.slow
def test_dlcrnet_matches_deeplabcut_itself(tmp_path):
    """DeepLabCut 3.0.2 trains dlcrnet_stride16_ms5 on a synthetic 3-mouse project and assembles the
    animals of every labeled frame; posezoo's import must assemble the same ones
    (benchmarks/deeplabcut_parity.py --multi-archs)."""
    plain, crowded = parity_rows(tmp_path, "--archs", "none", "--tf-archs", "none",
                                 "--multi-archs", "dlcrnet_stride16_ms5")
    assert "error" not in plain and "error" not in crowded, (plain, crowded)
    assert plain["passed"] and plain["dlc_keypoints"] > 300 and plain["frames_identical"] == plain["frames"], plain
    # with raised logits, DeepLabCut's tie order (a set of peak numbers) can differ in a frame
    assert crowded["frames_identical"] >= 0.9 * crowded["frames"] and crowded["dlc_keypoints"] > 600, crowded
