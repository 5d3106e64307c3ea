"""Importing trained DeepLabCut models (issue 17).

Fast tests write small DeepLabCut models themselves with DeepLabCut's on-disk layout: a DeepLabCut 3
train folder (pytorch_config.yaml + snapshot-*.pt whose state_dict keys are the ones DeepLabCut
3.0.2 writes), a deeplabcut.export_model file, and a DeepLabCut 2 TensorFlow checkpoint with
tf_slim's variable names (skipped without TensorFlow). The slow test runs DeepLabCut itself.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from posezoo.export.deeplabcut import DeepLabCutModelError, from_deeplabcut, is_deeplabcut_model, locate  # noqa: E402
from posezoo.export.deeplabcut.dlc3 import DLC3Net  # noqa: E402
from posezoo.export.deeplabcut.graph import DeepLabCutGraph  # noqa: E402
from posezoo.runtime import PoseModel  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BODYPARTS = ["snout", "leftear", "tailbase"]
QUIET = {"progress": lambda _msg: None}


# data.inference as DeepLabCut 3.0.2 writes it: every transform key, unused ones null or false
INFERENCE_3_0_2 = {"resize": None, "longest_max_size": None, "hflip": None, "affine": None,
                   "random_bbox_transform": None, "crop_sampling": None, "hist_eq": False, "motion_blur": False,
                   "covering": None, "elastic_transform": None, "grayscale": None, "gaussian_noise": None,
                   "auto_padding": None, "normalize_images": True, "scale_to_unit_range": False,
                   "top_down_crop": None, "collate": None}


def dlc3_config(backbone: dict, channels: int, bodyparts: list[str] = BODYPARTS, **extra) -> dict:
    """A pytorch_config.yaml as DeepLabCut 3.0.2 writes it for a single-animal bottom-up shuffle."""
    k = len(bodyparts)
    head = {"type": "HeatmapHead", "weight_init": "normal",
            "predictor": {"type": "HeatmapPredictor", "apply_sigmoid": False, "clip_scores": True,
                          "location_refinement": True, "locref_std": 7.2801},
            "target_generator": {"type": "HeatmapGaussianGenerator", "num_heatmaps": k, "pos_dist_thresh": 17},
            "criterion": {"heatmap": {"type": "WeightedMSECriterion", "weight": 1.0}},
            "heatmap_config": {"channels": [channels, k], "kernel_size": [3], "strides": [2]},
            "locref_config": {"channels": [channels, 2 * k], "kernel_size": [3], "strides": [2]}}
    cfg = {"method": "bu", "net_type": extra.pop("net_type", "resnet_50"),
           "model": {"backbone": backbone, "backbone_output_channels": channels, "heads": {"bodypart": head}},
           "data": {"colormode": "RGB", "inference": dict(INFERENCE_3_0_2)},
           "metadata": {"project_path": "/nowhere", "bodyparts": bodyparts, "unique_bodyparts": [],
                        "individuals": ["single"], "with_identity": None},
           "train_settings": {"batch_size": 8, "epochs": 200}}
    cfg.update(extra)
    return cfg


RESNET50 = {"type": "ResNet", "model_name": "resnet50_gn", "output_stride": 16, "pretrained": False}
HRNET18 = {"type": "HRNet", "model_name": "hrnet_w18", "interpolate_branches": False,
           "increased_channel_count": False, "pretrained": False}


def random_state(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights with DeepLabCut's key layout, scaled so the maps stay finite and varied."""
    torch.manual_seed(seed)
    state = DLC3Net(cfg["model"]).state_dict()
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            out[key] = value
        elif key.endswith("running_var"):
            out[key] = torch.rand_like(value) + 0.5
        elif key.endswith(("running_mean", "bias")):
            out[key] = torch.randn_like(value) * 0.1
        elif value.ndim == 4:
            fan_in = value.shape[1] * value.shape[2] * value.shape[3]
            out[key] = torch.randn_like(value) * (0.5 / fan_in) ** 0.5
        else:
            out[key] = torch.rand_like(value) + 0.5
    return out


def write_train_folder(root: Path, cfg: dict, snapshots: dict[str, dict]) -> Path:
    """root/dlc-models-pytorch/iteration-0/testOct1-trainset80shuffle1/train with the given snapshots."""
    train = root / "dlc-models-pytorch" / "iteration-0" / "testOct1-trainset80shuffle1" / "train"
    train.mkdir(parents=True)
    (train / "pytorch_config.yaml").write_text(yaml.safe_dump(cfg))
    for name, content in snapshots.items():
        torch.save(content, train / name)
    return train


