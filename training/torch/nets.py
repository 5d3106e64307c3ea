"""Pose networks in plain PyTorch, with a timm-style registry by name.

Every model takes raw frames, a uint8 (or float 0..255) tensor ``(N, H, W, 3)`` RGB, and
normalises them inside the module, so the exported ONNX graph takes frames as decoded. It
returns ``(heatmap_logits (N, K, H/s, W/s), locref (N, K, 2, H/s, W/s))`` with ``s =
model.stride``; ``locref[:, k, 0]`` is the x offset and ``locref[:, k, 1]`` the y offset.

Alignment contract: heatmap cell (r, c) stands for input pixel
``(c*s + (s-1)/2, r*s + (s-1)/2)``. Odd kernels with stride 2 centre output i on input 2i,
half a pixel off that grid, so every downsampling here is either an even kernel
(k=2j, stride 2, padding j-1) or a 2x2 average/max pool followed by stride-1 convs, and every
upsampling is nearest x2 or a 4x4/stride-2/padding-1 transposed conv; all of these map cell i
onto cells 2i and 2i+1 symmetrically, so the grid stays centred through the network.

No pretrained weights can be downloaded here: everything trains from scratch, hence
zero-initialised last norm in residual blocks and a prior-initialised heatmap bias.
"""
from __future__ import annotations

import copy
import math
import re
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..registry import LITE, ModelRegistry

__all__ = [
    "MEAN_RGB",
    "STD_RGB",
    "PoseNet",
    "register",
    "register_alias",
    "create_model",
    "list_models",
    "resolve_name",
    "model_arguments",
    "count_flops",
    "count_params",
]

# ImageNet statistics on the 0..255 scale; the TF backend must use the same numbers.
MEAN_RGB: tuple[float, float, float] = (123.675, 116.28, 103.53)
STD_RGB: tuple[float, float, float] = (58.395, 57.12, 57.375)

SIZE_MULTIPLE = 32

# ----------------------------------------------------------------------------------------
# registry

_MODELS = ModelRegistry()
register = _MODELS.register
register_alias = _MODELS.register_alias
resolve_name = _MODELS.resolve
model_arguments = _MODELS.arguments


def list_models(include_aliases: bool = True) -> list[str]:
    """Sorted names accepted by :func:`create_model` (aliases such as ``lite`` included)."""
    return _MODELS.names(include_aliases)


def create_model(name: str, num_keypoints: int, **kwargs) -> "PoseNet":
    """Build a registered model; unknown names or keyword arguments raise ValueError."""
    canonical, model = _MODELS.build(name, num_keypoints, **kwargs)
    model.name = canonical
    return model


# ----------------------------------------------------------------------------------------
# building blocks


