"""DeepLabCut 3's heads in plain torch with DeepLabCut's module names (strict state_dict loading)."""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn


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


def _same_size_deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    """DeepLabCut's stand-in for TensorFlow's 'same' transposed convolution: exactly 2x."""
    return nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)


class DLCRNetHead(nn.Module):
    """DeepLabCut's ``DLCRNetHead``: with ``num_stages`` > 0, 2x transposed convolutions to
    heatmap, field and feature maps, refined in stages (heatmaps summed from stage 2 on), then the
    heatmap and field heads; locref from its own 2x branch. Returns (heatmaps, locref, fields)."""

    def __init__(self, cfg: Mapping[str, Any], in_channels: int) -> None:
        super().__init__()
        heat, locref, paf = (dict(cfg[key]) for key in ("heatmap_config", "locref_config", "paf_config"))
        heat["channels"], locref["channels"], paf["channels"] = (list(c["channels"]) for c in (heat, locref, paf))
        self.num_stages = int(cfg.get("num_stages", 5))
        n_kp, n_limbs = int(heat["channels"][-1]), int(paf["channels"][-1])
        features = int(cfg.get("features_dim", 128))
        if self.num_stages > 0:
            refined = features + n_kp + n_limbs
            heat["channels"][0] = paf["channels"][0] = refined
            locref["channels"][0] = locref["channels"][-1]
        self.heatmap_head = DeconvModule(**heat)
        self.locref_head = DeconvModule(**locref)
        self.paf_head = DeconvModule(**paf)
        self.stride = self.heatmap_head.stride * (2 if self.num_stages > 0 else 1)
        if self.num_stages > 0:
            self.convt1 = _same_size_deconv(in_channels, n_kp)
            self.convt2 = _same_size_deconv(in_channels, int(locref["channels"][-1]))
            self.convt3 = _same_size_deconv(in_channels, n_limbs)
            self.convt4 = _same_size_deconv(in_channels, features)
            self.hm_ref_layers = nn.ModuleList(nn.Conv2d(refined, n_kp, 3, padding=1) for _ in range(self.num_stages))
            self.paf_ref_layers = nn.ModuleList(nn.Conv2d(refined, n_limbs, 3, padding=1)
                                                for _ in range(self.num_stages))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.num_stages == 0:
            return self.heatmap_head(x), self.locref_head(x), self.paf_head(x)
        hm, features = self.convt1(x), self.convt4(x)
        stage_in = torch.cat((hm, self.convt3(x), features), dim=1)
        for i, (hm_layer, paf_layer) in enumerate(zip(self.hm_ref_layers, self.paf_ref_layers)):
            hm = hm_layer(stage_in) + (hm if i > 0 else 0)
            stage_in = torch.cat((hm, paf_layer(stage_in), features), dim=1)
        return self.heatmap_head(stage_in), self.locref_head(self.convt2(x)), self.paf_head(stage_in)
