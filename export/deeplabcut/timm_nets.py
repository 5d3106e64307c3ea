"""DeepLabCut 3's backbones (timm ResNet and HRNet, DeepLabCut's DLCRNet on a timm ResNet) in plain
torch, with timm's and DeepLabCut's weight names.

DeepLabCut 3 builds its backbones with timm, which is not usable beside the CPU build of torch,
so the same modules are written here with identical parameter names and shapes: a DeepLabCut
state_dict loads with ``strict=True``. Only what inference needs is kept (no drop-path, no
classifier); the layer arithmetic follows timm exactly (stride on the 3x3 conv of a bottleneck,
dilation instead of stride past the requested output stride).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    """timm's 'groupnorm' is 32 groups with eps 1e-5; 'batch' is plain BatchNorm."""
    if kind == "group":
        return nn.GroupNorm(32, channels, eps=1e-5)
    return nn.BatchNorm2d(channels)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1, first_dilation: int | None = None, norm: str = "batch") -> None:
        super().__init__()
        first_dilation = first_dilation or dilation
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = norm_layer(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=first_dilation,
                               dilation=first_dilation, bias=False)
        self.bn2 = norm_layer(norm, planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = norm_layer(norm, out)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + shortcut)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + shortcut)


# timm model name -> (blocks per stage, norm)
RESNETS: dict[str, tuple[tuple[int, int, int, int], str]] = {
    "resnet50": ((3, 4, 6, 3), "batch"),
    "resnet50_gn": ((3, 4, 6, 3), "group"),
    "resnet101": ((3, 4, 23, 3), "batch"),
}


class TimmResNet(nn.Module):
    """timm ``ResNet`` (default stem) up to ``forward_features``; ``output_stride`` 8, 16 or 32."""

    def __init__(self, model_name: str = "resnet50_gn", output_stride: int = 16) -> None:
        super().__init__()
        if model_name not in RESNETS:
            raise ValueError(f"unsupported timm ResNet {model_name!r}; supported: {sorted(RESNETS)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        repeats, norm = RESNETS[model_name]
        self.stride = output_stride
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(norm, 64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes, net_stride, dilation, prev_dilation = 64, 4, 1, 1
        for idx, (planes, n) in enumerate(zip((64, 128, 256, 512), repeats)):
            stride = 1 if idx == 0 else 2
            if net_stride >= output_stride:  # timm: dilate instead of striding past the output stride
                dilation *= stride
                stride = 1
            else:
                net_stride *= stride
            downsample = None
            if stride != 1 or inplanes != planes * 4:
                downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                           norm_layer(norm, planes * 4))
            blocks = []
            for b in range(n):
                blocks.append(Bottleneck(inplanes, planes, stride if b == 0 else 1, downsample if b == 0 else None,
                                         dilation=dilation, first_dilation=prev_dilation, norm=norm))
                prev_dilation = dilation
                inplanes = planes * 4
            self.add_module(f"layer{idx + 1}", nn.Sequential(*blocks))
        self.out_channels = inplanes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


# timm HRNet configs: stage1 is 4 bottlenecks of 64; later stages (modules, branch widths), 4 basic blocks each.
HRNETS: dict[str, int] = {"hrnet_w18": 18, "hrnet_w32": 32, "hrnet_w48": 48}
_HR_MODULES = (1, 4, 3)


def _conv_bn(cin: int, cout: int, k: int, stride: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class HRModule(nn.Module):
    """One multi-resolution module: per-branch basic blocks, then the fuse layers.

    ``outputs`` limits which fused branches are computed: DeepLabCut reads only the
    highest-resolution branch of the last module, so the others are loaded but never run.
    """

    def __init__(self, channels: list[int], blocks: int = 4) -> None:
        super().__init__()
        self.outputs = len(channels)
        self.branches = nn.ModuleList(nn.Sequential(*[BasicBlock(c, c) for _ in range(blocks)]) for c in channels)
        n = len(channels)
        if n == 1:
            self.fuse_layers: nn.Module = nn.Identity()
            return
        fuse = nn.ModuleList()
        for i in range(n):
            row = nn.ModuleList()
            for j in range(n):
                if j > i:
                    row.append(nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, bias=False),
                                             nn.BatchNorm2d(channels[i]),
                                             nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = [_conv_bn(channels[j], channels[i] if k == i - j - 1 else channels[j], 3, 2,
                                      relu=k != i - j - 1) for k in range(i - j)]
                    row.append(nn.Sequential(*steps))
            fuse.append(row)
        self.fuse_layers = fuse

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if len(xs) == 1:
            return xs
        out = []
        for i in range(self.outputs):
            row = self.fuse_layers[i]
            y = row[0](xs[0])
            for j in range(1, len(xs)):
                y = y + row[j](xs[j])
            out.append(F.relu(y))
        return out


class TimmHRNet(nn.Module):
    """timm ``HighResolutionNetFeatures`` (feature_location='') returning the stride-4 branch."""

    def __init__(self, model_name: str = "hrnet_w32") -> None:
        super().__init__()
        if model_name not in HRNETS:
            raise ValueError(f"unsupported timm HRNet {model_name!r}; supported: {sorted(HRNETS)}")
        w = HRNETS[model_name]
        self.stride = 4
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        down = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.BatchNorm2d(256))
        self.layer1 = nn.Sequential(Bottleneck(64, 64, 1, down), *[Bottleneck(256, 64) for _ in range(3)])
        previous = [256]
        for s, modules in enumerate(_HR_MODULES, start=2):
            channels = [w * 2 ** b for b in range(s)]
            self.add_module(f"transition{s - 1}", self._transition(previous, channels))
            self.add_module(f"stage{s}", nn.Sequential(*[HRModule(channels) for _ in range(modules)]))
            previous = channels
        self.stage4[-1].outputs = 1
        self.out_channels = w

    @staticmethod
    def _transition(previous: list[int], current: list[int]) -> nn.ModuleList:
        layers = nn.ModuleList()
        for i, c in enumerate(current):
            if i < len(previous):
                layers.append(_conv_bn(previous[i], c, 3, 1, relu=True) if c != previous[i] else nn.Identity())
            else:
                steps = [_conv_bn(previous[-1], c if k == i - len(previous) else previous[-1], 3, 2, relu=True)
                         for k in range(i + 1 - len(previous))]
                layers.append(nn.Sequential(*steps))
        return layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for s in (2, 3, 4):
            transition = getattr(self, f"transition{s - 1}")
            # a new, lower-resolution branch grows from the last branch of the previous stage
            xs = [t(xs[i] if i < len(xs) else xs[-1]) for i, t in enumerate(transition)]
            for module in getattr(self, f"stage{s}"):
                xs = module(xs)
        return xs[0]


def _conv_block(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride), nn.BatchNorm2d(cout, momentum=0.001), nn.ReLU())