def _norm(kind: str, channels: int) -> nn.Module:
    """BatchNorm (folds into convs at export) or GroupNorm (independent of batch size)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = math.gcd(channels, 16) if channels >= 16 else 1
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"norm must be 'batch' or 'group', got {kind!r}")


class ConvNormAct(nn.Sequential):
    """Conv (odd kernel, stride 1, 'same' padding) + norm + optional ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int = 3,
        *,
        dilation: int = 1,
        groups: int = 1,
        norm: str = "batch",
        act: bool = True,
    ) -> None:
        if k % 2 == 0:
            raise ValueError("ConvNormAct takes odd kernels; use Down for strided convs")
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, padding=dilation * (k - 1) // 2, dilation=dilation,
                      groups=groups, bias=False),
            _norm(norm, cout),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Down(nn.Sequential):
    """Stride-2 conv with an even kernel (2j, padding j-1): output i centred on input 2i+0.5."""

    def __init__(self, cin: int, cout: int, k: int = 4, *, groups: int = 1,
                 norm: str = "batch", act: bool = True) -> None:
        if k % 2:
            raise ValueError("Down needs an even kernel to stay on the cell-centre grid")
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride=2, padding=k // 2 - 1, groups=groups, bias=False),
            _norm(norm, cout),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def _zero_last_norm(block: nn.Module) -> None:
    """Start residual branches at zero so a deep net begins as a shallow one (trains faster)."""
    norms = [m for m in block.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    if norms:
        nn.init.zeros_(norms[-1].weight)


class BasicBlock(nn.Module):
    """Two 3x3 convs with identity (or pooled 1x1) shortcut; stride 2 = 2x2 avg pool first."""

    def __init__(self, cin: int, cout: int, stride: int = 1, norm: str = "batch") -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2) if stride == 2 else nn.Identity()
        self.body = nn.Sequential(
            ConvNormAct(cin, cout, 3, norm=norm),
            ConvNormAct(cout, cout, 3, norm=norm, act=False),
        )
        self.short = (
            nn.Identity() if cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), _norm(norm, cout))
        )
        _zero_last_norm(self.body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        return F.relu(self.body(x) + self.short(x))


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck (1x1-3x3-1x1, x4 expansion).

    Stride 2 pools 2x2 after the first 1x1 (main path) and before the shortcut's 1x1
    (ResNet-D style) instead of striding the odd-kernel convs, which would shift the grid.
    """

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, dilation: int = 1,
                 norm: str = "batch") -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = ConvNormAct(cin, width, 1, norm=norm)
        self.pool = nn.AvgPool2d(2) if stride == 2 else nn.Identity()
        self.conv2 = ConvNormAct(width, width, 3, dilation=dilation, norm=norm)
        self.conv3 = ConvNormAct(width, cout, 1, norm=norm, act=False)
        if stride == 1 and cin == cout:
            self.short: nn.Module = nn.Identity()
        else:
            self.short = nn.Sequential(
                nn.AvgPool2d(2) if stride == 2 else nn.Identity(),
                nn.Conv2d(cin, cout, 1, bias=False),
                _norm(norm, cout),
            )
        _zero_last_norm(self.conv3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.conv2(self.pool(self.conv1(x))))
        return F.relu(y + self.short(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 block (expand 1x1, depthwise 3x3, project 1x1); stride 2 pools 2x2 first."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, norm: str = "batch") -> None:
        super().__init__()
        hidden = cin * expand
        self.pool = nn.AvgPool2d(2) if stride == 2 else nn.Identity()
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvNormAct(cin, hidden, 1, norm=norm))
        layers += [
            ConvNormAct(hidden, hidden, 3, groups=hidden, norm=norm),
            ConvNormAct(hidden, cout, 1, norm=norm, act=False),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout
        if self.residual:
            _zero_last_norm(self.body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(self.pool(x))
        return x + y if self.residual else y


def _up2(x: torch.Tensor, times: int = 1) -> torch.Tensor:
    """Nearest x2^times upsampling: cell i -> cells 2i, 2i+1, which keeps the grid centred."""
    f = 2 ** times
    return F.interpolate(x, scale_factor=float(f), mode="nearest") if times else x


class FPNDecoder(nn.Module):
    """Top-down path from strides (4, 8, 16, 32) back to ``out_stride`` (4 or 8).

    Tiny datasets need context (is this the left or the right ear?) from the coarse levels
    and precision from the fine ones; a sum of upsampled laterals gives both cheaply.
    """

    def __init__(self, in_channels: Sequence[int], channels: int, out_stride: int,
                 norm: str = "batch") -> None:
        super().__init__()
        if out_stride not in (4, 8):
            raise ValueError(f"output stride must be 4 or 8, got {out_stride}")
        self.first = 0 if out_stride == 4 else 1
        used = list(in_channels)[self.first:]
        self.lateral = nn.ModuleList(
            ConvNormAct(c, channels, 1, norm=norm, act=False) for c in used
        )
        self.smooth = ConvNormAct(channels, channels, 3, norm=norm)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        feats = list(feats)[self.first:]
        y = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            y = lat(f) + _up2(y)
        return self.smooth(F.relu(y))


class ConvHead(nn.Module):
    """Heatmap and locref branches on stride-s features (one shared 3x3 conv, then 1x1s)."""

    def __init__(self, cin: int, num_keypoints: int, channels: int, norm: str = "batch") -> None:
        super().__init__()
        # a wide input (HRNet's concatenation) is first reduced by a cheap 1x1
        reduce = [] if cin == channels else [ConvNormAct(cin, channels, 1, norm=norm)]
        self.shared = nn.Sequential(*reduce, ConvNormAct(channels, channels, 3, norm=norm))
        self.heatmap = nn.Conv2d(channels, num_keypoints, 1)
        self.locref = nn.Conv2d(channels, 2 * num_keypoints, 1)
        self.extra = nn.ModuleDict()

    def add_output(self, name: str, channels: int) -> None:
        """Another 1x1 branch on the shared features (part-affinity fields, identity)."""
        self.extra[name] = nn.Conv2d(self.heatmap.in_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.shared(x)
        return (self.heatmap(x), self.locref(x), *(m(x) for m in self.extra.values()))


class DeconvHead(nn.Module):
    """DeepLabCut's head: one 4x4/stride-2 transposed conv per branch (stride 16 -> 8)."""

    def __init__(self, cin: int, num_keypoints: int) -> None:
        super().__init__()
        self.heatmap = nn.ConvTranspose2d(cin, num_keypoints, 4, stride=2, padding=1)
        self.locref = nn.ConvTranspose2d(cin, 2 * num_keypoints, 4, stride=2, padding=1)
        self.extra = nn.ModuleDict()

    def add_output(self, name: str, channels: int) -> None:
        """Another transposed-conv branch (part-affinity fields, identity), as DeepLabCut's."""
        self.extra[name] = nn.ConvTranspose2d(self.heatmap.in_channels, channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (self.heatmap(x), self.locref(x), *(m(x) for m in self.extra.values()))


# ----------------------------------------------------------------------------------------
# the common model


class PoseNet(nn.Module):
    """Frames (N, H, W, 3) -> (heatmap logits, locref); ``body`` maps normalised NCHW images
    to stride-``stride`` features, ``head`` maps those to (heatmap, flat 2K locref)."""

    def __init__(self, body: nn.Module, head: nn.Module, *, num_keypoints: int, stride: int,
                 name: str, heatmap_prior: float = 0.01) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.num_keypoints = num_keypoints
        self.stride = stride
        self.name = name
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD_RGB).view(1, 3, 1, 1))
        _init_weights(self, heatmap_prior)

    def add_heads(self, heads: dict[str, int]) -> PoseNet:
        """Extra outputs for a multi-animal model: ``{"paf": 2 * edges, "identity": individuals}``;
        forward then returns them after the heatmap and locref (paf as (N, E, 2, h, w))."""
        for name, channels in heads.items():
            self.head.add_output(name, channels)
            branch = self.head.extra[name]
            nn.init.normal_(branch.weight, std=0.001)  # fields start near zero, as locref does
            nn.init.zeros_(branch.bias)
        self.heads = dict(heads)
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            _check_input(x)
        x = (x.permute(0, 3, 1, 2).to(torch.float32) - self.mean) / self.std
        heatmap, locref, *extra = self.head(self.body(x))
        n, _, h, w = locref.shape
        out = [heatmap, locref.reshape(n, self.num_keypoints, 2, h, w)]
        for name, value in zip(getattr(self, "heads", {}), extra):
            out.append(value.reshape(n, -1, 2, h, w) if name == "paf" else value)
        return tuple(out)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_keypoints={self.num_keypoints}, stride={self.stride}"


