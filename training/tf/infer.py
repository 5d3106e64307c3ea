"""The framework-side inference path: runtime geometry -> Keras model -> the reference decoder.

Training evaluates with it and the export parity gate compares ONNX against it, so both see
exactly the pixels the runtime will feed the exported graph (as training/torch/infer.py).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from posezoo.runtime import geometry
from posezoo.runtime.spec import Spec

from ..data import decode
from .env import keras, tf


def to_torch_layout(logits: Any, locref: Any) -> tuple[Any, Any]:
    """NHWC model outputs -> (N, K, h, w) and (N, K, 2, h, w), the layout `data.decode` and
    the targets use; works on tf tensors inside graphs."""
    shape = tf.shape(logits)
    n, h, w, k = shape[0], shape[1], shape[2], shape[3]
    heat = tf.transpose(logits, (0, 3, 1, 2))
    loc = tf.transpose(tf.reshape(locref, (n, h, w, k, 2)), (0, 3, 4, 1, 2))
    return heat, loc


def forward_fn(model: keras.Model) -> Any:
    """A traced inference function: uint8 frames of any batch and size -> (probabilities,
    locref) in the torch layout. One trace serves every shape (dynamic input signature)."""

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def forward(frames: Any) -> tuple[Any, Any]:
        logits, locref = model(tf.cast(frames, tf.float32), training=False)
        heat, loc = to_torch_layout(logits, locref)
        return tf.sigmoid(heat), loc

    return forward


def predict_frames(model: keras.Model, frames: list[np.ndarray], spec: Spec, color: str = "rgb",
                   batch_size: int = 8, forward: Any = None) -> np.ndarray:
    """RGB (or BGR) frames of any sizes -> (N, K, 3) keypoints in frame pixels."""
    forward = forward or forward_fn(model)
    out = np.empty((len(frames), len(spec.keypoints), 3), np.float32)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(frame.shape[:2], []).append(i)
    dec = spec.decode
    swap = color.lower() != spec.input.color.lower()
    for (h, w), idx in groups.items():
        plan = geometry.plan(h, w, spec.input, spec.preprocess)
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            batch = np.empty((len(chunk), *plan.tensor, 3), np.uint8)
            for j, i in enumerate(chunk):
                geometry.apply(frames[i], plan, spec.preprocess, swap, batch[j])
            heat, loc = forward(tf.constant(batch))
            kps = decode(heat.numpy(), loc.numpy(), dec.stride, dec.offset, dec.locref_scale)
            out[chunk] = plan.to_frame(kps)
    return out
