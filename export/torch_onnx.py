"""PyTorch -> ONNX: raw uint8 frames in, decoded keypoints (N, K, 3) out.

Same shape as export/tf_onnx.py: ``to_onnx(trainer, spec, path, heatmaps)`` writes the graph of
a restored `Trainer` and returns the framework versions used.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
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


def to_onnx(trainer: TorchTrainer, spec: Spec, path: Path, heatmaps: bool = False) -> dict[str, str]:
    """Trace the trainer's network wrapped in the decoder into ``path`` (dynamic batch and size)."""
    export_net(trainer.net, spec, path, heatmaps)
    return {"torch": torch.__version__}


def export_net(net: nn.Module, spec: Spec, path: Path, heatmaps: bool = False,
               example_hw: tuple[int, int] = (256, 320)) -> None:
    """Trace ``net`` wrapped in the decoder into ``path`` with dynamic batch and spatial axes."""
    model = Deployable(net.eval(), spec, heatmaps).eval()
    example = torch.zeros((1, *example_hw, 3), dtype=torch.uint8)
    outputs = ["keypoints", "heatmaps"] if heatmaps else ["keypoints"]
    dynamic = {spec.input.name: {0: "batch", 1: "height", 2: "width"}, "keypoints": {0: "batch"}}
    if heatmaps:
        dynamic["heatmaps"] = {0: "batch", 2: "heatmap_height", 3: "heatmap_width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer notes about shape arithmetic: covered by parity
        torch.onnx.export(model, (example,), str(path), input_names=[spec.input.name], output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)