class DLCRNetBackbone(nn.Module):
    """DeepLabCut's ``DLCRNet``: a timm ResNet whose stride-4 and stride-8 features (outputs of
    ``layer1[2]`` and ``layer2[2]``) are brought to the output stride by unpadded strided
    convolutions, resized to the last stage's size and concatenated before it (256 + 2048 channels).

    DeepLabCut resizes with antialiased bilinear interpolation, which only differs from plain
    bilinear when shrinking: at output stride 16 the banks are always smaller than the last stage.
    """

    def __init__(self, model_name: str, output_stride: int) -> None:
        super().__init__()
        if output_stride != 16:
            raise ValueError(f"DLCRNet at output stride {output_stride} (its antialiased downscaling has no "
                             "ONNX equivalent here); stride 16 (dlcrnet_stride16_ms5) is supported")
        self.model = TimmResNet(model_name, output_stride)
        self.stride = output_stride
        self.conv_block1 = _conv_block(512, 512, 3, 2)
        self.conv_block2 = _conv_block(512, 128, 1, 1)
        self.conv_block3 = _conv_block(256, 256, 3, 2)
        self.conv_block4 = _conv_block(256, 256, 3, 2)
        self.conv_block5 = _conv_block(256, 128, 1, 1)
        self.out_channels = self.model.out_channels + 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.maxpool(F.relu(m.bn1(m.conv1(x))))
        bank1 = m.layer1[:3](x)
        bank2 = m.layer2[:3](m.layer1[3:](bank1))
        out = m.layer4(m.layer3(m.layer2[3:](bank2)))
        h, w = out.shape[-2:]
        b1 = self.conv_block5(self.conv_block4(self.conv_block3(bank1)))
        b2 = self.conv_block2(self.conv_block1(bank2))
        b1 = F.interpolate(b1, size=(h, w), mode="bilinear", align_corners=False)
        b2 = F.interpolate(b2, size=(h, w), mode="bilinear", align_corners=False)
        return torch.cat((b1, b2, out), dim=1)
