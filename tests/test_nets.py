"""PyTorch pose networks: output contract, grid alignment, registry, cost counting, ONNX export."""
from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from posezoo.training.torch.nets import (  # noqa: E402
    ConvHead,
    PoseNet,
    count_flops,
    count_params,
    create_model,
    list_models,
    register,
    resolve_name,
)

MODELS = list_models(include_aliases=False)
LITE_CANDIDATES = ["resnet_slim", "hrnet_small", "mobilenetv2"]


def _frames(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8)


@pytest.fixture(scope="module")
def models() -> dict[str, PoseNet]:
    torch.manual_seed(0)
    return {name: create_model(name, 3) for name in MODELS}


def test_registry_has_resnet50_and_three_lite_candidates() -> None:
    assert {"resnet50", *LITE_CANDIDATES} <= set(MODELS)
    assert "lite" in list_models() and "lite" not in MODELS
    assert resolve_name("lite") in LITE_CANDIDATES
    m = create_model("lite", 2)
    assert m.name == resolve_name("lite")  # provenance records the real architecture
    # the alias carries the measured default width: 0.75 x (32, 64, 128, 192) channels
    assert [stage[0].body[0][0].out_channels for stage in m.body.stages] == [24, 48, 96, 144]
    assert create_model("lite", 2, width=1.0).body.stages[-1][0].body[0][0].out_channels == 192


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("hw", [(64, 96), (128, 160)])
def test_output_shapes(models: dict[str, PoseNet], name: str, hw: tuple[int, int]) -> None:
    m = models[name].eval()
    assert (m.num_keypoints, m.name) == (3, name)
    s = m.stride
    with torch.no_grad():
        heat, loc = m(_frames(2, *hw))
    assert heat.shape == (2, 3, hw[0] // s, hw[1] // s)
    assert loc.shape == (2, 3, 2, hw[0] // s, hw[1] // s)
    assert heat.dtype == loc.dtype == torch.float32
    assert torch.isfinite(heat).all() and torch.isfinite(loc).all()


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_the_input(models: dict[str, PoseNet], name: str) -> None:
    m = models[name].train()
    x = _frames(2, 32, 64).float().requires_grad_(True)
    heat, loc = m(x)
    (heat.square().mean() + loc.square().mean() + heat[:, 0, 1, 1].sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    first = next(mod for mod in m.modules() if isinstance(mod, nn.Conv2d))
    assert first.weight.grad.abs().sum() > 0
    assert m.head.heatmap.bias.grad.abs().sum() > 0 and m.head.locref.weight.grad.abs().sum() > 0
    m.zero_grad(set_to_none=True)


def test_uint8_and_float_frames_agree_and_normalisation_is_inside(models: dict[str, PoseNet]) -> None:
    m = models["resnet_slim"].eval()
    x = _frames(1, 64, 64)
    with torch.no_grad():
        a, b = m(x), m(x.float())
        grey = m(torch.full((1, 64, 64, 3), 117, dtype=torch.uint8))[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # constant mid-grey input: the first layers see ~0 after the in-graph normalisation
    assert torch.allclose(m.mean.flatten(), torch.tensor([123.675, 116.28, 103.53]))
    assert grey.std() < a[0].std()


def test_bad_input_is_rejected_with_a_clear_message(models: dict[str, PoseNet]) -> None:
    m = models["resnet_slim"]
    with pytest.raises(ValueError, match=r"multiples of 32.*70x64"):
        m(_frames(1, 70, 64))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        m(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def _symmetrise(model: nn.Module) -> None:
    """Make every kernel mirror-symmetric: the net is then flip-equivariant iff its grid is centred."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                w = mod.weight
                w.copy_((w + w.flip(-1) + w.flip(-2) + w.flip(-1, -2)) / 4)


def _flip_error(model: nn.Module, hw: tuple[int, int]) -> float:
    x = _frames(1, *hw, seed=3)
    with torch.no_grad():
        heat = model(x)[0]
        err_w = (model(x.flip(2))[0] - heat.flip(-1)).abs().max()
        err_h = (model(x.flip(1))[0] - heat.flip(-2)).abs().max()
    return float(max(err_w, err_h)) / float(heat.std())  # relative to the spatial signal


@pytest.mark.parametrize("name", MODELS)
def test_grid_is_centred_flip_equivariance(models: dict[str, PoseNet], name: str) -> None:
    """Cell c stands for pixel c*s + (s-1)/2: mirroring the frame must mirror the heatmap exactly
    when all kernels are symmetric. An odd-kernel stride-2 conv (half a pixel off per level)
    breaks this, as the control below shows."""
    # train mode: batch statistics (flip-invariant) give realistic activations at init
    m = copy.deepcopy(models[name]).train()
    _symmetrise(m)
    assert _flip_error(m, (32, 64)) < 2e-3  # small: cheap even for ResNet-50


@pytest.mark.parametrize("name,kwargs", [("resnet_slim", {"stride": 4}),
                                         ("mobilenetv2", {"stride": 4, "width": 0.5}),
                                         ("hrnet_small", {"norm": "group", "width": 0.5})])
def test_variants_stride4_and_groupnorm(name: str, kwargs: dict) -> None:
    torch.manual_seed(2)
    m = create_model(name, 2, **kwargs).train()
    heat, loc = m(_frames(1, 64, 96))
    s = kwargs.get("stride", 8)
    assert m.stride == s and heat.shape == (1, 2, 64 // s, 96 // s) and loc.shape[-2:] == heat.shape[-2:]
    if kwargs.get("norm") == "group":
        assert any(isinstance(x, nn.GroupNorm) for x in m.modules())
        assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    _symmetrise(m)
    assert _flip_error(m, (32, 64)) < 2e-3


def test_flip_equivariance_detects_an_off_by_half_network() -> None:
    body = nn.Sequential(*[nn.Sequential(nn.Conv2d(c, 8, 3, stride=2, padding=1), nn.ReLU())
                           for c in (3, 8, 8)])
    torch.manual_seed(1)
    bad = PoseNet(body, ConvHead(8, 2, 8), num_keypoints=2, stride=8, name="bad").train()
    _symmetrise(bad)
    assert _flip_error(bad, (32, 64)) > 0.1


def test_registry_errors_and_registration() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet51'.*resnet50"):
        create_model("resnet51", 3)
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['widht'\].*width"):
        create_model("resnet_slim", 3, widht=0.5)
    with pytest.raises(ValueError, match="num_keypoints"):
        create_model("resnet_slim", 0)
    with pytest.raises(ValueError, match="already registered"):
        register("resnet50")(lambda num_keypoints: None)
    narrow = create_model("resnet_slim", 3, width=0.5)
    assert count_params(narrow) < count_params(create_model("resnet_slim", 3)) / 3


class _OneConv(nn.Module):
    """conv 3->8 3x3 (same), 4x4/2 transposed conv 8->4, linear 4->5 over the channel axis."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.deconv = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.deconv(self.conv(x.permute(0, 3, 1, 2).float()))
        return self.fc(y.permute(0, 2, 3, 1))


def test_count_flops_by_hand() -> None:
    h, w = 32, 64
    conv = h * w * 8 * 3 * 3 * 3                 # outputs x (in/groups x k x k)
    deconv = h * w * 8 * 4 * 4 * 4              # inputs x (out x k x k)
    fc = (2 * h) * (2 * w) * 5 * 4               # outputs x in_features
    assert count_flops(_OneConv(), (h, w)) == pytest.approx(2 * (conv + deconv + fc) / 1e9)
    # sizes are padded up to the multiple of 32 that frames are padded to
    assert count_flops(_OneConv(), (20, 50)) == count_flops(_OneConv(), (32, 64))
    assert count_params(nn.Conv2d(3, 8, 3)) == 8 * 27 + 8


def test_count_flops_leaves_the_model_untouched(models: dict[str, PoseNet]) -> None:
    m = models["hrnet_small"]
    before = {k: v.clone() for k, v in m.state_dict().items()}
    count_flops(m, (64, 64))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert next(m.parameters()).device.type == "cpu"


def test_resnet50_cost_like_deeplabcut() -> None:
    m = create_model("resnet50", 4)
    # ResNet-50 to stride 16 at 640x480: about 4 GMAC at 224^2, x6 for the pixels, plus the
    # dilated last stage run at 4x its usual resolution -> tens of GFLOP
    g = count_flops(m, (480, 640))
    assert 50 < g < 120
    assert 23e6 < count_params(m) < 25.5e6  # torchvision's ResNet-50 without fc: 23.5M


@pytest.mark.parametrize("name", LITE_CANDIDATES)
def test_lite_candidates_in_budget(models: dict[str, PoseNet], name: str) -> None:
    # half of a 640x480 frame, padded to 256x320
    assert 0.5 <= count_flops(models[name], (240, 320)) <= 1.6


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter is "legacy"
def test_onnx_export_dynamic_matches_onnxruntime(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    m = create_model("resnet_slim", 2, width=0.25).train()
    with torch.no_grad():  # non-trivial BN statistics, so folding them is actually checked
        m(_frames(4, 64, 96, seed=5))
    m.eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(m, (_frames(1, 64, 96),), str(path), dynamo=False, opset_version=17,
                      input_names=["frames"], output_names=["heatmap", "locref"],
                      dynamic_axes={"frames": {0: "batch", 1: "height", 2: "width"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == "tensor(uint8)"
    x = _frames(2, 96, 128, seed=9)  # another batch and size than the export example
    heat, loc = sess.run(None, {"frames": x.numpy()})
    with torch.no_grad():
        ref_heat, ref_loc = m(x)
    assert heat.shape == (2, 2, 12, 16) and loc.shape == (2, 2, 2, 12, 16)
    np.testing.assert_allclose(heat, ref_heat.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(loc, ref_loc.numpy(), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_print_cost_and_speed_table() -> None:
    """Not an assertion: GFLOP and torch CPU frames/s at 240x320 (padded to 256x320)."""
    x = _frames(1, 256, 320)
    print(f"\n{'model':14s} {'GFLOP':>6s} {'params':>7s} {'fps':>6s}")
    for name in MODELS:
        m = create_model(name, 4).eval()
        with torch.no_grad():
            m(x)
            times = []
            for _ in range(10):
                t = time.perf_counter()
                m(x)
                times.append(time.perf_counter() - t)
        print(f"{name:14s} {count_flops(m, (240, 320)):6.2f} {count_params(m) / 1e6:6.2f}M "
              f"{1 / min(times):6.1f}")
