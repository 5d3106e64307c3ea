"""A DeepLabCut network as one posezoo graph: uint8 NHWC frames in, keypoints (N, K, 3) out.

DeepLabCut normalises on the host and decodes in Python; here both move inside the graph so the
exported file follows posezoo's contract (export/torch_onnx.py). The decode is DeepLabCut's own:
the first maximum cell of each map, ``cell * stride + stride / 2 + locref * locref_std`` with the
location refinement channels interleaved (x of keypoint k in channel 2k, y in 2k+1), the score
read from the map after a sigmoid only where the engine applied one, clipped to [0, 1] where
DeepLabCut 3 clips it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

OPSET = 17


@dataclass(frozen=True)
class Decode:
    stride: float
    locref_std: float
    sigmoid: bool  # DeepLabCut 2 (TensorFlow) applies one; DeepLabCut 3 heads by default do not
    clip: bool  # DeepLabCut 3's ``clip_scores``
    location_refinement: bool = True


@dataclass(frozen=True)
class Normalize:
    """``(pixel * scale - mean) / std`` per channel, in the input's colour order."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0


class DeepLabCutGraph(nn.Module):
    """``net(x) -> (heatmaps (N, K, h, w), locref (N, 2K, h, w) or None)`` wrapped for export."""

    def __init__(self, net: nn.Module, normalize: Normalize, decode: Decode, heatmaps: bool = False) -> None:
        super().__init__()
        self.net = net.eval()
        self.decode = decode
        self.heatmaps = heatmaps
        self.scale = normalize.scale
        self.register_buffer("mean", torch.tensor(normalize.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(normalize.std, dtype=torch.float32).view(1, 3, 1, 1))

    @property
    def output_names(self) -> list[str]:
        return ["keypoints"] + (["heatmaps"] if self.heatmaps else [])

    def maps(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = frames.permute(0, 3, 1, 2).to(torch.float32)
        if self.scale != 1.0:
            x = x * self.scale
        return self.net((x - self.mean) / self.std)

    def forward(self, frames: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        heat, locref = self.maps(frames)
        keypoints = argmax_decode(heat, locref, self.decode)
        if self.heatmaps:
            return keypoints, torch.sigmoid(heat) if self.decode.sigmoid else heat
        return keypoints


def argmax_decode(heat: torch.Tensor, locref: torch.Tensor | None, d: Decode) -> torch.Tensor:
    """(N, K, h, w) maps (+ interleaved locref) -> (N, K, 3) x, y, score, as DeepLabCut decodes."""
    n, k, h, w = heat.shape
    # first maximum, as torch.argmax / numpy; found on the logits where a sigmoid follows, since
    # the sigmoid is monotonic and float32 saturation would otherwise make ties of confident peaks
    score, idx = heat.reshape(n, k, -1).max(dim=2)
    if d.sigmoid:
        score = torch.sigmoid(score)
    width = torch.tensor(w, dtype=idx.dtype) if isinstance(w, int) else w
    row = torch.div(idx, width, rounding_mode="floor")
    col = idx - row * width
    x = col.to(heat.dtype) * d.stride + 0.5 * d.stride
    y = row.to(heat.dtype) * d.stride + 0.5 * d.stride
    if d.location_refinement and locref is not None:
        loc = locref.reshape(n, k, 2, -1)
        vec = torch.gather(loc, 3, idx[:, :, None, None].expand(n, k, 2, 1))[..., 0]
        x = x + vec[..., 0] * d.locref_std
        y = y + vec[..., 1] * d.locref_std
    if d.clip:
        score = torch.clamp(score, 0.0, 1.0)
    return torch.stack([x, y, score], dim=-1)


def export_onnx(graph: DeepLabCutGraph, input_name: str, path: Path, example_hw: tuple[int, int] = (160, 192)) -> None:
    """Trace ``graph`` into ``path`` with dynamic batch, height and width."""
    example = torch.zeros((1, *example_hw, 3), dtype=torch.uint8)
    outputs = graph.output_names
    dynamic = {input_name: {0: "batch", 1: "height", 2: "width"}, **{name: {0: "batch"} for name in outputs}}
    if graph.heatmaps:
        dynamic["heatmaps"] = {0: "batch", 2: "heatmap_height", 3: "heatmap_width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes on shape arithmetic: the parity gate covers them
        torch.onnx.export(graph.eval(), (example,), str(path), input_names=[input_name], output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)
