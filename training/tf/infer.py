"""The Keras model's outputs in the layout the shared pipeline uses (targets, decoder, and
`training.predict`'s forward pass): NHWC network outputs -> (N, K, h, w) and (N, K, 2, h, w)."""
from __future__ import annotations

from typing import Any

from .env import keras, tf


def to_torch_layout(logits: Any, locref: Any) -> tuple[Any, Any]:
    """NHWC model outputs -> (N, K, h, w) and (N, K, 2, h, w), the layout `data.decode` and
    the targets use; works on tf tensors inside graphs."""
    shape = tf.shape(logits)
    n, h, w, k = shape[0], shape[1], shape[2], shape[3]
    heat = tf.transpose(logits, (0, 3, 1, 2))
    loc = tf.transpose(tf.reshape(locref, (n, h, w, k, 2)), (0, 3, 4, 1, 2))
    return heat, loc


def extra_layout(outputs: Any, heads: dict[str, int]) -> list[Any]:
    """A multi-animal model's extra NHWC outputs in the torch layout: part-affinity fields
    (N, E, 2, h, w) and identity logits (N, I, h, w)."""
    out = []
    for name, value in zip(heads, outputs):
        if name == "paf":
            shape = tf.shape(value)
            value = tf.reshape(value, tf.stack([shape[0], shape[1], shape[2], shape[3] // 2, 2]))
            out.append(tf.transpose(value, (0, 3, 4, 1, 2)))
        else:
            out.append(tf.transpose(value, (0, 3, 1, 2)))
    return out


def forward_fn(model: keras.Model) -> Any:
    """A traced inference function: uint8 frames of any batch and size -> (probabilities,
    locref[, part-affinity fields, identity probabilities]) in the torch layout. One trace
    serves every shape (dynamic input signature)."""
    heads = getattr(model, "heads", {})

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def forward(frames: Any) -> tuple[Any, ...]:
        logits, locref, *extra = model(tf.cast(frames, tf.float32), training=False)
        heat, loc = to_torch_layout(logits, locref)
        more = extra_layout(extra, heads)
        more = [tf.nn.softmax(v, axis=1) if name == "identity" else v for name, v in zip(heads, more)]
        return (tf.sigmoid(heat), loc, *more)

    return forward