def _check_input(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (N, H, W, 3) RGB, got {tuple(x.shape)}")
    h, w = x.shape[1], x.shape[2]
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        raise ValueError(f"frame height and width must be multiples of {SIZE_MULTIPLE}, "
                         f"got {h}x{w}; pad the frames first")


def _init_weights(model: nn.Module, heatmap_prior: float) -> None:
    """He init for convs; heatmap bias at logit(prior) so the initial loss is not dominated
    by the (mostly empty) background; locref starts near zero offsets."""
    zeroed = {id(m.weight) for m in model.modules()
              if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and not bool(m.weight.any())}
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and id(m.weight) not in zeroed:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    head = getattr(model, "head")
    nn.init.normal_(head.heatmap.weight, std=0.01)
    nn.init.constant_(head.heatmap.bias, -math.log((1 - heatmap_prior) / heatmap_prior))
    nn.init.normal_(head.locref.weight, std=0.001)
    nn.init.zeros_(head.locref.bias)


# ----------------------------------------------------------------------------------------
# ResNet-50 (DeepLabCut's default kind)


class ResNetBody(nn.Module):
    """Bottleneck ResNet to output stride 16: the last stage is dilated, not strided."""

    def __init__(self, layers: Sequence[int], norm: str) -> None:
        super().__init__()
        # 6x6/2 stem (even kernel, close to the usual 7x7) + 2x2 max pool -> stride 4
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 6, stride=2, padding=2, bias=False), _norm(norm, 64),
            nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        cin, stages = 64, []
        for i, (n, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            stride = 2 if i in (1, 2) else 1
            dilation = 2 if i == 3 else 1
            blocks = []
            for b in range(n):
                blocks.append(Bottleneck(cin, width, stride if b == 0 else 1, dilation, norm))
                cin = width * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


_TORCHVISION_LAYER = re.compile(r"^layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.\d)\.(\w+)$")
_TORCHVISION_PARTS = {"conv1": "conv1.0", "bn1": "conv1.1", "conv2": "conv2.0", "bn2": "conv2.1", "conv3": "conv3.0",
                      "bn3": "conv3.1", "downsample.0": "short.1", "downsample.1": "short.2"}


def resnet50_from_torchvision(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """torchvision's ResNet-50 weights under this network's names (the classifier is dropped).

    Our stem is 6x6 where torchvision's is 7x7: with our padding, its taps 1-6 cover our 6, so the
    kernel loses its first row and column. The blocks pool before their 3x3 convs instead of
    striding them (see `Bottleneck`): the weights carry over, the features move a little.
    """
    out = {}
    for key, value in state.items():
        if key == "conv1.weight":
            out["body.stem.0.weight"] = value[:, :, 1:, 1:]
        elif key.startswith("bn1."):
            out["body.stem.1." + key[4:]] = value
        elif m := _TORCHVISION_LAYER.match(key):
            stage, block, part, rest = m.groups()
            out[f"body.stages.{int(stage) - 1}.{block}.{_TORCHVISION_PARTS[part]}.{rest}"] = value
    return {k: torch.tensor(v) for k, v in out.items()}


@register("resnet50")
def resnet50(num_keypoints: int, norm: str = "batch", heatmap_prior: float = 0.01) -> PoseNet:
    """ResNet-50 (3-4-6-3 bottlenecks) at stride 16 + deconvolution head to stride 8."""
    body = ResNetBody((3, 4, 6, 3), norm)
    head = DeconvHead(body.out_channels, num_keypoints)
    return PoseNet(body, head, num_keypoints=num_keypoints, stride=8, name="resnet50",
                   heatmap_prior=heatmap_prior)


# ----------------------------------------------------------------------------------------
# lite candidates


class SlimResNetBody(nn.Module):
    """Reduced-width ResNet with basic blocks; dense 3x3 convs, FPN back to stride 4 or 8."""

    def __init__(self, widths: Sequence[int], depths: Sequence[int], decoder: int,
                 out_stride: int, norm: str) -> None:
        super().__init__()
        stem = widths[0] // 2
        # 4x4/2 conv on pixels, then one 4x4/2 conv -> stride 4
        self.stem = nn.Sequential(Down(3, stem, 4, norm=norm), Down(stem, widths[0], 4, norm=norm))
        cin, stages = widths[0], []
        for i, (w, d) in enumerate(zip(widths, depths)):
            blocks = [BasicBlock(cin if b == 0 else w, w, 2 if (i > 0 and b == 0) else 1, norm)
                      for b in range(d)]
            cin = w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.decoder = FPNDecoder(widths, decoder, out_stride, norm)
        self.out_channels = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return self.decoder(feats)


@register("resnet_slim")
def resnet_slim(num_keypoints: int, width: float = 1.0, stride: int = 8, norm: str = "batch",
                heatmap_prior: float = 0.01) -> PoseNet:
    """Slim ResNet (basic blocks 1-2-2-2, widths 32-64-128-192) + FPN decoder."""
    widths = [_round8(c * width) for c in (32, 64, 128, 192)]
    body = SlimResNetBody(widths, (1, 2, 2, 2), _round8(64 * width), stride, norm)
    head = ConvHead(body.out_channels, num_keypoints, body.out_channels, norm)
    return PoseNet(body, head, num_keypoints=num_keypoints, stride=stride, name="resnet_slim",
                   heatmap_prior=heatmap_prior)


class MobileNetV2Body(nn.Module):
    """MobileNetV2 inverted residuals to stride 32, FPN back to stride 4 or 8."""

    # (expand, channels, repeats, stride) as in the MobileNetV2 paper
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, width: float, decoder: int, out_stride: int, norm: str) -> None:
        super().__init__()
        c0 = _round8(32 * width)
        self.stem = Down(3, c0, 4, norm=norm)
        cin, blocks, taps = c0, [], []
        for expand, c, n, s in self.SETTINGS:
            cout = _round8(c * width)
            for b in range(n):
                blocks.append(InvertedResidual(cin, cout, s if b == 0 else 1, expand, norm))
                cin = cout
            taps.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        # feature taps at strides 4, 8, 16, 32: after the 24, 32, 96 and 320-channel groups
        self.taps = {taps[1]: 0, taps[2]: 1, taps[4]: 2, taps[6]: 3}
        tap_channels = [_round8(c * width) for c in (24, 32, 96, 320)]
        self.decoder = FPNDecoder(tap_channels, decoder, out_stride, norm)
        self.out_channels = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        feats: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                feats.append(x)
        return self.decoder(feats)


@register("mobilenetv2")
def mobilenetv2(num_keypoints: int, width: float = 1.0, stride: int = 8, norm: str = "batch",
                heatmap_prior: float = 0.01) -> PoseNet:
    """MobileNetV2 backbone (depthwise convs) + FPN decoder."""
    body = MobileNetV2Body(width, _round8(64 * width), stride, norm)
    head = ConvHead(body.out_channels, num_keypoints, body.out_channels, norm)
    return PoseNet(body, head, num_keypoints=num_keypoints, stride=stride, name="mobilenetv2",
                   heatmap_prior=heatmap_prior)


class HRFusion(nn.Module):
    """Exchange between parallel branches: every branch receives the sum of all others,
    downsampled by chained 4x4/2 convs or upsampled (1x1 conv, nearest x2^k)."""

    def __init__(self, channels: Sequence[int], norm: str) -> None:
        super().__init__()
        n = len(channels)
        self.paths = nn.ModuleList()
        for i in range(n):  # target
            row = nn.ModuleList()
            for j in range(n):  # source
                if j == i:
                    row.append(nn.Identity())
                elif j > i:
                    row.append(ConvNormAct(channels[j], channels[i], 1, norm=norm, act=False))
                else:
                    steps: list[nn.Module] = []
                    c = channels[j]
                    for k in range(i - j):
                        last = k == i - j - 1
                        steps.append(Down(c, channels[i] if last else c, 4, norm=norm,
                                          act=not last))
                    row.append(nn.Sequential(*steps))
            self.paths.append(row)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, row in enumerate(self.paths):
            y = xs[i]
            for j, path in enumerate(row):
                if j > i:  # coarser source: project, then upsample by 2^(j-i)
                    y = y + _up2(path(xs[j]), j - i)
                elif j < i:  # finer source: strided convs
                    y = y + path(xs[j])
            out.append(F.relu(y))
        return out


class HRStage(nn.Module):
    """Basic blocks on each branch, then one fusion."""

    def __init__(self, channels: Sequence[int], blocks: int, norm: str) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c, 1, norm) for _ in range(blocks)]) for c in channels
        )
        self.fuse = HRFusion(channels, norm)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return self.fuse([b(x) for b, x in zip(self.branches, xs)])


