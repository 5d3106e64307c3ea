"""The framework-side inference path: runtime geometry -> torch net -> the reference decoder.

Training evaluates with it and the export parity gate compares ONNX against it, so both see
exactly the pixels the runtime will feed the exported graph.
"""
from __future__ import annotations

import numpy as np
import torch

from posezoo.runtime import geometry
from posezoo.runtime.spec import Spec

from ..data import decode
from .nets import PoseNet


@torch.no_grad()
def predict_frames(net: PoseNet, frames: list[np.ndarray], spec: Spec, color: str = "rgb",
                   batch_size: int = 8) -> np.ndarray:
    """RGB (or BGR) frames of any sizes -> (N, K, 3) keypoints in frame pixels."""
    net.eval()
    out = np.empty((len(frames), len(spec.keypoints), 3), np.float32)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(frame.shape[:2], []).append(i)
    dec = spec.decode
    for (h, w), idx in groups.items():
        plan = geometry.plan(h, w, spec.input, spec.preprocess)
        swap = color.lower() != spec.input.color.lower()
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            batch = np.empty((len(chunk), *plan.tensor, 3), np.uint8)
            for j, i in enumerate(chunk):
                geometry.apply(frames[i], plan, spec.preprocess, swap, batch[j])
            logits, locref = net(torch.from_numpy(batch))
            kps = decode(torch.sigmoid(logits).numpy(), locref.numpy(), dec.stride, dec.offset, dec.locref_scale)
            out[chunk] = plan.to_frame(kps)
    return out
