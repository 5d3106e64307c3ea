"""Pose networks in Keras 3, with a registry by name (the names mean what they mean for torch).

Every model takes frames ``(N, H, W, 3)`` RGB, float 0..255 (cast uint8 before calling), and
normalises them inside the graph with the same ImageNet statistics as the PyTorch models. It
returns ``[heatmap_logits (N, H/s, W/s, K), locref (N, H/s, W/s, 2K)]`` in Keras' NHWC layout;
locref channel ``2k`` is keypoint k's x offset and ``2k+1`` its y offset (the torch layout
``(N, K, 2, h, w)`` is a reshape and transpose away, see `infer.to_torch_layout`).

Alignment contract (as for torch): heatmap cell (r, c) stands for input pixel
``(c*s + (s-1)/2, r*s + (s-1)/2)``.

- ``lite`` (= ``resnet_slim``) is the torch architecture rebuilt layer for layer: even-kernel
  stride-2 convs (TF "same" padding pads 4x4/2 by one pixel before, like torch's padding=1),
  2x2 average pools and nearest x2 upsampling all keep the grid centred.
- The ``keras.applications`` backbones (ResNet-50, MobileNetV2, EfficientNet-B0) downsample with
  odd kernels, whose output i sits on input 2i (ResNet's symmetric padding) or 2i+1 (the
  others' ``correct_pad``) instead of 2i+0.5. Over five stride-2 layers that adds up to a
  -15.5 px (ResNet) or +15.5 px (the others) shift of every feature, measured from gradient
  support in tests/test_tf_backend.py. We undo it exactly, without touching the backbones:
  a 2x2 stride-1 average pool shifts the image by the missing half pixel, zero padding of 32
  pixels on the far (ResNet) or near side (the others) plus a crop of 2 cells at stride 8
  takes out the whole cells.

No pretrained weights can be downloaded here (``weights=None``): BatchNorm momentum is set to
torch's 0.1 (Keras: 0.9) so the running statistics follow a short training, residual branches
start at zero and the heatmap bias starts at logit(prior), as in the torch models.
"""
from __future__ import annotations

import inspect
import math
import re
from typing import Any, Sequence

import numpy as np

from ..registry import LITE, ModelRegistry
from .env import keras

__all__ = ["MEAN_RGB", "STD_RGB", "add_heads", "create_model", "list_models", "model_stride", "register",
           "model_arguments", "register_alias", "resolve_name"]

# ImageNet statistics on the 0..255 scale: the same numbers as posezoo.training.torch.nets.
MEAN_RGB: tuple[float, float, float] = (123.675, 116.28, 103.53)
STD_RGB: tuple[float, float, float] = (58.395, 57.12, 57.375)
BN_MOMENTUM = 0.9  # Keras' convention: torch's momentum 0.1
BN_EPSILON = 1e-5  # torch's default

layers = keras.layers