class HRNetBody(nn.Module):
    """Small HRNet: a stride-8 branch kept throughout, joined by stride-16 and -32 branches;
    the output concatenates all branches upsampled to stride 8 (HRNetV2 style)."""

    def __init__(self, channels: Sequence[int], stage_blocks: Sequence[int], norm: str) -> None:
        super().__init__()
        c0 = channels[0]
        self.stem = nn.Sequential(
            Down(3, c0 // 2, 4, norm=norm),                    # stride 2
            Down(c0 // 2, c0, 4, norm=norm),                   # stride 4
            Down(c0, c0, 4, norm=norm),                        # stride 8
        )
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        for n_branches, blocks in zip(range(1, len(channels) + 1), stage_blocks):
            # branch n-1 is new: made from the coarsest existing branch
            if n_branches > 1:
                self.transitions.append(Down(channels[n_branches - 2], channels[n_branches - 1],
                                             4, norm=norm))
            self.stages.append(HRStage(channels[:n_branches], blocks, norm))
        self.out_channels = sum(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = [self.stem(x)]
        for i, stage in enumerate(self.stages):
            if i > 0:
                xs = xs + [self.transitions[i - 1](xs[-1])]
            xs = stage(xs)
        return torch.cat([_up2(x, i) for i, x in enumerate(xs)], dim=1)


@register("hrnet_small")
def hrnet_small(num_keypoints: int, width: float = 1.0, norm: str = "batch",
                heatmap_prior: float = 0.01) -> PoseNet:
    """HRNet-style net with branches at strides 8/16/32 (widths 40-80-160), output stride 8."""
    channels = [_round8(c * width) for c in (40, 80, 160)]
    body = HRNetBody(channels, (2, 2, 2), norm)
    head = ConvHead(body.out_channels, num_keypoints, _round8(64 * width), norm)
    return PoseNet(body, head, num_keypoints=num_keypoints, stride=8, name="hrnet_small",
                   heatmap_prior=heatmap_prior)


def _round8(c: float) -> int:
    """Channel counts in multiples of 8 (vectorised conv kernels like them)."""
    return max(8, int(round(c / 8)) * 8)


register_alias("lite", LITE[0], **LITE[1])

# ----------------------------------------------------------------------------------------
# cost


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_hw: tuple[int, int]) -> float:
    """GFLOP per frame (2 x multiply-adds of conv, transposed conv and linear layers).

    ``input_hw`` is rounded up to the multiple of 32 that the frames are padded to (240x320
    costs what 256x320 does). Runs the forward pass on a copy on the ``meta`` device, so it
    costs no arithmetic even for ResNet-50 at full resolution; norms, activations, pooling
    and biases are not counted.
    """
    h, w = (-(-int(v) // SIZE_MULTIPLE) * SIZE_MULTIPLE for v in input_hw)
    meta = copy.deepcopy(model).to("meta").eval()
    macs = 0

    def conv_hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(m, nn.ConvTranspose2d):
            # every input element is scattered into out_channels/groups x kernel outputs
            macs += inp[0][0].numel() * (m.out_channels // m.groups) * _prod(m.kernel_size)
        elif isinstance(m, nn.Conv2d):
            macs += out[0].numel() * (m.in_channels // m.groups) * _prod(m.kernel_size)
        elif isinstance(m, nn.Linear):
            macs += out[0].numel() * m.in_features

    handles = [m.register_forward_hook(conv_hook) for m in meta.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    try:
        with torch.no_grad():
            meta(torch.zeros(1, h, w, 3, dtype=torch.uint8, device="meta"))
    finally:
        for hd in handles:
            hd.remove()
    return 2.0 * macs / 1e9


def _prod(xs: Iterable[int]) -> int:
    out = 1
    for x in xs:
        out *= x
    return out
