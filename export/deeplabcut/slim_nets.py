"""DeepLabCut 2's TensorFlow networks (tf_slim ResNet v1, DeepLabCut's MobileNet v2) in plain torch.

Weights come straight from the TensorFlow checkpoint by variable name (optimizer slots are never
read) and batch norm is folded into the preceding convolution, as inference uses moving
statistics. TensorFlow's padding rules are reproduced: tf_slim's ``conv2d_same`` pads strided
convolutions explicitly (symmetric for odd kernels), 'SAME' stride-1 convolutions are symmetric,
and 'SAME' stride-2 pooling/depthwise convolutions pad only bottom/right on even inputs, which
every layer sees because the spec pads frames to a multiple of the output stride.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Reader = Callable[[str], np.ndarray]
RESNET_UNITS = {"resnet_50": (3, 4, 6, 3), "resnet_101": (3, 4, 23, 3), "resnet_152": (3, 8, 36, 3)}


def folded_conv(read: Reader, scope: str, *, stride: int = 1, dilation: int = 1, padding: int = 0,
                groups: int = 1, eps: float = 1e-5, norm: bool = True) -> nn.Conv2d:
    """``scope/weights`` (+ ``scope/BatchNorm/*`` folded in, or ``scope/biases``) as one Conv2d."""
    w = read(f"{scope}/depthwise_weights") if groups > 1 else read(f"{scope}/weights")
    if groups > 1:  # TF depthwise [kh, kw, in, multiplier] -> torch [in * multiplier, 1, kh, kw]
        kernel = np.transpose(w, (2, 3, 0, 1)).reshape(w.shape[2] * w.shape[3], 1, w.shape[0], w.shape[1])
    else:  # TF [kh, kw, in, out] -> torch [out, in, kh, kw]
        kernel = np.transpose(w, (3, 2, 0, 1))
    out_channels = kernel.shape[0]
    bias = np.zeros(out_channels, np.float32)
    if norm:
        bn = f"{scope}/BatchNorm"
        gamma = _maybe(read, f"{bn}/gamma", np.ones(out_channels, np.float32))
        scale = gamma / np.sqrt(read(f"{bn}/moving_variance") + eps)
        kernel = kernel * scale[:, None, None, None]
        bias = _maybe(read, f"{bn}/beta", bias) - read(f"{bn}/moving_mean") * scale
    else:
        bias = _maybe(read, f"{scope}/biases", bias)
    conv = nn.Conv2d(kernel.shape[1] * groups, out_channels, kernel.shape[2:], stride=stride, padding=padding,
                     dilation=dilation, groups=groups, bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel, np.float32)))
        conv.bias.copy_(torch.from_numpy(np.asarray(bias, np.float32)))
    return conv


def _maybe(read: Reader, name: str, default: np.ndarray) -> np.ndarray:
    try:
        return read(name)
    except KeyError:
        return default


class SameDeconvHead(nn.Module):
    """tf_slim ``conv2d_transpose(k=3, stride=2, padding='SAME')``: torch's 2H+1 map minus its last
    row and column (TensorFlow puts the one pixel of padding at the end)."""

    def __init__(self, read: Reader, scope: str) -> None:
        super().__init__()
        w = read(f"{scope}/weights")  # [kh, kw, out, in]
        self.deconv = nn.ConvTranspose2d(w.shape[3], w.shape[2], w.shape[:2], stride=2)
        with torch.no_grad():
            self.deconv.weight.copy_(torch.from_numpy(np.ascontiguousarray(np.transpose(w, (3, 2, 0, 1)))))
            self.deconv.bias.copy_(torch.from_numpy(read(f"{scope}/biases")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(x)[:, :, :-1, :-1]


class SlimBottleneck(nn.Module):
    def __init__(self, read: Reader, scope: str, stride: int, rate: int, has_shortcut_conv: bool) -> None:
        super().__init__()
        self.stride = stride
        self.shortcut = folded_conv(read, f"{scope}/shortcut", stride=stride) if has_shortcut_conv else None
        self.conv1 = folded_conv(read, f"{scope}/conv1")
        # conv2d_same: stride 1 -> 'SAME' (pad = rate); stride 2 (rate 1) -> explicit pad 1 on both sides
        self.conv2 = folded_conv(read, f"{scope}/conv2", stride=stride, dilation=rate, padding=rate)
        self.conv3 = folded_conv(read, f"{scope}/conv3")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is not None:
            shortcut = self.shortcut(x)
        else:  # tf_slim subsample: a 1x1 max pool with the unit's stride
            shortcut = x if self.stride == 1 else F.max_pool2d(x, 1, self.stride)
        y = F.relu(self.conv1(x))
        y = F.relu(self.conv2(y))
        return F.relu(self.conv3(y) + shortcut)


class SlimResNet(nn.Module):
    """tf_slim ``resnet_v1_N(global_pool=False, output_stride=16)`` + DeepLabCut's prediction layers."""

    def __init__(self, read: Reader, net_type: str, location_refinement: bool = True) -> None:
        super().__init__()
        depth = net_type.split("_")[1]
        root = f"resnet_v1_{depth}"
        self.conv1 = folded_conv(read, f"{root}/conv1", stride=2, padding=3)
        units: list[nn.Module] = []
        current, rate, target = 1, 1, 16 // 4  # tf_slim divides the output stride by the root's 4
        depth_in = 64
        for b, (count, base) in enumerate(zip(RESNET_UNITS[net_type], (64, 128, 256, 512)), start=1):
            for u in range(1, count + 1):
                stride = 2 if u == count and b < 4 else 1
                scope = f"{root}/block{b}/unit_{u}/bottleneck_v1"
                if current == target:  # past the output stride: atrous instead of strided
                    units.append(SlimBottleneck(read, scope, 1, rate, depth_in != base * 4))
                    rate *= stride
                else:
                    units.append(SlimBottleneck(read, scope, stride, 1, depth_in != base * 4))
                    current *= stride
                depth_in = base * 4
        self.units = nn.Sequential(*units)
        self.part_pred = SameDeconvHead(read, "pose/part_pred/block4")
        self.locref_pred = SameDeconvHead(read, "pose/locref_pred/block4") if location_refinement else None
        self.stride = 8

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = F.relu(self.conv1(x))
        # 'SAME' 3x3/2 max pool on an even input: one row/column of padding, at the end
        x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, 2)
        features = self.units(x)
        locref = self.locref_pred(features) if self.locref_pred is not None else None
        return self.part_pred(features), locref


# DeepLabCut's MobileNet v2 (its copy of slim's mobilenet_v2, 14th block at stride 1 for output stride 16):
# (output channels, stride) per expanded_conv block, after the 32-channel stride-2 stem.
MOBILENET_BLOCKS = [(16, 1), (24, 2), (24, 1), (32, 2), (32, 1), (32, 1), (64, 2), (64, 1), (64, 1), (64, 1),
                    (96, 1), (96, 1), (96, 1), (160, 1), (160, 1), (160, 1), (320, 1)]
MOBILENETS = {"mobilenet_v2_1.0": 1.0, "mobilenet_v2_0.75": 0.75, "mobilenet_v2_0.5": 0.5, "mobilenet_v2_0.35": 0.35}


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """slim's channel rounding: nearest multiple of ``divisor``, never more than 10% down."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class BatchStatNorm(nn.Module):
    """slim.batch_norm with is_training=True, as DeepLabCut 2's MobileNet runs even at inference
    (its training_scope sets it): each frame normalised by its own per-channel mean and (biased)
    variance, then scaled by gamma and shifted by beta; the moving statistics go unused."""

    def __init__(self, read: Reader, scope: str, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.from_numpy(read(f"{scope}/BatchNorm/gamma")), requires_grad=False)
        self.beta = nn.Parameter(torch.from_numpy(read(f"{scope}/BatchNorm/beta")), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.gamma, bias=self.beta, eps=self.eps)


class SameConv(nn.Module):
    """A TF 'SAME' conv + batch-statistics norm + optional ReLU6; stride 2 pads bottom/right only
    (its input is always even: the spec pads frames to a multiple of 16)."""

    def __init__(self, read: Reader, scope: str, stride: int = 1, depthwise: bool = False, relu6: bool = True) -> None:
        super().__init__()
        w = read(f"{scope}/depthwise_weights") if depthwise else read(f"{scope}/weights")
        k = w.shape[0]
        self.pad = (0, 1, 0, 1) if stride == 2 else ((k - 1) // 2,) * 4
        if depthwise:
            kernel = np.transpose(w, (2, 3, 0, 1)).reshape(-1, 1, k, k)
        else:
            kernel = np.transpose(w, (3, 2, 0, 1))
        groups = kernel.shape[0] if depthwise else 1
        self.conv = nn.Conv2d(kernel.shape[1] * groups, kernel.shape[0], k, stride=stride, groups=groups, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
        self.norm = BatchStatNorm(read, scope)
        self.relu6 = relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        x = self.norm(self.conv(x))
        return torch.clamp(x, 0.0, 6.0) if self.relu6 else x


class ExpandedConv(nn.Module):
    def __init__(self, read: Reader, scope: str, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        inner = cin if expansion == 1 else make_divisible(cin * expansion)
        self.expand = SameConv(read, f"{scope}/expand") if inner > cin else None
        self.depthwise = SameConv(read, f"{scope}/depthwise", stride=stride, depthwise=True)
        self.project = SameConv(read, f"{scope}/project", relu6=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class SlimMobileNetV2(nn.Module):
    """DeepLabCut 2's ``mobilenet_v2_*`` backbone (finegrain: the last conv keeps 1280 channels)
    + its prediction layers."""

    def __init__(self, read: Reader, net_type: str, location_refinement: bool = True) -> None:
        super().__init__()
        m = MOBILENETS[net_type]
        root = "MobilenetV2"
        cin = make_divisible(32 * m)
        self.stem = SameConv(read, f"{root}/Conv", stride=2)
        blocks = []
        for i, (cout, stride) in enumerate(MOBILENET_BLOCKS):
            cout = make_divisible(cout * m)
            scope = f"{root}/expanded_conv" + (f"_{i}" if i else "")
            blocks.append(ExpandedConv(read, scope, cin, cout, stride, 1 if i == 0 else 6))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.last = SameConv(read, f"{root}/Conv_1")
        self.part_pred = SameDeconvHead(read, "pose/part_pred/block4")
        self.locref_pred = SameDeconvHead(read, "pose/locref_pred/block4") if location_refinement else None
        self.stride = 8

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.last(self.blocks(self.stem(x)))
        locref = self.locref_pred(features) if self.locref_pred is not None else None
        return self.part_pred(features), locref
