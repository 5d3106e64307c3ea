"""DeepLabCut 3 (PyTorch engine) bottom-up models: pytorch_config.yaml + weights -> torch net.

The network is rebuilt from the config with DeepLabCut's module names (``backbone.model.*``,
``heads.bodypart.heatmap_head.*``, ``heads.bodypart.locref_head.*``, and for multi-animal
models ``heads.bodypart.paf_head.*`` and the refinement stages, see heads.py), so the snapshot's
state_dict loads strictly; nothing from the deeplabcut package is imported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .errors import DeepLabCutModelError
from .graph import Decode, Normalize
from .heads import DLCRNetHead, HeatmapHead
from .paf import PafDecode
from .timm_nets import HRNETS, RESNETS, DLCRNetBackbone, TimmHRNet, TimmResNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SUPPORTED = ("resnet_50 / resnet_101 and other timm ResNets " + ", ".join(sorted(RESNETS))
             + "; HRNet " + ", ".join(sorted(HRNETS)) + "; DLCRNet (dlcrnet_stride16_ms5); bottom-up: single-animal "
             "with a HeatmapHead, multi-animal with a DLCRNetHead (part-affinity fields)")
# data.inference keys that do not change pixels' geometry or values beyond what is handled here
_INFERENCE_KEYS = {"normalize_images", "scale_to_unit_range", "auto_padding", "top_down_crop"}


class Backbone(nn.Module):
    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        kind = cfg.get("type")
        if kind == "ResNet":
            self.model: nn.Module = TimmResNet(cfg.get("model_name", "resnet50"), int(cfg.get("output_stride", 32)))
        elif kind == "HRNet":
            if cfg.get("interpolate_branches") or cfg.get("increased_channel_count"):
                raise ValueError("HRNet with interpolate_branches or increased_channel_count (DEKR) is not supported")
            self.model = TimmHRNet(cfg.get("model_name", "hrnet_w32"))
        else:
            raise ValueError(f"backbone type {kind!r} is not supported")
        self.stride = self.model.stride
        self.out_channels = int(self.model.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DLC3Net(nn.Module):
    """backbone -> bodypart head; returns the raw head outputs: (heatmaps, locref or None), or for
    a ``DLCRNetHead`` (heatmaps, locref, part-affinity fields)."""

    def __init__(self, model_cfg: Mapping[str, Any]) -> None:
        super().__init__()
        backbone = model_cfg["backbone"]
        # DeepLabCut's DLCRNet holds its timm ResNet as `model` beside its own blocks
        self.backbone: Backbone | DLCRNetBackbone = Backbone(backbone) if backbone.get("type") != "DLCRNet" else \
            DLCRNetBackbone(backbone.get("model_name", "resnet50"), int(backbone.get("output_stride", 32)))
        heads = model_cfg["heads"]
        cfg = heads["bodypart"]
        head = DLCRNetHead(cfg, self.backbone.out_channels) if cfg.get("type") == "DLCRNetHead" else HeatmapHead(cfg)
        self.heads = nn.ModuleDict({"bodypart": head})
        # DeepLabCut: stride = backbone stride / head upsampling, per head
        self.stride = self.backbone.stride / head.stride
        if "unique_bodypart" in heads:
            self.heads["unique_bodypart"] = HeatmapHead(heads["unique_bodypart"])
            self.unique_stride = self.backbone.stride / self.heads["unique_bodypart"].stride

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        features = self.backbone(x)
        head = self.heads["bodypart"]
        if isinstance(head, DLCRNetHead):
            out: tuple[torch.Tensor | None, ...] = head(features)
        else:
            out = (head.heatmap_head(features), head.locref_head(features) if head.locref_head is not None else None)
        if "unique_bodypart" in self.heads:
            unique = self.heads["unique_bodypart"]
            out += (unique.heatmap_head(features),
                    unique.locref_head(features) if unique.locref_head is not None else None)
        return out


@dataclass
class Imported:
    """What an importer hands to the converter: the net and everything the spec needs."""

    net: nn.Module
    keypoints: list[str]
    normalize: Normalize
    decode: Decode | PafDecode  # PafDecode: a multi-animal model
    color: str
    size_multiple: int
    net_type: str
    notes: list[str]
    individuals: list[str] = field(default_factory=list)  # a multi-animal model's
    unique_keypoints: list[str] = field(default_factory=list)  # its unique bodyparts (a head of their own)
    min_affinity: float = 0.05  # its assembler's

    @property
    def multi(self) -> bool:
        return isinstance(self.decode, PafDecode)


def build(cfg: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor], where: Path) -> Imported:
    """Check that ``cfg`` describes a supported bottom-up model and load ``state_dict`` into it."""
    net_type = str(cfg.get("net_type", "?"))
    model_cfg = cfg.get("model")
    if not isinstance(model_cfg, Mapping) or "backbone" not in model_cfg or "heads" not in model_cfg:
        raise DeepLabCutModelError(f"{where}: the config has no model.backbone / model.heads section; "
                                   f"is this a DeepLabCut 3 pytorch_config.yaml? Supported: {SUPPORTED}")
    meta = cfg.get("metadata") or {}
    keypoints = list(meta.get("bodyparts") or [])
    individuals = list(meta.get("individuals") or ["single"])
    method = str(cfg.get("method", "bu")).lower()
    heads = model_cfg["heads"]
    body = heads.get("bodypart") or {}
    head_type, predictor = body.get("type"), body.get("predictor") or {}
    multi = head_type == "DLCRNetHead"
    problems = []
    if method != "bu":
        problems.append(f"method {method!r} (top-down models need DeepLabCut's object detector, which "
                        "posezoo does not import; train a bottom-up model)")
    if len(individuals) > 1 and not multi:
        problems.append(f"{len(individuals)} individuals with a {head_type} head (multi-animal models are "
                        "imported with a DLCRNetHead: part-affinity fields)")
    unique = list(meta.get("unique_bodyparts") or [])
    expected_heads = {"bodypart"} | ({"unique_bodypart"} if multi and unique else set())
    if unique and not multi:
        problems.append("unique bodyparts without a multi-animal (DLCRNetHead) model")
    if set(heads) != expected_heads:
        problems.append(f"heads {sorted(heads)} (imported: 'bodypart', and 'unique_bodypart' for the unique "
                        "bodyparts of a multi-animal model; identity heads are not yet)")
    elif "unique_bodypart" in heads:
        problems += _unique_problems(heads["unique_bodypart"], len(unique))
    elif (head_type, predictor.get("type")) not in (("HeatmapHead", "HeatmapPredictor"),
                                                    ("DLCRNetHead", "PartAffinityFieldPredictor")):
        problems.append(f"head type {head_type!r} with predictor {predictor.get('type')!r}")
    elif multi:
        problems += _paf_problems(predictor, body, len(keypoints))
    if model_cfg.get("neck"):
        problems.append("a neck module")
    backbone = model_cfg["backbone"]
    names = {"ResNet": RESNETS, "HRNet": HRNETS, "DLCRNet": RESNETS}.get(str(backbone.get("type")), {})
    if backbone.get("model_name", "resnet50") not in names:
        problems.append(f"backbone {backbone.get('type')}/{backbone.get('model_name')}")
    elif backbone.get("type") == "DLCRNet" and int(backbone.get("output_stride", 32)) != 16:
        problems.append(f"DLCRNet at output stride {backbone.get('output_stride')} (its antialiased "
                        "downscaling has no ONNX equivalent here; dlcrnet_stride16_ms5 is supported)")
    data = cfg.get("data") or {}
    inference = data.get("inference") or {}
    # DeepLabCut 3.0.2 writes every transform key, unused ones as null/false
    unknown = sorted(k for k, v in inference.items() if v and k not in _INFERENCE_KEYS)
    if unknown:
        problems.append(f"inference transforms {unknown} (supported: {sorted(_INFERENCE_KEYS)})")
    padding = inference.get("auto_padding") or {}
    if padding.get("min_height") or padding.get("min_width"):
        problems.append("auto_padding with min_height/min_width")
    if not keypoints:
        problems.append("no bodyparts in the config's metadata")
    if problems:
        raise DeepLabCutModelError(f"{where}: unsupported DeepLabCut model (net_type {net_type}): "
                                   + "; ".join(problems) + f". Supported: {SUPPORTED}")
    try:
        net = DLC3Net(model_cfg)
    except (ValueError, KeyError, TypeError) as exc:
        raise DeepLabCutModelError(f"{where}: cannot rebuild net_type {net_type}: {exc}. Supported: {SUPPORTED}") from None
    _load(net, state_dict, where, net_type)

    color = str(data.get("colormode", "RGB")).upper()
    if inference.get("normalize_images"):
        normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD, 1 / 255)
    elif inference.get("scale_to_unit_range"):
        normalize = Normalize((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 1 / 255)
    else:
        normalize = Normalize((0.0, 0.0, 0.0))
    multiple = math.lcm(int(padding.get("pad_height_divisor") or 1), int(padding.get("pad_width_divisor") or 1))
    notes = []
    if multiple > 1:
        notes.append(f"DeepLabCut pads frames to a multiple of {multiple} at a random position with reflected "
                     "borders; posezoo pads bottom/right with black (identical for frames already of that size)")
    color = color if color in ("RGB", "BGR") else "RGB"
    if multi:
        graph = [tuple(int(i) for i in edge) for edge in predictor["graph"]]
        kept = [int(i) for i in (predictor.get("edges_to_keep") or range(len(graph)))]
        unique_decode = _heatmap_decode(heads["unique_bodypart"]["predictor"], net.unique_stride) if unique else None
        paf = PafDecode(stride=float(net.stride), locref_std=float(predictor.get("locref_stdev", 7.2801)),
                        sigmoid=bool(predictor.get("apply_sigmoid", True)), clip=bool(predictor.get("clip_scores", False)),
                        nms_radius=int(predictor.get("nms_radius", 5)), sigma=float(predictor.get("sigma", 1.0)),
                        edges=tuple((graph[i][0], graph[i][1]) for i in kept), channels=tuple(kept),
                        candidates=int(predictor.get("num_animals") or len(individuals)), unique=unique_decode)
        if unique:
            notes.append("unique bodyparts below the assembly's min_score (0.1) are reported as absent; DeepLabCut "
                         "reports its unique head's best cell whatever its score")
        return Imported(net.eval(), keypoints, normalize, paf, color, multiple, net_type, notes,
                        individuals=individuals, unique_keypoints=unique,
                        min_affinity=float(predictor.get("min_affinity", 0.05)))
    return Imported(net.eval(), keypoints, normalize, _heatmap_decode(predictor, net.stride), color, multiple,
                    net_type, notes)


def _heatmap_decode(predictor: Mapping[str, Any], stride: float) -> Decode:
    """A HeatmapPredictor's settings (DeepLabCut 3's defaults where the config leaves them out)."""
    return Decode(stride=float(stride), locref_std=float(predictor.get("locref_std", 7.2801)),
                  sigmoid=bool(predictor.get("apply_sigmoid", True)), clip=bool(predictor.get("clip_scores", False)),
                  location_refinement=bool(predictor.get("location_refinement", True)))


def _unique_problems(head: Mapping[str, Any], n_unique: int) -> list[str]:
    if head.get("type") != "HeatmapHead" or (head.get("predictor") or {}).get("type") != "HeatmapPredictor":
        return [f"unique-bodypart head {head.get('type')!r} with predictor {(head.get('predictor') or {}).get('type')!r}"]
    channels = (head.get("heatmap_config") or {}).get("channels", [None])[-1]
    if channels != n_unique:
        return [f"a unique-bodypart head of {channels} maps for {n_unique} unique bodyparts"]
    return []


def _paf_problems(predictor: Mapping[str, Any], head: Mapping[str, Any], n_keypoints: int) -> list[str]:
    """What keeps a PartAffinityFieldPredictor's settings from being baked into the graph."""
    problems = []
    graph = predictor.get("graph")
    if not isinstance(graph, list) or not graph or not all(
            isinstance(e, (list, tuple)) and len(e) == 2 and all(0 <= int(i) < n_keypoints for i in e) for e in graph):
        return [f"predictor graph {graph!r} (needs pairs of keypoint indices)"]
    kept = predictor.get("edges_to_keep") or list(range(len(graph)))
    if not all(0 <= int(i) < len(graph) for i in kept):
        problems.append(f"edges_to_keep {kept} outside the graph's {len(graph)} edges")
    fields = (head.get("paf_config") or {}).get("channels", [None])[-1]
    if fields != 2 * len(graph):
        problems.append(f"{fields} part-affinity channels for a graph of {len(graph)} edges (needs {2 * len(graph)})")
    radius = int(predictor.get("nms_radius", 5))
    if radius < 1 or radius % 2 == 0:
        problems.append(f"nms_radius {radius} (an odd radius keeps DeepLabCut's max-pool the size of the map)")
    if predictor.get("num_animals") is not None and int(predictor["num_animals"]) < 1:
        problems.append(f"num_animals {predictor['num_animals']}")
    return problems


def _load(net: nn.Module, state_dict: Mapping[str, torch.Tensor], where: Path, net_type: str) -> None:
    expected = net.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f"{k} {tuple(state_dict[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = [f"{label}: {items[:4]}{' ...' if len(items) > 4 else ''} ({len(items)} in all)"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
        raise DeepLabCutModelError(f"{where}: the weights do not fit the {net_type} network that the config "
                                   f"describes; " + "; ".join(parts))
    net.load_state_dict({k: state_dict[k] for k in expected}, strict=True)