def he_fan_out() -> keras.initializers.Initializer:
    """torch's kaiming_normal_(mode="fan_out"). A new initializer per layer: a Keras initializer
    repeats its values on every call, and its seed comes from Python's `random`, which the
    training loop seeds (keras.utils.set_random_seed) so that a run's init is reproducible."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


# ----------------------------------------------------------------------------------------
# registry

_MODELS = ModelRegistry(" for the TensorFlow backend")
register = _MODELS.register
register_alias = _MODELS.register_alias
resolve_name = _MODELS.resolve
model_arguments = _MODELS.arguments


def list_models(include_aliases: bool = True) -> list[str]:
    """Sorted names the TF backend builds (aliases such as ``lite`` included)."""
    return _MODELS.names(include_aliases)


def create_model(name: str, num_keypoints: int, **kwargs: Any) -> keras.Model:
    """Build a registered model; unknown names or keyword arguments raise ValueError.

    The model carries ``pose_stride`` and ``num_keypoints`` attributes, and its ``name`` is
    the canonical architecture (``lite`` builds ``resnet_slim``)."""
    return _MODELS.build(name, num_keypoints, **kwargs)[1]


def model_stride(name: str, **kwargs: Any) -> int:
    """Output stride of a registered model, from its ``stride`` argument (8 unless given)."""
    kwargs = _MODELS.arguments(name, kwargs)
    param = inspect.signature(_MODELS.factory(name)).parameters.get("stride")
    default = param.default if param is not None else 8
    return int(kwargs.get("stride", default))


# ----------------------------------------------------------------------------------------
# building blocks (functional style; every layer is named, so weight files read plainly)


def _norm(x: Any, kind: str, name: str, zero: bool = False) -> Any:
    gamma = "zeros" if zero else "ones"
    if kind == "batch":
        return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                          gamma_initializer=gamma, name=f"{name}_bn")(x)
    if kind == "group":
        c = int(x.shape[-1])
        groups = math.gcd(c, 16) if c >= 16 else 1
        return layers.GroupNormalization(groups, epsilon=BN_EPSILON, gamma_initializer=gamma,
                                         name=f"{name}_gn")(x)
    raise ValueError(f"norm must be 'batch' or 'group', got {kind!r}")


def conv_norm_act(x: Any, cout: int, k: int, name: str, norm: str = "batch", act: bool = True,
                  zero: bool = False) -> Any:
    """Odd-kernel stride-1 conv ("same" padding is symmetric here) + norm (+ ReLU)."""
    x = layers.Conv2D(cout, k, padding="same", use_bias=False, kernel_initializer=he_fan_out(),
                      name=f"{name}_conv")(x)
    x = _norm(x, norm, name, zero)
    return layers.ReLU(name=f"{name}_relu")(x) if act else x


def down(x: Any, cout: int, name: str, norm: str = "batch") -> Any:
    """4x4 stride-2 conv: TF pads one pixel before, so output i is centred on input 2i+0.5."""
    x = layers.Conv2D(cout, 4, strides=2, padding="same", use_bias=False,
                      kernel_initializer=he_fan_out(), name=f"{name}_conv")(x)
    return layers.ReLU(name=f"{name}_relu")(_norm(x, norm, name))


def basic_block(x: Any, cout: int, stride: int, name: str, norm: str) -> Any:
    """Two 3x3 convs + shortcut; stride 2 = 2x2 average pool first (keeps the grid centred)."""
    if stride == 2:
        x = layers.AveragePooling2D(2, name=f"{name}_pool")(x)
    y = conv_norm_act(x, cout, 3, f"{name}_a", norm)
    y = conv_norm_act(y, cout, 3, f"{name}_b", norm, act=False, zero=True)
    short = x if int(x.shape[-1]) == cout else conv_norm_act(x, cout, 1, f"{name}_short", norm, act=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, short]))


def fpn_decoder(feats: Sequence[Any], channels: int, out_stride: int, norm: str) -> Any:
    """Top-down sum of 1x1 laterals from strides (4, 8, 16, 32) back to ``out_stride``."""
    if out_stride not in (4, 8):
        raise ValueError(f"output stride must be 4 or 8, got {out_stride}")
    feats = list(feats)[0 if out_stride == 4 else 1:]
    y = conv_norm_act(feats[-1], channels, 1, f"fpn_lat{len(feats) - 1}", norm, act=False)
    for i in range(len(feats) - 2, -1, -1):
        up = layers.UpSampling2D(2, interpolation="nearest", name=f"fpn_up{i}")(y)
        y = layers.Add(name=f"fpn_add{i}")([conv_norm_act(feats[i], channels, 1, f"fpn_lat{i}", norm, act=False), up])
    return conv_norm_act(layers.ReLU(name="fpn_relu")(y), channels, 3, "fpn_smooth", norm)


def _heads(x: Any, num_keypoints: int, heatmap_prior: float) -> tuple[Any, Any]:
    """1x1 heatmap logits (bias at logit(prior): the loss is not swamped by the empty
    background at the start) and 1x1 locref (starts near zero offsets)."""
    heat = layers.Conv2D(num_keypoints, 1, name="heatmap",
                         kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                         bias_initializer=keras.initializers.Constant(
                             -math.log((1 - heatmap_prior) / heatmap_prior)))(x)
    loc = layers.Conv2D(2 * num_keypoints, 1, name="locref",
                        kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))(x)
    return heat, loc


class Normalize(layers.Layer):
    """(pixels - mean) / std with the statistics as constants inside the call: a traced graph
    then holds them as constants (Keras' Normalization layer keeps them as captured tensors,
    which tf2onnx turns into extra graph inputs)."""

    def __init__(self, mean: Sequence[float] = MEAN_RGB, std: Sequence[float] = STD_RGB, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]

    def call(self, x: Any) -> Any:
        ops = keras.ops
        mean = ops.convert_to_tensor(self.mean, dtype=x.dtype)
        std = ops.convert_to_tensor(self.std, dtype=x.dtype)
        return (x - mean) / std

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "std": self.std}


def _inputs() -> tuple[Any, Any]:
    frames = keras.Input((None, None, 3), name="frames", dtype="float32")
    return frames, Normalize(name="normalize")(frames)


def _finish(frames: Any, heat: Any, loc: Any, name: str, num_keypoints: int, stride: int) -> keras.Model:
    model = keras.Model(frames, [heat, loc], name=name)
    model.pose_stride = stride
    model.num_keypoints = num_keypoints
    return model


def add_heads(model: keras.Model, heads: dict[str, int]) -> keras.Model:
    """The model with extra 1x1 outputs on the features its heatmap head reads, for a
    multi-animal network: ``{"paf": 2 * edges, "identity": individuals}`` (NHWC, after heatmap
    and locref, cropped like them); initialised near zero as in the torch models."""
    if not heads:
        return model
    features = model.get_layer("heatmap").input
    outputs = list(model.outputs)
    crop = next((layer for layer in model.layers if layer.name == "heatmap_crop"), None)
    for name, channels in heads.items():
        y = layers.Conv2D(channels, 1, name=name, kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))(features)
        if crop is not None:
            y = layers.Cropping2D(crop.cropping, name=f"{name}_crop")(y)
        outputs.append(y)
    out = keras.Model(model.inputs, outputs, name=model.name)
    out.pose_stride, out.num_keypoints, out.heads = model.pose_stride, model.num_keypoints, dict(heads)
    return out


def _set_bn_momentum(model: keras.Model) -> None:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _set_bn_momentum(layer)
        elif isinstance(layer, layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM


# ----------------------------------------------------------------------------------------
# lite: the torch resnet_slim, layer for layer


@register("resnet_slim")
def resnet_slim(num_keypoints: int, width: float = 1.0, stride: int = 8, norm: str = "batch",
                heatmap_prior: float = 0.01) -> keras.Model:
    """Slim ResNet (basic blocks 1-2-2-2, widths 32-64-128-192) + FPN decoder (as in torch)."""
    widths = [_round8(c * width) for c in (32, 64, 128, 192)]
    decoder = _round8(64 * width)
    frames, x = _inputs()
    x = down(x, widths[0] // 2, "stem1", norm)
    x = down(x, widths[0], "stem2", norm)
    feats = []
    for i, (w, depth) in enumerate(zip(widths, (1, 2, 2, 2))):
        for b in range(depth):
            x = basic_block(x, w, 2 if (i > 0 and b == 0) else 1, f"stage{i}_block{b}", norm)
        feats.append(x)
    y = fpn_decoder(feats, decoder, stride, norm)
    y = conv_norm_act(y, decoder, 3, "head_shared", norm)
    heat, loc = _heads(y, num_keypoints, heatmap_prior)
    return _finish(frames, heat, loc, "resnet_slim", num_keypoints, stride)


# ----------------------------------------------------------------------------------------
# keras.applications backbones at stride 32 + two 4x4/2 transposed convs to stride 8

# Each builder returns a model from normalised images to stride-32 features; `shift` below is
# the side its features lean to: -1 = 15.5 px before the cell centres (ResNet), +1 = after.


def _resnet50() -> keras.Model:
    return keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))


def _mobilenetv2(width: float) -> keras.Model:
    return keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(None, None, 3),
                                          alpha=width)


def _efficientnet_b0() -> keras.Model:
    full = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(None, None, 3))
    # Skip its built-in Rescaling(1/255) + (unadapted) Normalization: we normalise ourselves.
    return keras.Model(full.get_layer("stem_conv_pad").input, full.output, name="efficientnetb0")


def _application_model(backbone: keras.Model, shift: int, num_keypoints: int, channels: int,
                       heatmap_prior: float, name: str) -> keras.Model:
    frames, x = _inputs()
    # See the module docstring: the pool moves the grid by half a pixel, the 32-pixel padding
    # and the 2-cell crop below by whole cells. Sizes stay multiples of 32: (H + 33) - 1.
    pad = ((1, 32), (1, 32)) if shift < 0 else ((32, 1), (32, 1))
    x = layers.ZeroPadding2D(pad, name="align_pad")(x)
    x = layers.AveragePooling2D(2, strides=1, padding="valid", name="align_halfpixel")(x)
    _set_bn_momentum(backbone)
    y = backbone(x)
    for i in range(2):  # stride 32 -> 8; 4x4/2 transposed convs map cell i onto 2i, 2i+1
        y = layers.Conv2DTranspose(channels, 4, strides=2, padding="same", use_bias=False,
                                   kernel_initializer=he_fan_out(), name=f"deconv{i}_conv")(y)
        y = layers.ReLU(name=f"deconv{i}_relu")(_norm(y, "batch", f"deconv{i}"))
    heat, loc = _heads(y, num_keypoints, heatmap_prior)
    crop = ((2, 2), (2, 2))
    heat = layers.Cropping2D(crop, name="heatmap_crop")(heat)
    loc = layers.Cropping2D(crop, name="locref_crop")(loc)
    return _finish(frames, heat, loc, name, num_keypoints, 8)


@register("resnet50")
def resnet50(num_keypoints: int, channels: int = 256, heatmap_prior: float = 0.01) -> keras.Model:
    """keras.applications ResNet-50 at stride 32 + two 256-channel deconvolutions to stride 8."""
    return _application_model(_resnet50(), -1, num_keypoints, channels, heatmap_prior, "resnet50")


def resnet50_from_torchvision(model: keras.Model, state: dict[str, np.ndarray]) -> int:
    """Set the keras.applications ResNet-50 inside ``model`` from torchvision's ImageNet weights
    (kernels OIHW -> HWIO; Keras' conv biases, which torchvision has not, start at zero). Keras
    strides a block's first 1x1 conv where torchvision strides its 3x3: the weights carry over.
    Returns how many of the model's weight arrays were set."""
    done = 0
    for layer in model.get_layer("resnet50").layers:
        if layer.name in ("conv1_conv", "conv1_bn"):
            key, kind = ("conv1", "conv") if layer.name == "conv1_conv" else ("bn1", "bn")
        elif m := _KERAS_RESNET.match(layer.name):
            stage, block, part, kind = int(m[1]) - 1, int(m[2]) - 1, m[3], m[4]
            index = 0 if kind == "conv" else 1
            key = (f"layer{stage}.{block}.downsample.{index}" if part == "0"
                   else f"layer{stage}.{block}.{kind}{part}")
        else:
            continue
        if kind == "conv":
            kernel = state[f"{key}.weight"].transpose(2, 3, 1, 0)
            arrays = [kernel, np.zeros(kernel.shape[-1], np.float32)]
        else:
            arrays = [state[f"{key}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
        layer.set_weights(arrays)
        done += len(arrays)
    return done


_KERAS_RESNET = re.compile(r"^conv(\d)_block(\d+)_(\d)_(conv|bn)$")


@register("mobilenetv2")
def mobilenetv2(num_keypoints: int, width: float = 1.0, channels: int = 128,
                heatmap_prior: float = 0.01) -> keras.Model:
    """keras.applications MobileNetV2 (``width`` = alpha) + two deconvolutions to stride 8."""
    return _application_model(_mobilenetv2(width), +1, num_keypoints, channels, heatmap_prior, "mobilenetv2")


@register("efficientnet_b0")
def efficientnet_b0(num_keypoints: int, channels: int = 128, heatmap_prior: float = 0.01) -> keras.Model:
    """keras.applications EfficientNet-B0 + two deconvolutions to stride 8 (TF backend only)."""
    return _application_model(_efficientnet_b0(), +1, num_keypoints, channels, heatmap_prior,
                              "efficientnet_b0")


def _round8(c: float) -> int:
    return max(8, int(round(c / 8)) * 8)


register_alias("lite", LITE[0], **LITE[1])
