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

import numpy as np
import onnx

from posezoo.runtime.spec import Spec
from posezoo.training.tf.env import keras, tf
from posezoo.training.tf.infer import extra_layout, to_torch_layout
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


def multi_deployable(model: keras.Model, spec: Spec, heatmaps: bool = False) -> Any:
    """A multi-animal model + in-graph decoding as one traced function (the formulas of
    `training.data.peak_candidates` / `edge_affinities`, as export/torch_onnx.py's
    `MultiDeployable`): keypoints, candidates, affinities (+ identity, heatmaps)."""
    assert spec.multi is not None
    stride, offset = float(spec.decode.stride), float(spec.decode.offset)
    locref_scale, k = float(spec.decode.locref_scale), int(spec.multi.candidates)
    n_keypoints, identity = len(spec.keypoints), bool(spec.multi.identity)
    index = {name: i for i, name in enumerate(spec.keypoints)}
    # Plain Python values, made constants inside the traced function: tensors captured from
    # outside would become extra graph inputs in tf2onnx.
    src_list = [index[a] for a, _ in spec.multi.graph]
    dst_list = [index[b] for _, b in spec.multi.graph]
    step_list = np.linspace(0.0, 1.0, int(spec.multi.paf_samples), dtype=np.float32).tolist()
    heads = getattr(model, "heads", {})

    def cells(xy: Any, h: Any, w: Any) -> Any:
        col = tf.floor((xy[..., 0] - offset) / stride + 0.5)
        row = tf.floor((xy[..., 1] - offset) / stride + 0.5)
        col = tf.minimum(tf.maximum(col, 0.0), tf.cast(w - 1, tf.float32))
        row = tf.minimum(tf.maximum(row, 0.0), tf.cast(h - 1, tf.float32))
        return tf.cast(row * tf.cast(w, tf.float32) + col, tf.int64)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=spec.input.name)])
    def deploy(frames: Any) -> Any:
        logits, locref, *extra = model(tf.cast(frames, tf.float32), training=False)
        src_idx, dst_idx = tf.constant(src_list, tf.int64), tf.constant(dst_list, tf.int64)
        steps = tf.constant(step_list, tf.float32)
        prob_nhwc = tf.sigmoid(logits)
        pooled = tf.nn.max_pool2d(prob_nhwc, 3, 1, "SAME")
        peaks_nhwc = tf.where(tf.equal(prob_nhwc, pooled), prob_nhwc, tf.zeros_like(prob_nhwc))
        heat, loc = to_torch_layout(logits, locref)
        paf, *ident = extra_layout(extra, heads)
        shape = tf.shape(heat, out_type=tf.int64)
        n, c, h, w = shape[0], shape[1], shape[2], shape[3]
        peaks = tf.reshape(tf.transpose(peaks_nhwc, (0, 3, 1, 2)), tf.stack([n, c, h * w]))
        score, idx32 = tf.math.top_k(peaks, k)  # (N, C, k), descending, lower index first on ties
        idx = tf.cast(idx32, tf.int64)
        table = tf.reshape(tf.transpose(tf.reshape(loc, tf.stack([n, c, 2, h * w])), (0, 1, 3, 2)), (-1, 2))
        base = tf.reshape(tf.range(n * c, dtype=tf.int64) * (h * w), tf.stack([n, c, 1]))
        vec = tf.gather(table, base + idx)  # (N, C, k, 2)
        row = idx // w
        col = idx - row * w
        x = tf.cast(col, tf.float32) * stride + offset + vec[..., 0] * locref_scale
        y = tf.cast(row, tf.float32) * stride + offset + vec[..., 1] * locref_scale
        candidates = tf.stack([x, y, score], axis=-1)
        keypoints = candidates[:, :n_keypoints, 0]

        xy = candidates[..., :2]
        src = tf.gather(xy, src_idx, axis=1)[:, :, :, None]  # (N, E, k, 1, 2)
        d = tf.gather(xy, dst_idx, axis=1)[:, :, None] - src  # (N, E, k, k, 2)
        unit = d / (tf.sqrt(tf.reduce_sum(d * d, -1, keepdims=True)) + 1e-6)
        points = src[..., None, :] + steps[:, None] * d[..., None, :]  # (N, E, k, k, S, 2)
        e = tf.shape(paf, out_type=tf.int64)[1]
        at = tf.reshape(cells(points, h, w), tf.stack([n, e, -1]))
        field_table = tf.reshape(tf.transpose(tf.reshape(paf, tf.stack([n, e, 2, h * w])), (0, 1, 3, 2)), (-1, 2))
        offsets = tf.reshape(tf.range(n * e, dtype=tf.int64) * (h * w), tf.stack([n, e, 1]))
        field = tf.reshape(tf.gather(field_table, offsets + at), tf.shape(points))
        affinities = tf.reduce_mean(field[..., 0] * unit[..., None, 0] + field[..., 1] * unit[..., None, 1], -1)
        out = [keypoints, candidates, affinities]
        if identity:
            prob = tf.nn.softmax(ident[0], axis=1)  # (N, I, h, w)
            i = tf.shape(prob, out_type=tf.int64)[1]
            id_table = tf.reshape(tf.transpose(tf.reshape(prob, tf.stack([n, i, h * w])), (0, 2, 1)), tf.stack([-1, i]))
            where = tf.reshape(tf.range(n, dtype=tf.int64) * (h * w), tf.stack([n, 1, 1])) + cells(xy, h, w)
            out.append(tf.gather(id_table, where))  # (N, C, k, I)
        if heatmaps:
            out.append(tf.sigmoid(heat))
        return tuple(out)

    return deploy


def export_keras(model: keras.Model, spec: Spec, path: Path, heatmaps: bool = False) -> onnx.ModelProto:
    """Convert ``model`` wrapped in the decoder to ``path`` (opset 17, dynamic batch and sizes);
    inputs and outputs get the contract's names and symbolic dimensions."""
    tf2onnx = _tf2onnx()
    multi = spec.multi
    fn = (multi_deployable if multi is not None else deployable)(model, spec, heatmaps)
    onnx_model, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=OPSET)
    names = ["keypoints"] + (["candidates", "affinities"] if multi else []) \
        + (["identity"] if multi and multi.identity else []) + (["heatmaps"] if heatmaps else [])
    k = len(spec.keypoints)
    c = k + len(spec.unique_keypoints)
    dims: dict[str, list[Any]] = {"keypoints": ["batch", k, 3], "heatmaps": ["batch", c, "heatmap_height", "heatmap_width"]}
    if multi is not None:
        n, e, i = multi.candidates, len(multi.graph), len(multi.individuals)
        dims |= {"candidates": ["batch", c, n, 3], "affinities": ["batch", e, n, n], "identity": ["batch", c, n, i]}
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
