"""Smaller/faster variants of an exported fp32 model: fp16 (GPU) and static int8 (CPU)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from posezoo.runtime.model import PoseModel
from posezoo.training.run import Run

CALIBRATION_FRAMES = 32
# Only the convolution stack is quantized: the decode tail (sigmoid, argmax, locref arithmetic)
# stays in float so keypoint coordinates keep their sub-pixel precision.
INT8_OPS = ["Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Relu", "Clip", "Concat", "Resize",
            "MaxPool", "AveragePool", "GlobalAveragePool"]


#: int8 layouts: QDQ (QuantizeLinear/DequantizeLinear pairs that onnxruntime fuses into int8
#: kernels) or QOperator (QLinearConv & co. written out); activations u8 or s8, weights s8.
#: The default is the measured best on an AVX-512 VNNI CPU (benchmarks/int8_formats.py).
INT8_FORMATS = ("qdq", "qoperator")
INT8_DEFAULT = ("qdq", "u8")


def calibration_frames(run: Run) -> list[np.ndarray]:
    """The frames int8 is calibrated on: the run's training frames (its test frames if none)."""
    idx = list(run.split.train)[:CALIBRATION_FRAMES] or list(run.split.test)[:CALIBRATION_FRAMES]
    return run.frames(idx)


def make_variant(name: str, fp32_path: Path, calibration: Sequence[np.ndarray], workdir: Path, *,
                 float_heads: bool = False) -> onnx.ModelProto:
    """The ``name`` variant ("fp16" or "int8", calibrated on ``calibration``, RGB frames) of a model;
    ``float_heads`` keeps an int8 model's head convolutions in float (see `quantize_int8`)."""
    if name == "fp16":
        return fp16(fp32_path)
    if name == "int8":
        return quantize_int8(fp32_path, calibration, workdir, quant_format=INT8_DEFAULT[0],
                             activations=INT8_DEFAULT[1], float_heads=float_heads)
    raise ValueError(f"unknown variant {name!r} (fp16 or int8)")


def is_multi_animal(model: onnx.ModelProto) -> bool:
    return any(out.name == "candidates" for out in model.graph.output)


def fp16(fp32_path: Path) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(fp32_path)
    # Keep uint8 frames in and float32 keypoints out; decode ops stay fp32 for exact coordinates.
    block = list(DEFAULT_OP_BLOCK_LIST) + ["ArgMax", "ReduceMax", "GatherElements", "Sigmoid", "Div", "Mod"]
    if is_multi_animal(model):
        return convert_float_to_float16(model, keep_io_types=True, op_block_list=block,
                                        node_block_list=decode_nodes(model))
    return convert_float_to_float16(model, keep_io_types=True, op_block_list=block)


def decode_nodes(model: onnx.ModelProto, heads: bool = False) -> list[str]:
    """Names of the nodes after the network proper: everything downstream of the head
    convolutions (the last convolutions before the outputs), i.e. the in-graph decoding; with
    ``heads`` the head convolutions too (cheap 1x1 convolutions whose outputs, part-affinity
    fields above all, lose too much in 8 bits: measured +2.8 px matched RMSE otherwise)."""
    graph = model.graph
    for i, node in enumerate(graph.node):  # quantization and fp16 conversion need names
        if not node.name:
            node.name = f"posezoo_node_{i}"
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    weights = {init.name: list(init.dims) for init in graph.initializer}

    def is_conv(node: onnx.NodeProto) -> bool:
        # a 1-in, 1-out channel convolution is a fixed filter of the decoding (DeepLabCut's
        # Gaussian smoothing of the heatmaps), not a layer of the network
        return node.op_type in ("Conv", "ConvTranspose") and weights.get(node.input[1], [0, 0])[:2] != [1, 1]

    def downstream(start: onnx.NodeProto) -> list[onnx.NodeProto]:
        seen, stack, out = {start.name}, [start], []
        while stack:
            for name in stack.pop().output:
                for nxt in consumers.get(name, []):
                    if nxt.name not in seen:
                        seen.add(nxt.name)
                        stack.append(nxt)
                        out.append(nxt)
        return out

    decode: set[str] = set()
    for node in graph.node:
        if is_conv(node):
            after = downstream(node)
            if not any(is_conv(n) for n in after):  # a head convolution
                decode.update(n.name for n in after)
                if heads:
                    decode.add(node.name)
    return sorted(decode)


def quantize_int8(fp32_path: Path, calibration: Sequence[np.ndarray], workdir: Path, *, quant_format: str = "qdq",
                  activations: str = "u8", float_heads: bool = False) -> onnx.ModelProto:
    """Static int8, per-channel weights, calibrated (min/max) on ``calibration`` (RGB frames).
    A multi-animal model's head convolutions stay float, and with ``float_heads`` a single-animal
    model's too (DeepLabCut's transposed-convolution heads: quantized, a 1-epoch resnet_50 moved
    by 1.54 px median on 500 openfield frames, in float by 0.13 px, at the same speed)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if quant_format not in INT8_FORMATS or activations not in ("u8", "s8"):
        raise ValueError(f"int8 format must be one of {INT8_FORMATS} with u8 or s8 activations, "
                         f"got {quant_format!r}, {activations!r}")

    model = PoseModel.load(fp32_path, device="cpu")
    # Calibration tensors are prepared exactly as the runtime prepares them.
    tensors = [model.prepare([f], color="rgb").tensor for f in calibration[:CALIBRATION_FRAMES]]
    input_name = model.spec.input.name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(tensors)

        def get_next(self) -> dict[str, np.ndarray] | None:
            tensor = next(self._it, None)
            return None if tensor is None else {input_name: tensor}

    prepped = workdir / "int8-pre.onnx"
    quantized = workdir / "int8-raw.onnx"
    stripped = onnx.load(fp32_path)
    del stripped.metadata_props[:]
    onnx.save(stripped, workdir / "int8-src.onnx")
    quant_pre_process(str(workdir / "int8-src.onnx"), str(prepped), skip_symbolic_shape=True)
    # The decoding (peak max-pool, affinity sums) and the heads stay float where they lose most in 8 bits.
    prepped_model = onnx.load(prepped)
    exclude = decode_nodes(prepped_model, heads=True) if float_heads or is_multi_animal(prepped_model) else []
    if exclude:
        onnx.save(prepped_model, prepped)
    quantize_static(str(prepped), str(quantized), Reader(),
                    quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8 if activations == "u8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=exclude,
                    op_types_to_quantize=INT8_OPS, extra_options={"ActivationSymmetric": False})
    return onnx.load(quantized)
