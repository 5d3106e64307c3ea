"""DeepLabCut 2 (TensorFlow engine) single-animal models: pose_cfg.yaml + checkpoint -> torch net.

The checkpoint is read with ``tf.train.load_checkpoint`` (TensorFlow is needed for this part
only: ``pip install "posezoo[tf]"``); the network is rebuilt in torch (slim_nets.py). DeepLabCut 2
feeds RGB frames as floats minus ``mean_pixel`` and decodes sigmoid maps with ``stride`` and
``locref_stdev``, with no clipping; all of that moves into the graph.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .dlc3 import Imported
from .errors import DeepLabCutModelError
from .graph import Decode, Normalize
from .slim_nets import MOBILENETS, RESNET_UNITS, SlimMobileNetV2, SlimResNet
from .source import Located, read_yaml

SUPPORTED_TF = tuple(sorted(RESNET_UNITS) + sorted(MOBILENETS))
DEFAULT_MEAN_PIXEL = (123.68, 116.779, 103.939)


def build_tf(located: Located) -> tuple[Imported, dict[str, Any]]:
    cfg = read_yaml(located.config_path)
    net_type = str(cfg.get("net_type", "?"))
    keypoints = [str(k) for k in cfg.get("all_joints_names") or []]
    problems = []
    if net_type not in SUPPORTED_TF:
        problems.append(f"net_type {net_type!r}")
    if "multi-animal" in str(cfg.get("dataset_type", "")) or cfg.get("partaffinityfield_predict"):
        problems.append("a multi-animal model (waits for posezoo's multi-animal support)")
    if cfg.get("num_idchannel"):
        problems.append("identity channels")
    if not keypoints:
        problems.append("no all_joints_names")
    if problems:
        raise DeepLabCutModelError(f"{located.config_path}: unsupported DeepLabCut 2 model: " + "; ".join(problems)
                                   + f". Supported TensorFlow net_types: {', '.join(SUPPORTED_TF)} (single animal)")
    read, versions, digest = _reader(located.weights)
    try:
        kind = SlimResNet if net_type in RESNET_UNITS else SlimMobileNetV2
        net = kind(read, net_type, bool(cfg.get("location_refinement", False)))
    except KeyError as exc:
        raise DeepLabCutModelError(f"{located.weights}: the checkpoint lacks {exc.args[0]!r}, which a "
                                   f"DeepLabCut 2 {net_type} needs; is pose_cfg.yaml's net_type right?") from None
    except ValueError as exc:  # shapes that do not fit together
        raise DeepLabCutModelError(f"{located.weights}: the checkpoint does not fit a {net_type}: {exc}") from None
    if net.part_pred.deconv.out_channels != len(keypoints):
        raise DeepLabCutModelError(f"{located.weights}: the heatmap layer has {net.part_pred.deconv.out_channels} "
                                   f"channels but pose_cfg.yaml names {len(keypoints)} joints")
    mean = tuple(float(v) for v in np.ravel(cfg.get("mean_pixel") or DEFAULT_MEAN_PIXEL))
    stride = float(cfg.get("stride", 8))
    if stride != net.stride:
        raise DeepLabCutModelError(f"{located.config_path}: stride {stride} but a {net_type} has stride {net.stride}")
    decode = Decode(stride=stride, locref_std=float(cfg.get("locref_stdev", 7.2801)), sigmoid=True, clip=False,
                    location_refinement=bool(cfg.get("location_refinement", False)))
    notes = ["DeepLabCut 2 runs frames of any size; posezoo pads them bottom/right with black to a multiple of 16, "
             "where TensorFlow's 'SAME' padding is fixed (identical for frames already of that size)"]
    if net_type in MOBILENETS:
        notes.append("DeepLabCut 2's MobileNet keeps batch norm in training mode at inference, so each batch is "
                     "normalised by its own statistics; posezoo normalises every frame by its own, which equals "
                     "DeepLabCut with batch size 1")
    imported = Imported(net.eval(), keypoints, Normalize(mean), decode, "RGB", 16, net_type, notes)  # type: ignore[arg-type]
    extra = {"project_hint": cfg.get("project_path"), "weights_sha256": digest(), "versions": versions,
             "snapshot_metadata": {}}
    return imported, extra


def _reader(prefix: Path) -> tuple[Callable[[str], np.ndarray], dict[str, str], Callable[[], str]]:
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportError(f"{prefix}: reading a DeepLabCut 2 TensorFlow checkpoint needs TensorFlow: "
                          'pip install "posezoo[tf]"') from None
    import torch

    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except Exception as exc:  # noqa: BLE001 - TF raises several kinds for a bad checkpoint
        raise DeepLabCutModelError(f"{prefix}: cannot read the TensorFlow checkpoint "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    names = reader.get_variable_to_shape_map()
    digest = hashlib.sha256()

    def read(name: str) -> np.ndarray:
        if name not in names:
            raise KeyError(name)
        value = np.asarray(reader.get_tensor(name), dtype=np.float32)
        digest.update(name.encode())
        digest.update(value.tobytes())
        return value

    # the weights hash covers exactly the variables the rebuild read, in reading order
    return read, {"tensorflow": tf.__version__, "torch": torch.__version__}, digest.hexdigest
