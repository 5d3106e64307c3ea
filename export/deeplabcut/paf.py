"""DeepLabCut 3's bottom-up multi-animal models (part-affinity fields) as posezoo multi-animal graphs.

The network (heads.py's ``DLCRNetHead`` on a timm ResNet, HRNet or DeepLabCut's multi-scale
``DLCRNet`` backbone, timm_nets.py) is rebuilt with DeepLabCut's module names; its
``PartAffinityFieldPredictor`` up to assembly moves inside the graph (here), so the file ends in posezoo's multi-animal contract
(``candidates``, ``affinities``; `posezoo.runtime.spec.MultiAnimalSpec`) and the runtime's
assembler (DeepLabCut's ``Assembler`` with its defaults) groups the animals. The predictor's
arithmetic, as DeepLabCut 3 does it:

- scores: sigmoid, then a (2r+1)^2 Gaussian filter (sigma, zero padding; r = ``nms_radius``), then
  peaks = cells equal to the r x r max-pool of the filtered map and >= 0.01;
- positions: ``cell * stride + floor(stride / 2) + locref * locref_stdev`` (x of keypoint k in
  locref channel 2k, y in 2k + 1);
- affinity of a pair of peaks along an edge: 10 points evenly spaced from one peak's cell to the
  other's, truncated to whole cells; the field there integrated with the trapezoid rule (x
  component over columns, y over rows); the norm of that integral over the cells' distance,
  rounded to 3 decimals. Only ``edges_to_keep`` are used; field channels follow ``graph``.

DeepLabCut keeps every peak; its assembler then uses each keypoint's ``num_animals`` best, so the
graph keeps that many per keypoint. Unique bodyparts come from a head of their own, decoded as a
single-animal ``HeatmapPredictor`` (argmax + locref at that head's stride) into the first
candidate of their rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .graph import Decode, DeepLabCutGraph, Normalize, argmax_decode

PEAK_THRESHOLD = 0.01  # DeepLabCut's find_local_peak_indices_maxpool_nms threshold
PAF_POINTS = 10
AFFINITY_DECIMALS = 3


@dataclass(frozen=True)
class PafDecode:
    """The ``PartAffinityFieldPredictor`` settings the graph bakes in."""

    stride: float
    locref_std: float
    sigmoid: bool
    clip: bool
    nms_radius: int
    sigma: float
    edges: tuple[tuple[int, int], ...]  # the kept edges (keypoint indices), in the spec's graph order
    channels: tuple[int, ...]  # each kept edge's field (index into the full graph)
    candidates: int  # peaks kept per keypoint (the assembler uses num_animals)
    unique: Decode | None = None  # the unique-bodypart head's HeatmapPredictor (one argmax per map)

    @property
    def offset(self) -> float:
        return float(math.floor(self.stride / 2))


def gaussian_kernel(sigma: float, size: int) -> np.ndarray:
    """DeepLabCut's smoothing kernel: the outer product of a softmax of -k^2 / (2 sigma^2)."""
    k = np.arange(-size // 2 + 1, size // 2 + 1, dtype=np.float32) ** 2
    e = np.exp(-k / (2 * sigma ** 2) - np.max(-k / (2 * sigma ** 2)))
    g = (e / e.sum()).astype(np.float32)
    return np.outer(g, g).astype(np.float32)


class DeepLabCutPafGraph(DeepLabCutGraph):
    """uint8 NHWC frames -> keypoints (N, K, 3), candidates (N, K + unique, k, 3), affinities (N, E, k, k)."""

    def __init__(self, net: nn.Module, normalize: Normalize, decode: PafDecode, heatmaps: bool = False) -> None:
        super().__init__(net, normalize, decode, heatmaps)  # type: ignore[arg-type]
        self.paf = decode
        size = decode.nms_radius * 2 + 1
        self.register_buffer("kernel", torch.from_numpy(gaussian_kernel(decode.sigma, size))[None, None])
        self.register_buffer("src", torch.tensor([s for s, _ in decode.edges], dtype=torch.long))
        self.register_buffer("dst", torch.tensor([t for _, t in decode.edges], dtype=torch.long))
        self.register_buffer("fields", torch.tensor(decode.channels, dtype=torch.long))
        self.register_buffer("t", torch.linspace(0.0, 1.0, PAF_POINTS))

    @property
    def output_names(self) -> list[str]:
        return ["keypoints", "candidates", "affinities"] + (["heatmaps"] if self.heatmaps else [])

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        d = self.paf
        raw, locref, paf, *unique_maps = self.maps(frames)  # type: ignore[misc]
        heat = torch.sigmoid(raw) if d.sigmoid else raw
        n, c = heat.shape[0], heat.shape[1]
        h, w = (torch.tensor(v) if isinstance(v, int) else v for v in heat.shape[2:])
        smooth = F.conv2d(heat.reshape(-1, 1, *heat.shape[2:]), self.kernel, padding=d.nms_radius).reshape(heat.shape)
        pooled = F.max_pool2d(smooth, d.nms_radius, stride=1, padding=d.nms_radius // 2)
        peaks = torch.where((smooth == pooled) & (smooth >= PEAK_THRESHOLD), smooth, torch.zeros_like(smooth))
        score, idx = torch.topk(peaks.reshape(n, c, -1), d.candidates, dim=2)
        row = torch.div(idx, w, rounding_mode="floor")
        col = idx - row * w
        loc = torch.gather(locref.reshape(n, c, 2, -1), 3, idx[:, :, None, :].expand(n, c, 2, d.candidates))
        x = col.to(heat.dtype) * d.stride + d.offset + loc[:, :, 0] * d.locref_std
        y = row.to(heat.dtype) * d.stride + d.offset + loc[:, :, 1] * d.locref_std
        if d.clip:
            score = torch.clamp(score, 0.0, 1.0)
        candidates = torch.stack([x, y, score], dim=-1)
        keypoints = candidates[:, :, 0]
        if d.unique is not None:  # unique keypoints: the head's argmax as the first candidate, no others
            best = argmax_decode(unique_maps[0], unique_maps[1], d.unique)[:, :, None]
            rows = [best] + ([best[:, :, [0] * (d.candidates - 1)] * 0.0] if d.candidates > 1 else [])
            candidates = torch.cat([candidates, torch.cat(rows, dim=2)], dim=1)
        out = [keypoints, candidates, self._affinities(paf, row, col, h, w)]
        if self.heatmaps:
            out.append(heat)
        return tuple(out)

    def _affinities(self, paf: torch.Tensor, row: torch.Tensor, col: torch.Tensor, h: torch.Tensor,
                    w: torch.Tensor) -> torch.Tensor:
        """(N, E, k, k) DeepLabCut's line integral between the peak cells of each kept edge."""
        n, k = row.shape[0], row.shape[2]
        cells = torch.stack([row, col], dim=-1).to(torch.float32)  # (N, K, k, 2) as (row, col)
        src = cells[:, self.src][:, :, :, None]  # (N, E, k, 1, 2)
        dst = cells[:, self.dst][:, :, None]  # (N, E, 1, k, 2)
        vec = dst - src
        length = torch.sqrt((vec * vec).sum(-1)) + float(np.spacing(np.float32(1)))
        points = (src[..., None, :] + self.t[:, None] * vec[..., None, :]).to(torch.int32).to(torch.long)
        r = torch.minimum(torch.clamp(points[..., 0], min=0), (h - 1).to(torch.long))
        q = torch.minimum(torch.clamp(points[..., 1], min=0), (w - 1).to(torch.long))
        e = self.src.shape[0]
        flat = (r * w.to(torch.long) + q).reshape(n, e, 1, -1)  # (N, E, 1, k*k*P)
        field = paf.reshape(n, paf.shape[1] // 2, 2, -1)[:, self.fields]
        sampled = torch.gather(field, 3, flat.expand(n, e, 2, flat.shape[-1])).reshape(n, e, 2, k, k, -1)
        rows, cols = r.to(torch.float32), q.to(torch.float32)
        integral_x = (((cols[..., 1:] - cols[..., :-1]) * (sampled[:, :, 0, ..., :-1] + sampled[:, :, 0, ..., 1:]))
                      / 2.0).sum(-1)
        integral_y = (((rows[..., 1:] - rows[..., :-1]) * (sampled[:, :, 1, ..., :-1] + sampled[:, :, 1, ..., 1:]))
                      / 2.0).sum(-1)
        affinity = torch.sqrt(integral_x * integral_x + integral_y * integral_y) / length
        scale = float(10 ** AFFINITY_DECIMALS)
        return torch.round(affinity * scale) / scale