def frames(n: int = 2, h: int = 96, w: int = 128, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def coords(result) -> np.ndarray:
    """(N, K, 3) from PoseModel.predict today (an array) and after the Poses refactor (.coords)."""
    c = np.asarray(getattr(result, "coords", result))
    return c[:, 0] if c.ndim == 4 else c


def dlc3_decode(heat: np.ndarray, locref: np.ndarray, stride: float, locref_std: float = 7.2801) -> np.ndarray:
    """DeepLabCut 3's HeatmapPredictor (no sigmoid, clipped scores) written out in numpy."""
    n, k, h, w = heat.shape
    out = np.zeros((n, k, 3), np.float32)
    for b in range(n):
        for j in range(k):
            r, c = np.unravel_index(np.argmax(heat[b, j]), (h, w))
            out[b, j] = (c * stride + stride / 2 + locref[b, 2 * j, r, c] * locref_std,
                         r * stride + stride / 2 + locref[b, 2 * j + 1, r, c] * locref_std,
                         np.clip(heat[b, j, r, c], 0, 1))
    return out


# -- the DeepLabCut 3 weight layout -------------------------------------------------------------

@pytest.mark.parametrize("backbone,channels,count,stride", [(RESNET50, 2048, 163, 8.0), (HRNET18, 18, 1834, 2.0)])
def test_state_dict_keys_are_deeplabcuts(backbone, channels, count, stride):
    # Counts and names as DeepLabCut 3.0.2's PoseModel.build writes them (measured, 4 bodyparts).
    net = DLC3Net(dlc3_config(backbone, channels, ["a", "b", "c", "d"])["model"])
    keys = net.state_dict()
    assert len(keys) == count and net.stride == stride
    assert tuple(keys["heads.bodypart.heatmap_head.deconv_layers.0.weight"].shape) == (channels, 4, 3, 3)
    assert tuple(keys["heads.bodypart.locref_head.deconv_layers.0.weight"].shape) == (channels, 8, 3, 3)
    expected = ["backbone.model.layer4.2.bn3.weight", "backbone.model.layer1.0.downsample.0.weight"] if channels == 2048 \
        else ["backbone.model.transition1.1.0.0.weight", "backbone.model.stage4.2.fuse_layers.3.0.0.0.weight",
              "backbone.model.stage2.0.branches.1.3.bn2.running_var"]
    assert all(k in keys for k in expected)


def test_resnet_dilates_past_output_stride():
    net = DLC3Net(dlc3_config(RESNET50, 2048)["model"]).eval()
    with torch.no_grad():
        heat, locref = net(torch.zeros(1, 3, 64, 96))
    # ResNet at output stride 16 (4 x 6 features), transposed conv k3/s2/p0: 2H+1 maps
    assert heat.shape == (1, 3, 9, 13) and locref.shape == (1, 6, 9, 13)
    conv = net.backbone.model.layer4[1].conv2
    assert conv.dilation == (2, 2) and conv.stride == (1, 1)


# -- import end to end ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dlc3_import(tmp_path_factory):
    """A DeepLabCut 3 project as DeepLabCut lays it out (config.yaml, labeled-data, a shuffle with two
    snapshots), imported once: the export is the slow part."""
    import cv2

    root = tmp_path_factory.mktemp("dlc3")
    (root / "config.yaml").write_text(yaml.safe_dump({
        "Task": "mice", "scorer": "me", "bodyparts": BODYPARTS, "pcutoff": 0.35,
        "skeleton": [["snout", "leftear"], ["leftear", "nose"]]}))
    (root / "labeled-data" / "v1").mkdir(parents=True)
    for i, frame in enumerate(frames(2, 64, 80, seed=3)):
        cv2.imwrite(str(root / "labeled-data" / "v1" / f"img{i:03d}.png"), frame)
    cfg = dlc3_config(RESNET50, 2048)
    state = random_state(cfg)
    meta = {"epoch": np.int64(5), "metrics": {"test.rmse": np.float64(3.25), "test.mAP": np.float64(71.5)}}
    train = write_train_folder(root, cfg, {"snapshot-005.pt": {"model": state, "metadata": meta},
                                           "snapshot-best-003.pt": {"model": state, "metadata": {"epoch": 3}}})
    exported = from_deeplabcut(train.parent, root / "m.onnx", snapshot="last", int8=True, force=True, **QUIET)
    return train, cfg, state, exported


def test_dlc3_import_matches_deeplabcut_decode(dlc3_import):
    train, cfg, state, exported = dlc3_import
    assert is_deeplabcut_model(train.parent) and is_deeplabcut_model(train / "snapshot-005.pt")
    spec = exported.spec
    assert spec.keypoints == BODYPARTS and spec.input.color == "RGB" and spec.input.size_multiple == 1
    assert (spec.decode.stride, spec.decode.offset, spec.decode.locref_scale) == (8, 4.0, 7.2801)
    # the project's config.yaml above the model: pcutoff, skeleton (pairs naming unknown parts dropped), frames
    assert spec.pcutoff == 0.35 and spec.skeleton == [["snout", "leftear"]] and spec.name == "mice-dlc-resnet_50"
    prov = spec.provenance
    assert prov["snapshot"] == "snapshot-005" and prov["source"]["epoch"] == 5
    assert prov["metrics"]["deeplabcut_snapshot"] == {"test.rmse": 3.25, "test.mAP": 71.5}
    assert prov["dataset"]["task"] == "mice" and prov["backend"] == "deeplabcut-pytorch"
    assert prov["parity"]["passed"] and prov["parity"]["frames"] == f"labeled frames of {train.parents[3].name}"
    int8 = exported.variants["int8"]  # calibrated on the same frames; its change against fp32 is recorded
    assert int8.name == "m.int8.onnx"
    from posezoo.runtime.spec import read_spec

    figures = read_spec(int8).provenance["variant_accuracy"]
    assert read_spec(int8).provenance["precision"] == "int8" and figures["frames"] == 2

    # DeepLabCut's own normalisation and HeatmapPredictor formula on the raw maps of the same weights
    net = DLC3Net(cfg["model"]).eval()
    net.load_state_dict(state)
    test_frames = frames(2, 96, 128)
    batch = torch.from_numpy(np.stack(test_frames)).permute(0, 3, 1, 2).float() / 255
    x = (batch - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        heat, locref = net(x)
    expected = dlc3_decode(heat.numpy(), locref.numpy(), 8.0)
    model = PoseModel.load(exported.path, device="cpu")
    got = coords(model.predict(test_frames, color="rgb"))
    np.testing.assert_allclose(got, expected, atol=2e-3)
    # BGR frames fed as BGR give the same answer: the colour order is in the spec
    bgr = [f[:, :, ::-1].copy() for f in test_frames]
    np.testing.assert_allclose(coords(model.predict(bgr, color="bgr")), got)


def test_scores_are_clipped_and_locref_interleaved():
    # Zero deconv weights: every map is its bias, so the first cell wins and the decode is exact.
    from posezoo.export.deeplabcut.dlc3 import build

    cfg = dlc3_config(RESNET50, 2048)
    state = random_state(cfg)
    state["heads.bodypart.heatmap_head.deconv_layers.0.weight"].zero_()
    state["heads.bodypart.locref_head.deconv_layers.0.weight"].zero_()
    state["heads.bodypart.heatmap_head.deconv_layers.0.bias"] = torch.tensor([1.7, -0.3, 0.42])
    state["heads.bodypart.locref_head.deconv_layers.0.bias"] = torch.tensor([1.0, 0.0, 0.0, 2.0, -0.5, 0.25])
    imported = build(cfg, state, Path("snapshot-001.pt"))
    with torch.no_grad():
        got = DeepLabCutGraph(imported.net, imported.normalize, imported.decode)(
            torch.from_numpy(frames(1, 32, 32)[0])[None]).numpy()[0]
    s = 7.2801
    np.testing.assert_allclose(got, [[4 + s, 4, 1.0], [4, 4 + 2 * s, 0.0], [4 - 0.5 * s, 4 + 0.25 * s, 0.42]],
                               atol=1e-5)


def test_snapshot_choice_and_export_model_file(dlc3_import, tmp_path):
    from posezoo.export.deeplabcut.convert import _import

    train, cfg, state, _ = dlc3_import
    assert locate(train).snapshot == "snapshot-best-003"  # best when there is one
    assert locate(train, "last").snapshot == "snapshot-005"
    assert locate(train, 3).snapshot == "snapshot-best-003" and locate(train, -1).step == 5
    with pytest.raises(DeepLabCutModelError, match=r"no snapshot at epoch 4; there are \[3, 5\]"):
        locate(train, 4)
    exported_file = tmp_path / "exported-models-pytorch" / "DLC_test_resnet_50_iteration-0_shuffle-1" / "m.pt"
    exported_file.parent.mkdir(parents=True)
    torch.save({"config": cfg, "pose": state}, exported_file)
    assert is_deeplabcut_model(exported_file)
    located = locate(exported_file)
    assert (located.engine, located.layout) == ("pytorch", "exported-file")
    imported, extra = _import(located)
    assert imported.keypoints == BODYPARTS and imported.net_type == "resnet_50" and len(extra["weights_sha256"]) == 64


def test_hrnet_auto_padding_becomes_the_size_multiple():
    from posezoo.export.deeplabcut.dlc3 import build

    inference = INFERENCE_3_0_2 | {"auto_padding": {"pad_width_divisor": 32, "pad_height_divisor": 32}}
    cfg = dlc3_config(HRNET18, 18, net_type="hrnet_w18", data={"colormode": "BGR", "inference": inference})
    imported = build(cfg, random_state(cfg), Path("snapshot-002.pt"))
    assert imported.size_multiple == 32 and imported.color == "BGR" and imported.decode.stride == 2.0
    assert "reflected" in imported.notes[0]


# -- refusals ---------------------------------------------------------------------------------

def test_not_a_deeplabcut_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert not is_deeplabcut_model(tmp_path) and not is_deeplabcut_model(tmp_path / "notes.txt")
    run = tmp_path / "runs" / "r1"  # a posezoo run directory is left to posezoo's own exporter
    (run / "snapshots").mkdir(parents=True)
    for name in ("config.yaml", "metrics.json", "snapshots/last.pt", "snapshots/best.pt"):
        (run / name).write_text("{}")
    assert not is_deeplabcut_model(run)
    with pytest.raises(DeepLabCutModelError, match=r"not a DeepLabCut model \(found a folder holding notes.txt, runs\)"):
        from_deeplabcut(tmp_path, tmp_path / "x.onnx", **QUIET)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(DeepLabCutModelError, match="other.pt: not a DeepLabCut model .*deeplabcut.export_model"):
        from_deeplabcut(tmp_path / "other.pt", tmp_path / "x.onnx", **QUIET)
    assert not (tmp_path / "x.onnx").exists()


def test_snapshot_without_its_config(tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    torch.save({"model": {}}, train / "snapshot-010.pt")
    assert is_deeplabcut_model(train)  # it is DeepLabCut's: the importer explains what is missing
    with pytest.raises(DeepLabCutModelError, match=r"snapshot-010.pt'\] but no pytorch_config.yaml .*config is missing"):
        from_deeplabcut(train, tmp_path / "x.onnx", **QUIET)
    (train / "snapshot-10.index").write_bytes(b"")
    (train / "snapshot-010.pt").unlink()
    with pytest.raises(DeepLabCutModelError, match="no pose_cfg.yaml beside them"):
        from_deeplabcut(train, tmp_path / "x.onnx", **QUIET)


@pytest.mark.parametrize("change,found", [
    ({"method": "td"}, "method 'td' .*detector"),
    ({"net_type": "dlcrnet_stride16_ms5"}, None),
    ({"model_backbone": {"type": "CSPNeXt", "model_name": "cspnext_m"}}, "backbone CSPNeXt/cspnext_m"),
    ({"individuals": ["a", "b"]}, "2 individuals .*multi-animal"),
])
def test_unsupported_architectures_are_named(tmp_path, change, found):
    cfg = dlc3_config(RESNET50, 2048)
    state = random_state(cfg)
    if "model_backbone" in change:
        cfg["model"]["backbone"] = change["model_backbone"]
    elif "individuals" in change:
        cfg["metadata"]["individuals"] = change["individuals"]
    elif "net_type" in change:  # a multi-animal PAF head
        cfg["model"]["heads"]["bodypart"]["predictor"]["type"] = "PartAffinityFieldPredictor"
        cfg["net_type"] = change["net_type"]
        found = "net_type dlcrnet_stride16_ms5.*PartAffinityFieldPredictor"
    else:
        cfg.update(change)
    train = write_train_folder(tmp_path, cfg, {"snapshot-001.pt": {"model": state}})
    with pytest.raises(DeepLabCutModelError, match=f"snapshot-001.pt: unsupported DeepLabCut model .*{found}.*Supported: "):
        from_deeplabcut(train, tmp_path / "x.onnx", **QUIET)


def test_weights_that_do_not_fit_are_named(tmp_path):
    cfg = dlc3_config(RESNET50, 2048)
    state = random_state(dlc3_config(RESNET50, 2048, ["a", "b"]))  # two bodyparts, config says three
    train = write_train_folder(tmp_path, cfg, {"snapshot-001.pt": {"model": state}})
    with pytest.raises(DeepLabCutModelError, match=r"do not fit the resnet_50 network .*wrong shape: "
                                                   r"\['heads.bodypart.heatmap_head.deconv_layers.0.weight"):
        from_deeplabcut(train, tmp_path / "x.onnx", **QUIET)


# -- DeepLabCut 2 (TensorFlow) ----------------------------------------------------------------

def slim_resnet50_variables(k: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """tf_slim resnet_v1_50 + DeepLabCut's prediction layers, by variable name (as its saver writes them)."""
    var: dict[str, np.ndarray] = {}

    def conv(scope: str, kh: int, cin: int, cout: int) -> None:
        var[f"{scope}/weights"] = rng.normal(0, (1.0 / (kh * kh * cin)) ** 0.5, (kh, kh, cin, cout)).astype(np.float32)
        for name, value in (("gamma", rng.uniform(0.5, 1.5, cout)), ("beta", rng.normal(0, 0.1, cout)),
                            ("moving_mean", rng.normal(0, 0.1, cout)), ("moving_variance", rng.uniform(0.5, 2, cout))):
            var[f"{scope}/BatchNorm/{name}"] = value.astype(np.float32)
        var[f"{scope}/weights/Momentum"] = np.zeros((kh, kh, cin, cout), np.float32)  # an optimizer slot

    conv("resnet_v1_50/conv1", 7, 3, 64)
    depth_in = 64
    for b, (units, base) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for u in range(1, units + 1):
            scope = f"resnet_v1_50/block{b}/unit_{u}/bottleneck_v1"
            if depth_in != base * 4:
                conv(f"{scope}/shortcut", 1, depth_in, base * 4)
            conv(f"{scope}/conv1", 1, depth_in, base)
            conv(f"{scope}/conv2", 3, base, base)
            conv(f"{scope}/conv3", 1, base, base * 4)
            depth_in = base * 4
    for head, n in (("part_pred", k), ("locref_pred", 2 * k)):
        var[f"pose/{head}/block4/weights"] = rng.normal(0, 1e-5, (3, 3, n, 2048)).astype(np.float32)
        var[f"pose/{head}/block4/biases"] = rng.normal(0, 0.1, n).astype(np.float32)
    return var


def slim_mobilenet_variables(k: int, multiplier: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """DeepLabCut's MobileNet v2 (output stride 16) by slim variable name; channel counts rounded to
    multiples of 8 as slim does, the last conv kept at 1280 (finegrain mode)."""
    def div8(v: float) -> int:
        r = max(8, int(v + 4) // 8 * 8)
        return r + 8 if r < 0.9 * v else r

    var: dict[str, np.ndarray] = {}

    def conv(scope: str, kh: int, cin: int, cout: int, depthwise: bool = False) -> None:
        shape = (kh, kh, cin, 1) if depthwise else (kh, kh, cin, cout)
        var[f"{scope}/{'depthwise_weights' if depthwise else 'weights'}"] = \
            rng.normal(0, (2.0 / (kh * kh * (1 if depthwise else cin))) ** 0.5, shape).astype(np.float32)
        for name, value in (("gamma", rng.uniform(0.5, 1.5, cout)), ("beta", rng.normal(0, 0.1, cout)),
                            ("moving_mean", rng.normal(0, 0.1, cout)), ("moving_variance", rng.uniform(0.5, 2, cout))):
            var[f"{scope}/BatchNorm/{name}"] = value.astype(np.float32)

    cin = div8(32 * multiplier)
    conv("MobilenetV2/Conv", 3, 3, cin)
    blocks = [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]
    for i, width in enumerate(blocks):
        scope = "MobilenetV2/expanded_conv" + (f"_{i}" if i else "")
        cout, inner = div8(width * multiplier), (cin if i == 0 else div8(cin * 6))
        if inner > cin:
            conv(f"{scope}/expand", 1, cin, inner)
        conv(f"{scope}/depthwise", 3, inner, inner, depthwise=True)
        conv(f"{scope}/project", 1, inner, cout)
        cin = cout
    conv("MobilenetV2/Conv_1", 1, cin, 1280)
    for head, n in (("part_pred", k), ("locref_pred", 2 * k)):
        var[f"pose/{head}/block4/weights"] = rng.normal(0, 1e-3, (3, 3, n, 1280)).astype(np.float32)
        var[f"pose/{head}/block4/biases"] = rng.normal(0, 0.1, n).astype(np.float32)
    return var


def write_tf_train_folder(train: Path, net_type: str, variables: dict[str, np.ndarray]) -> Path:
    tf = pytest.importorskip("tensorflow")
    train.mkdir(parents=True)
    with tf.Graph().as_default():
        tf_vars = {name: tf.compat.v1.Variable(value, name=name.replace("/", "_")) for name, value in variables.items()}
        saver = tf.compat.v1.train.Saver(var_list=tf_vars)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(train / "snapshot-1000"), write_meta_graph=False)
    (train / "pose_cfg.yaml").write_text(yaml.safe_dump({
        "net_type": net_type, "num_joints": len(BODYPARTS), "all_joints": [[i] for i in range(len(BODYPARTS))],
        "all_joints_names": BODYPARTS, "mean_pixel": [123.68, 116.779, 103.939], "stride": 8.0,
        "locref_stdev": 7.2801, "location_refinement": True, "dataset_type": "imgaug"}))
    return train


@pytest.mark.tf
def test_dlc2_mobilenet_checkpoint(tmp_path):
    variables = slim_mobilenet_variables(len(BODYPARTS), 0.35, np.random.default_rng(2))
    train = write_tf_train_folder(tmp_path / "train", "mobilenet_v2_0.35", variables)
    test_frames = frames(3, 64, 96)
    out = from_deeplabcut(train, tmp_path / "m.onnx", frames=test_frames, heatmaps=True, **QUIET)
    assert out.spec.provenance["parity"]["passed"] and "batch norm in training mode" in out.spec.provenance["notes"][1]
    import onnxruntime as ort

    session = ort.InferenceSession(str(out.path), providers=["CPUExecutionProvider"])
    padded = np.zeros((1, 64, 96, 3), np.uint8)
    keypoints, maps = session.run(["keypoints", "heatmaps"], {"frames": padded})
    assert maps.shape == (1, 3, 8, 12) and np.all((maps > 0) & (maps < 1))  # stride 8, sigmoid applied
    model = PoseModel.load(out.path, device="cpu")
    together = coords(model.predict(test_frames, color="rgb"))
    # every frame is normalised by its own statistics: its keypoints do not depend on its batch
    alone = coords(model.predict(test_frames[1:2], color="rgb"))
    np.testing.assert_allclose(together[1], alone[0], atol=1e-4)


@pytest.fixture(scope="module")
def tf_train_folder(tmp_path_factory) -> Path:
    pytest.importorskip("tensorflow")
    train = tmp_path_factory.mktemp("dlc2") / "dlc-models" / "iteration-0" / "tOct1-trainset80shuffle1" / "train"
    return write_tf_train_folder(train, "resnet_50", slim_resnet50_variables(len(BODYPARTS), np.random.default_rng(0)))


@pytest.mark.tf
def test_dlc2_resnet_checkpoint(tf_train_folder, tmp_path):
    assert is_deeplabcut_model(tf_train_folder.parent)
    located = locate(tf_train_folder.parent)
    assert (located.engine, located.snapshot, located.step) == ("tensorflow", "snapshot-1000", 1000)
    test_frames = frames(2, 96, 128)
    out = from_deeplabcut(tf_train_folder, tmp_path / "tf.onnx", frames=test_frames, **QUIET)
    spec = out.spec
    assert spec.input.size_multiple == 16 and spec.decode.stride == 8 and "sigmoid" in spec.decode.method
    assert spec.provenance["backend"] == "deeplabcut-tensorflow" and spec.provenance["parity"]["passed"]
    got = coords(PoseModel.load(out.path, device="cpu").predict(test_frames, color="rgb"))
    assert got.shape == (2, 3, 3) and np.all((got[..., 2] > 0) & (got[..., 2] < 1))  # sigmoid scores, unclipped


@pytest.mark.tf
def test_tensorflow_padding_rules_match_tensorflow():
    # The three places where TensorFlow's padding differs from torch's defaults, against TF itself.
    tf = pytest.importorskip("tensorflow")
    from posezoo.export.deeplabcut.slim_nets import SameDeconvHead, folded_conv

    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 6, 8, 5)).astype(np.float32)  # NHWC, even sizes as the spec guarantees
    w = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)  # conv2d_transpose: [kh, kw, out, in]
    b = rng.normal(size=4).astype(np.float32)
    params = {"h/weights": w, "h/biases": b}
    ref = tf.nn.conv2d_transpose(x, w, output_shape=(1, 12, 16, 4), strides=2, padding="SAME") + b
    with torch.no_grad():
        got = SameDeconvHead(params.__getitem__, "h")(torch.from_numpy(x).permute(0, 3, 1, 2))
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).numpy(), ref.numpy(), atol=1e-5)

    pooled = tf.nn.max_pool2d(x, 3, 2, "SAME").numpy()
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    mine = torch.nn.functional.max_pool2d(torch.nn.functional.pad(t, (0, 1, 0, 1), value=float("-inf")), 3, 2)
    np.testing.assert_allclose(mine.permute(0, 2, 3, 1).numpy(), pooled)

    cw = rng.normal(size=(3, 3, 5, 7)).astype(np.float32)
    atrous = tf.nn.conv2d(x, cw, 1, "SAME", dilations=2).numpy()
    conv = folded_conv({"c/weights": cw}.__getitem__, "c", dilation=2, padding=2, norm=False)
    with torch.no_grad():
        np.testing.assert_allclose(conv(t).permute(0, 2, 3, 1).numpy(), atrous, atol=1e-5)


