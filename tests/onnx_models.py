"""Tiny real ONNX pose models for tests, built with onnx.helper.

The graph's keypoint i is the brightest pixel of input channel i (score = value / 255), so a test
that paints a pure-colour dot knows exactly where every keypoint must come out: it checks the
host-side geometry, colour order and batching of the runtime end to end.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from posezoo.runtime.spec import InputSpec, PreprocessSpec, Spec, embed_spec

CHANNELS = ("red", "green", "blue")


def brightest_pixel_graph(input_name: str = "frames", output_name: str = "keypoints",
                          size: tuple[int, int] | None = None, batch: int | None = None) -> onnx.ModelProto:
    h, w = size if size else ("height", "width")
    n = batch if batch else "batch"
    x = helper.make_tensor_value_info(input_name, TensorProto.UINT8, [n, h, w, 3])
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [n, 3, 3])
    const = lambda name, vals: helper.make_node(  # noqa: E731
        "Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [len(vals)], vals))
    nodes = [
        helper.make_node("Cast", [input_name], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["chw"], perm=[0, 3, 1, 2]),
        const("flat_shape", [0, 3, -1]),
        helper.make_node("Reshape", ["chw", "flat_shape"], ["flat"]),
        helper.make_node("ArgMax", ["flat"], ["idx"], axis=2, keepdims=1),
        helper.make_node("ReduceMax", ["flat", "axis2"], ["peak"], keepdims=1),
        const("axis2", [2]),
        helper.make_node("Shape", [input_name], ["shape"]),
        const("two", [2]), const("three", [3]),
        helper.make_node("Slice", ["shape", "two", "three"], ["width"]),
        helper.make_node("Mod", ["idx", "width"], ["xi"]),
        helper.make_node("Div", ["idx", "width"], ["yi"]),
        helper.make_node("Cast", ["xi"], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["yi"], ["yf"], to=TensorProto.FLOAT),
        helper.make_node("Constant", [], ["inv255"], value=helper.make_tensor("inv255", TensorProto.FLOAT, [], [1 / 255])),
        helper.make_node("Mul", ["peak", "inv255"], ["score"]),
        helper.make_node("Concat", ["xf", "yf", "score"], [output_name], axis=2),
    ]
    # Constants must precede their users in a valid graph.
    nodes.sort(key=lambda node: node.op_type != "Constant")
    graph = helper.make_graph(nodes, "brightest_pixel", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def make_spec(**overrides: Any) -> Spec:
    spec = Spec(name=overrides.pop("name", "brightest-pixel"), keypoints=list(CHANNELS),
                skeleton=[["red", "green"]], pcutoff=0.5,
                input=overrides.pop("input", InputSpec()),
                preprocess=overrides.pop("preprocess", PreprocessSpec(resize="none")),
                provenance={"backend": "test"})
    for key, value in overrides.items():
        setattr(spec, key, value)
    return spec


def make_pose_onnx(path: str | Path, spec: Spec | None = None, size: tuple[int, int] | None = None,
                   batch: int | None = None) -> Path:
    """Write a brightest-pixel model with ``spec`` embedded (default: dynamic size, RGB, no resize)."""
    spec = spec or make_spec()
    if size is not None and spec.input.size is None:
        spec.input = InputSpec(size=list(size), dynamic_axes=["batch"], color=spec.input.color)
    model = brightest_pixel_graph(spec.input.name, spec.outputs["keypoints"].name, size, batch)
    embed_spec(model, spec)
    path = Path(path)
    onnx.save(model, path)
    return path


def paint_dots(frame: np.ndarray, points_rgb: dict[str, tuple[int, int]], block: int = 1,
               color: str = "bgr") -> np.ndarray:
    """Paint a pure red/green/blue ``block`` x ``block`` square with its top-left at each point."""
    order = {"red": 0, "green": 1, "blue": 2}
    for name, (x, y) in points_rgb.items():
        channel = order[name] if color == "rgb" else 2 - order[name]
        frame[y:y + block, x:x + block] = 0
        frame[y:y + block, x:x + block, channel] = 255
    return frame
