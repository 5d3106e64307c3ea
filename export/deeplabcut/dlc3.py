"""DeepLabCut 3 (PyTorch engine) single-animal models: pytorch_config.yaml + weights -> torch net.

The network is rebuilt from the config with DeepLabCut's module names (``backbone.model.*``,
``heads.bodypart.heatmap_head.*``, ``heads.bodypart.locref_head.*``), so the snapshot's
state_dict loads strictly; nothing from the deeplabcut package is imported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .errors import DeepLabCutModelError
from .graph import Decode, Normalize
from .timm_nets import HRNETS, RESNETS, TimmHRNet, TimmResNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SUPPORTED = ("resnet_50 / resnet_101 and other timm ResNets " + ", ".join(sorted(RESNETS))
             + "; HRNet " + ", ".join(sorted(HRNETS)) + "; single-animal bottom-up with a HeatmapHead")
# data.inference keys that do not change pixels' geometry or values beyond what is handled here
_INFERENCE_KEYS = {"normalize_images", "scale_to_unit_range", "auto_padding", "top_down_crop"}


class DeconvModule(nn.Module):
    """DeepLabCut's DeconvModule: transposed convs (ReLU between, none after) + optional 1x1-style conv."""

    def __init__(self, channels: list[int], kernel_size: list[int], strides: list[int],
                 final_conv: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if not len(channels) == len(kernel_size) + 1 == len(strides) + 1:
            raise ValueError(f"head config has {len(channels)} channels for {len(kernel_size)} kernels "
                             f"and {len(strides)} strides (needs one more channel)")
        self.stride = math.prod(strides) if strides else 1
        self.deconv_layers: nn.Module = nn.Identity()
        if kernel_size:
            layers: list[nn.Module] = []
            for cin, cout, k, s in zip(channels[:-1], channels[1:], kernel_size, strides):
                layers += [nn.ConvTranspose2d(cin, cout, k, stride=s), nn.ReLU()]
            self.deconv_layers = nn.Sequential(*layers[:-1])
        self.final_conv: nn.Module = nn.Identity()
        if final_conv:
            self.final_conv = nn.Conv2d(channels[-1], int(final_conv["out_channels"]), int(final_conv["kernel_size"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.deconv_layers(x))


class HeatmapHead(nn.Module):
    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.heatmap_head = DeconvModule(**cfg["heatmap_config"])
        locref = cfg.get("locref_config")
        self.locref_head = DeconvModule(**locref) if locref else None
        if self.locref_head is not None and self.locref_head.stride != self.heatmap_head.stride:
            raise ValueError("heatmap and locref heads have different strides")
        self.stride = self.heatmap_head.stride


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DLC3Net(nn.Module):
    """backbone -> bodypart head; returns (heatmaps, locref or None) as the raw head outputs."""

    def __init__(self, model_cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.backbone = Backbone(model_cfg["backbone"])
        self.heads = nn.ModuleDict({"bodypart": HeatmapHead(model_cfg["heads"]["bodypart"])})
        # DeepLabCut: stride = backbone stride / head upsampling
        self.stride = self.backbone.stride / self.heads["bodypart"].stride

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.backbone(x)
        head = self.heads["bodypart"]
        locref = head.locref_head(features) if head.locref_head is not None else None
        return head.heatmap_head(features), locref


@dataclass
class Imported:
    """What an importer hands to the converter: the net and everything the spec needs."""

    net: nn.Module
    keypoints: list[str]
    normalize: Normalize
    decode: Decode
    color: str
    size_multiple: int
    net_type: str
    notes: list[str]


def build(cfg: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor], where: Path) -> Imported:
    """Check that ``cfg`` describes a supported single-animal model and load ``state_dict`` into it."""
    net_type = str(cfg.get("net_type", "?"))
    model_cfg = cfg.get("model")
    if not isinstance(model_cfg, Mapping) or "backbone" not in model_cfg or "heads" not in model_cfg:
        raise DeepLabCutModelError(f"{where}: the config has no model.backbone / model.heads section; "
                                   f"is this a DeepLabCut 3 pytorch_config.yaml? Supported: {SUPPORTED}")
    meta = cfg.get("metadata") or {}
    keypoints = list(meta.get("bodyparts") or [])
    individuals = list(meta.get("individuals") or ["single"])
    method = str(cfg.get("method", "bu")).lower()
    problems = []
    if method != "bu":
        problems.append(f"method {method!r} (top-down models need DeepLabCut's object detector, which "
                        "posezoo does not import; train a bottom-up single-animal model)")
    if len(individuals) > 1:
        problems.append(f"{len(individuals)} individuals (multi-animal models wait for posezoo's "
                        "multi-animal support)")
    if meta.get("unique_bodyparts"):
        problems.append("unique bodyparts (a second head)")
    heads = model_cfg["heads"]
    if set(heads) != {"bodypart"}:
        problems.append(f"heads {sorted(heads)} (only a single 'bodypart' head is supported)")
    elif heads["bodypart"].get("type") != "HeatmapHead" or \
            heads["bodypart"].get("predictor", {}).get("type") != "HeatmapPredictor":
        problems.append(f"head type {heads['bodypart'].get('type')!r} with predictor "
                        f"{heads['bodypart'].get('predictor', {}).get('type')!r}")
    if model_cfg.get("neck"):
        problems.append("a neck module")
    backbone = model_cfg["backbone"]
    if backbone.get("type") == "ResNet" and backbone.get("model_name") not in RESNETS or \
            backbone.get("type") == "HRNet" and backbone.get("model_name") not in HRNETS or \
            backbone.get("type") not in ("ResNet", "HRNet"):
        problems.append(f"backbone {backbone.get('type')}/{backbone.get('model_name')}")
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

    predictor = heads["bodypart"]["predictor"]
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
    decode = Decode(stride=float(net.stride), locref_std=float(predictor.get("locref_std", 7.2801)),
                    sigmoid=bool(predictor.get("apply_sigmoid", True)), clip=bool(predictor.get("clip_scores", False)),
                    location_refinement=bool(predictor.get("location_refinement", True)))
    return Imported(net.eval(), keypoints, normalize, decode, color if color in ("RGB", "BGR") else "RGB",
                    multiple, net_type, notes)


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