def test_dlc2_unsupported_and_multi_animal(tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    (train / "snapshot-5.index").write_bytes(b"")
    (train / "pose_cfg.yaml").write_text(yaml.safe_dump({"net_type": "efficientnet-b0", "all_joints_names": ["a"]}))
    with pytest.raises(DeepLabCutModelError, match="net_type .efficientnet-b0..*Supported TensorFlow net_types: resnet_101"):
        from_deeplabcut(train, tmp_path / "x.onnx", **QUIET)
    (train / "pose_cfg.yaml").write_text(yaml.safe_dump({"net_type": "resnet_50", "all_joints_names": ["a"],
                                                         "dataset_type": "multi-animal-imgaug"}))
    with pytest.raises(DeepLabCutModelError, match="a multi-animal model"):
        from_deeplabcut(train, tmp_path / "x.onnx", **QUIET)


# -- against DeepLabCut itself ----------------------------------------------------------------

DLC_VENV = Path(os.environ.get("POSEZOO_DLC_VENV", "/work/dlc-venv"))


def parity_rows(tmp_path: Path, *args: str) -> list[dict]:
    """benchmarks/deeplabcut_parity.py with ``args`` in DeepLabCut's environment (skipped where it is
    absent); its parity rows."""
    if not (DLC_VENV / "bin" / "python").exists():
        pytest.skip(f"DeepLabCut's environment is absent at {DLC_VENV} (set POSEZOO_DLC_VENV, or run "
                    "benchmarks/deeplabcut_parity.py once to create it)")
    result = tmp_path / "results.json"
    cache = Path(os.environ.get("POSEZOO_DLC_CACHE", tmp_path / "cache"))
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "deeplabcut_parity.py"), *args, "--venv", str(DLC_VENV),
                    "--cache", str(cache), "--json", str(result)], check=True, timeout=3600)
    return json.loads(result.read_text())["parity"]


@pytest.mark.slow
def test_resnet50_matches_deeplabcut_itself(openfield_dir, tmp_path):
    """DeepLabCut 3.0.2 trains resnet_50 for one epoch on openfield and predicts every labeled
    frame; the imported .onnx must agree within 0.5 px and 0.01 in score (benchmarks/deeplabcut_parity.py)."""
    (row,) = parity_rows(tmp_path, "--archs", "resnet_50", "--tf-archs", "none", "--multi-archs", "none",
                         "--project", str(openfield_dir))
    assert "error" not in row, row
    assert row["frames"] == 116 and row["max_px"] <= 0.5 and row["max_score"] <= 0.01, row
