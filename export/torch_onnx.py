"""PyTorch -> ONNX: raw uint8 frames in, decoded keypoints (N, K, 3) out.

Same shape as export/tf_onnx.py: ``to_onnx(trainer, spec, path, heatmaps)`` writes the graph of
a restored `Trainer` and returns the framework versions used.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from posezoo.runtime.spec import Spec
from posezoo.training.torch.train import TorchTrainer

OPSET = 17


class Deployable(nn.Module):
    """Net + sigmoid + argmax/locref decode as standard ONNX ops (ArgMax, GatherElements, Div, Mod).

    The formula is the one `posezoo.training.data.decode` implements in numpy: the first maximum
    cell, its score, cell location (c*stride + offset) plus locref * locref_scale.
    """

    def __init__(self, net: nn.Module, spec: Spec, heatmaps: bool = False) -> None:
        super().__init__()
        self.net = net
        self.stride = float(spec.decode.stride)
        self.offset = float(spec.decode.offset)
        self.locref_scale = float(spec.decode.locref_scale)
        self.heatmaps = heatmaps

    def forward(self, frames: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits, locref = self.net(frames)
        heat = torch.sigmoid(logits)
        n, k, h, w = heat.shape
        flat = heat.reshape(n, k, -1)
        score, idx = flat.max(dim=2)  # (N, K): first maximum, like numpy.argmax
        loc = locref.reshape(n, k, 2, -1)
        vec = torch.gather(loc, 3, idx[:, :, None, None].expand(n, k, 2, 1))[..., 0]
        width = torch.tensor(w, dtype=idx.dtype) if isinstance(w, int) else w
        row = torch.div(idx, width, rounding_mode="floor")
        col = idx - row * width
        x = col.to(heat.dtype) * self.stride + self.offset + vec[..., 0] * self.locref_scale
        y = row.to(heat.dtype) * self.stride + self.offset + vec[..., 1] * self.locref_scale
        keypoints = torch.stack([x, y, score], dim=-1)
        return (keypoints, heat) if self.heatmaps else keypoints


class MultiDeployable(nn.Module):
    """A multi-animal net + its in-graph decoding, the formulas of `posezoo.training.data`'s
    `peak_candidates` and `edge_affinities` (and the identity gather of `training.predict`):
    sigmoid -> 3x3 max-pool non-maximum suppression -> top-k peaks per keypoint, refined by
    locref -> candidates (N, C, k, 3); the part-affinity line integral of every candidate pair
    of each edge -> affinities (N, E, k, k); keypoints (N, K, 3) = each keypoint's best peak."""

    def __init__(self, net: nn.Module, spec: Spec, heatmaps: bool = False) -> None:
        super().__init__()
        assert spec.multi is not None
        self.net = net
        self.stride = float(spec.decode.stride)
        self.offset = float(spec.decode.offset)
        self.locref_scale = float(spec.decode.locref_scale)
        self.k = int(spec.multi.candidates)
        self.n_keypoints = len(spec.keypoints)
        index = {name: i for i, name in enumerate(spec.keypoints)}
        self.register_buffer("src", torch.tensor([index[a] for a, _ in spec.multi.graph], dtype=torch.long))
        self.register_buffer("dst", torch.tensor([index[b] for _, b in spec.multi.graph], dtype=torch.long))
        self.register_buffer("t", torch.linspace(0.0, 1.0, int(spec.multi.paf_samples)))
        self.identity = bool(spec.multi.identity)
        self.heatmaps = heatmaps

    def _cells(self, xy: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Flat index of the heatmap cell nearest to input-pixel points (..., 2), clamped inside."""
        col = torch.floor((xy[..., 0] - self.offset) / self.stride + 0.5)
        row = torch.floor((xy[..., 1] - self.offset) / self.stride + 0.5)
        col = torch.minimum(torch.clamp(col, min=0.0), (w - 1).to(col.dtype))
        row = torch.minimum(torch.clamp(row, min=0.0), (h - 1).to(row.dtype))
        return (row * w.to(row.dtype) + col).to(torch.long)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, locref, paf, *extra = self.net(frames)
        heat = torch.sigmoid(logits)
        n, c = heat.shape[0], heat.shape[1]
        # Sizes are tensors while tracing (so the graph keeps them dynamic), ints in eager mode.
        h, w = (torch.tensor(v) if isinstance(v, int) else v for v in heat.shape[2:])
        pooled = F.max_pool2d(heat, 3, stride=1, padding=1)
        peaks = torch.where(heat == pooled, heat, torch.zeros_like(heat)).reshape(n, c, -1)
        score, idx = torch.topk(peaks, self.k, dim=2)  # (N, C, k), by descending score
        loc = torch.gather(locref.reshape(n, c, 2, -1), 3, idx[:, :, None, :].expand(n, c, 2, self.k))
        row = torch.div(idx, w, rounding_mode="floor")
        col = idx - row * w
        x = col.to(heat.dtype) * self.stride + self.offset + loc[:, :, 0] * self.locref_scale
        y = row.to(heat.dtype) * self.stride + self.offset + loc[:, :, 1] * self.locref_scale
        candidates = torch.stack([x, y, score], dim=-1)
        keypoints = candidates[:, :self.n_keypoints, 0]

        xy = candidates[..., :2]
        src = xy[:, self.src][:, :, :, None]  # (N, E, k, 1, 2)
        vec = xy[:, self.dst][:, :, None] - src  # (N, E, k, k, 2)
        unit = vec / (torch.sqrt((vec * vec).sum(-1, keepdim=True)) + 1e-6)
        points = src[..., None, :] + self.t[:, None] * vec[..., None, :]  # (N, E, k, k, S, 2)
        e = paf.shape[1]
        cells = self._cells(points, h, w).reshape(n, e, 1, -1)
        field = torch.gather(paf.reshape(n, e, 2, -1), 3, cells.expand(n, e, 2, cells.shape[-1]))
        field = field.reshape(n, e, 2, self.k, self.k, -1)
        affinities = (field[:, :, 0] * unit[..., 0, None] + field[:, :, 1] * unit[..., 1, None]).mean(-1)
        out = [keypoints, candidates, affinities]
        if self.identity:
            prob = torch.softmax(extra[0], 1)
            i = prob.shape[1]
            at = self._cells(xy, h, w).reshape(n, 1, -1)
            ident = torch.gather(prob.reshape(n, i, -1), 2, at.expand(n, i, at.shape[-1]))
            out.append(ident.reshape(n, i, c, self.k).permute(0, 2, 3, 1))
        if self.heatmaps:
            out.append(heat)
        return tuple(out)


def to_onnx(trainer: TorchTrainer, spec: Spec, path: Path, heatmaps: bool = False) -> dict[str, str]:
    """Trace the trainer's network wrapped in the decoder into ``path`` (dynamic batch and size)."""
    export_net(trainer.net, spec, path, heatmaps)
    return {"torch": torch.__version__}


def export_net(net: nn.Module, spec: Spec, path: Path, heatmaps: bool = False,
               example_hw: tuple[int, int] = (256, 320)) -> None:
    """Trace ``net`` wrapped in the decoder into ``path`` with dynamic batch and spatial axes."""
    multi = spec.multi is not None
    model = (MultiDeployable if multi else Deployable)(net.eval(), spec, heatmaps).eval()
    example = torch.zeros((1, *example_hw, 3), dtype=torch.uint8)
    outputs = ["keypoints"] + (["candidates", "affinities"] if multi else []) \
        + (["identity"] if multi and spec.multi.identity else []) + (["heatmaps"] if heatmaps else [])  # type: ignore[union-attr]
    dynamic = {spec.input.name: {0: "batch", 1: "height", 2: "width"}, **{name: {0: "batch"} for name in outputs}}
    if heatmaps:
        dynamic["heatmaps"] = {0: "batch", 2: "heatmap_height", 3: "heatmap_width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes about shape arithmetic: covered by parity
        torch.onnx.export(model, (example,), str(path), input_names=[spec.input.name], output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)
