"""TensorFlow (Keras 3) -> ONNX through tf2onnx: raw uint8 frames in, decoded keypoints out.

Same shape as export/torch_onnx.py (``to_onnx(trainer, spec, path, heatmaps)``) and the same
graph contract: one uint8 NHWC input named ``spec.input.name`` with dynamic batch, height and
width; normalisation inside the graph; the output "keypoints" (N, K, 3) = x, y, score decoded
with `posezoo.training.data.decode`'s formula; optionally "heatmaps" (N, K, h, w), the sigmoid
probabilities in the torch layout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from posezoo.runtime.spec import Spec
from posezoo.training.tf.env import keras, tf
from posezoo.training.tf.infer import to_torch_layout
from posezoo.training.tf.train import TFTrainer

OPSET = 17


def deployable(model: keras.Model, spec: Spec, heatmaps: bool = False) -> Any:
    """The model + sigmoid + argmax/locref decode as one traced function of uint8 frames.

    Same formula as `data.decode`: the first maximum cell (TF and ONNX ArgMax, like numpy, take
    the first on ties), its score, the cell position ``c*stride + offset`` plus locref *
    locref_scale. The locref vector is gathered from a flat (N*K*h*w, 2) table, which converts
    to a plain ONNX Gather."""
    stride = float(spec.decode.stride)
    offset = float(spec.decode.offset)
    locref_scale = float(spec.decode.locref_scale)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=spec.input.name)])
    def deploy(frames: Any) -> Any:
        logits, locref = model(tf.cast(frames, tf.float32), training=False)
        heat, loc = to_torch_layout(logits, locref)
        prob = tf.sigmoid(heat)
        shape = tf.shape(prob, out_type=tf.int64)
        n, k, h, w = shape[0], shape[1], shape[2], shape[3]
        flat = tf.reshape(prob, tf.stack([n, k, h * w]))
        idx = tf.argmax(flat, axis=2)  # (N, K) int64
        score = tf.reduce_max(flat, axis=2)
        table = tf.reshape(tf.transpose(tf.reshape(loc, tf.stack([n, k, 2, h * w])), (0, 1, 3, 2)), (-1, 2))
        base = tf.reshape(tf.range(n * k, dtype=tf.int64) * (h * w), tf.stack([n, k]))
        vec = tf.gather(table, base + idx)  # (N, K, 2)
        row = idx // w
        col = idx - row * w
        x = tf.cast(col, tf.float32) * stride + offset + vec[..., 0] * locref_scale
        y = tf.cast(row, tf.float32) * stride + offset + vec[..., 1] * locref_scale
        keypoints = tf.stack([x, y, score], axis=-1)
        return (keypoints, prob) if heatmaps else (keypoints,)

    return deploy


def export_keras(model: keras.Model, spec: Spec, path: Path, heatmaps: bool = False) -> onnx.ModelProto:
    """Convert ``model`` wrapped in the decoder to ``path`` (opset 17, dynamic batch and sizes);
    inputs and outputs get the contract's names and symbolic dimensions."""
    tf2onnx = _tf2onnx()
    fn = deployable(model, spec, heatmaps)
    onnx_model, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=OPSET)
    names = ["keypoints", "heatmaps"] if heatmaps else ["keypoints"]
    k = len(spec.keypoints)
    dims = {"keypoints": ["batch", k, 3], "heatmaps": ["batch", k, "heatmap_height", "heatmap_width"]}
    graph = onnx_model.graph
    if len(graph.input) != 1 or len(graph.output) != len(names):
        raise RuntimeError(f"tf2onnx produced {len(graph.input)} inputs and {len(graph.output)} outputs; "
                           f"expected 1 and {len(names)}")
    _rename(graph, graph.input[0].name, spec.input.name)
    _set_dims(graph.input[0], ["batch", "height", "width", 3])
    for out, name in zip(list(graph.output), names):
        _rename(graph, out.name, name)
        _set_dims(out, dims[name])
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))
    return onnx_model


def to_onnx(trainer: TFTrainer, spec: Spec, path: Path, heatmaps: bool = False) -> dict[str, str]:
    """Convert the trainer's model wrapped in the decoder into ``path``; the versions used."""
    export_keras(trainer.model, spec, path, heatmaps)
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "tf2onnx": _tf2onnx().__version__}


def _tf2onnx() -> Any:
    try:
        import tf2onnx
    except ImportError:
        raise RuntimeError('exporting a TensorFlow run needs tf2onnx, which is not installed: '
                           'pip install "posezoo[tf]"') from None
    return tf2onnx


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename a tensor everywhere it appears (tf2onnx names them after TF tensors: "x:0")."""
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new


def _set_dims(value: onnx.ValueInfoProto, dims: list[int | str]) -> None:
    shape = value.type.tensor_type.shape
    if len(shape.dim) != len(dims):
        raise RuntimeError(f"ONNX tensor {value.name!r} has rank {len(shape.dim)}, expected {len(dims)}")
    for dim, want in zip(shape.dim, dims):
        if isinstance(want, str):
            dim.dim_param = want
        elif dim.HasField("dim_value") and dim.dim_value != want:
            raise RuntimeError(f"ONNX tensor {value.name!r} has shape {[d.dim_value or d.dim_param for d in shape.dim]}, "
                               f"expected {dims}")
        else:
            dim.dim_value = want
