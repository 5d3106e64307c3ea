"""Fine-tuning: a run starts from an earlier run's weights (`model.init`, `posezoo train --init`)."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from posezoo.training.api import train  # noqa: E402
from posezoo.training.run import RunError  # noqa: E402
from posezoo.training.synthetic import make_project  # noqa: E402

FAST = {"model": "lite", "model.width": 0.25, "steps": 4, "batch_size": 4, "scale": 1.0,
        "input.train_size": [64, 64], "train.threads": 1, "split.test_indices": [0, 1]}


def _weights(run: Path, name: str = "last") -> dict[str, torch.Tensor]:
    return torch.load(run / "snapshots" / f"{name}.pt", map_location="cpu", weights_only=False)["model"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("init")
    project = make_project(root / "four", n_frames=10, video_frames=1, image_size=(96, 96), seed=2)
    return train(project, output=root / "source", progress=False, **FAST)


def test_a_run_starts_from_the_earlier_runs_weights(source: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # another project with more keypoints: the backbone is copied, the heads start afresh
    project = make_project(tmp_path / "six", n_frames=10, video_frames=1, image_size=(96, 96), seed=5,
                           bodyparts=("snout", "leftear", "rightear", "neck", "bodycenter", "tailbase"))
    tuned = train(project, output=tmp_path / "tuned", progress=False, init=str(source),
                  **{**FAST, "optimizer.lr": 1e-9})  # steps too small to move the weights
    assert "initialised" in capsys.readouterr().out
    before, after = _weights(source, "best"), _weights(tuned)
    copied = [k for k in after if k in before and before[k].shape == after[k].shape]
    assert len(copied) >= len(after) // 2 and len(copied) < len(after)  # the heads differ in shape
    learned = [k for k in copied if "running" not in k and "num_batches" not in k]  # BatchNorm statistics move anyway
    assert all(torch.allclose(before[k], after[k], atol=1e-5) for k in learned)
    fresh = train(project, output=tmp_path / "fresh", progress=False, **{**FAST, "optimizer.lr": 1e-9})
    conv = next(k for k in copied if k.endswith("weight") and before[k].ndim == 4)
    assert not torch.allclose(_weights(fresh)[conv], before[conv])  # without init: other weights


def test_bad_sources_are_named(source: Path, tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", n_frames=10, video_frames=1, image_size=(96, 96), seed=3)
    with pytest.raises(RunError, match="not a posezoo run directory"):
        train(project, output=tmp_path / "a", progress=False, init=str(tmp_path), **FAST)
    with pytest.raises(RunError, match="only .* weights fit"):
        train(project, output=tmp_path / "b", progress=False, init=str(source), **{**FAST, "model.width": 0.5})
    assert not (tmp_path / "b" / "run.json").exists()  # a failed start leaves no run behind



@pytest.mark.tf
def test_tf_runs_start_from_tf_runs(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    project = make_project(tmp_path / "p", n_frames=10, video_frames=1, image_size=(96, 96), seed=2)
    tf_fast = {**FAST, "model.width": 0.5}  # the TF lite network's narrowest width
    source = train(project, backend="tf", output=tmp_path / "source", progress=False, **tf_fast)
    tuned = train(project, backend="tf", output=tmp_path / "tuned", progress=False, init=str(source),
                  **{**tf_fast, "optimizer.lr": 1e-9})
    from posezoo.training.run import load_run
    from posezoo.training.tf import trainer

    a, b = (trainer(load_run(r)) for r in (source, tuned))
    a.restore("best"), b.restore("last")
    learned = [(x, y) for (name, x), (_, y) in zip(a.state_arrays(), b.state_arrays()) if "moving" not in name]
    assert len(learned) > 50 and all(abs(x - y).max() < 1e-5 for x, y in learned)  # BatchNorm statistics move
    with pytest.raises(RunError, match="a tf run cannot start a torch run"):
        train(project, output=tmp_path / "x", progress=False, init=str(source), **FAST)


# ------------------------------------------------------------------ ImageNet weights and zoo entries


def _torchvision_resnet50(path: Path) -> dict[str, torch.Tensor]:
    """A file in the format of torchvision's resnet50-0676ba61.pth (its names and shapes; random values)."""
    g = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}

    def bn(key: str, c: int) -> None:
        state.update({f"{key}.weight": torch.rand(c, generator=g) + 0.5, f"{key}.bias": torch.randn(c, generator=g),
                      f"{key}.running_mean": torch.randn(c, generator=g),
                      f"{key}.running_var": torch.rand(c, generator=g) + 0.5,
                      f"{key}.num_batches_tracked": torch.tensor(0)})

    state["conv1.weight"] = torch.randn(64, 3, 7, 7, generator=g) * 0.05
    bn("bn1", 64)
    cin = 64
    for stage, (blocks, w) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for b in range(blocks):
            key = f"layer{stage}.{b}"
            for j, shape in enumerate(((w, cin, 1, 1), (w, w, 3, 3), (4 * w, w, 1, 1)), start=1):
                state[f"{key}.conv{j}.weight"] = torch.randn(*shape, generator=g) * 0.05
                bn(f"{key}.bn{j}", shape[0])
            if b == 0:
                state[f"{key}.downsample.0.weight"] = torch.randn(4 * w, cin, 1, 1, generator=g) * 0.05
                bn(f"{key}.downsample.1", 4 * w)
            cin = 4 * w
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 2048, generator=g), torch.zeros(1000)
    torch.save(state, path)
    return state


@pytest.fixture
def imagenet_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """torchvision-format weights served over HTTP on 127.0.0.1, pinned in the table like the real file."""
    import hashlib

    from posezoo.zoo import make_server, pretrained

    served = tmp_path / "served"
    served.mkdir()
    state = _torchvision_resnet50(served / "resnet50-test.pth")
    data = (served / "resnet50-test.pth").read_bytes()
    (served / "index.json").write_text("{}")  # make_server serves zoo directories only
    server = make_server(served, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/resnet50-test.pth"
    monkeypatch.setitem(pretrained.IMAGENET, "resnet50",
                        pretrained.WeightsFile(url, hashlib.sha256(data).hexdigest(), len(data)))
    monkeypatch.setenv("POSEZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.delenv("POSEZOO_OFFLINE", raising=False)
    try:
        yield state, server
    finally:
        server.shutdown()
        server.server_close()


RESNET = {**{k: v for k, v in FAST.items() if k != "model.width"}, "model": "resnet50", "steps": 1, "batch_size": 2,
          "optimizer.lr": 1e-9}


def test_imagenet_weights_download_verified_and_start_resnet50(imagenet_server, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from posezoo.zoo import NotCachedError

    state, server = imagenet_server
    project = make_project(tmp_path / "p", n_frames=6, video_frames=1, image_size=(96, 96), seed=1)
    run = train(project, output=tmp_path / "r", progress=False, init="imagenet", **RESNET)
    ours = _weights(run)

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return torch.allclose(a, b, atol=1e-6)  # one step at lr 1e-9

    assert same(ours["body.stages.2.3.conv2.0.weight"], state["layer3.3.conv2.weight"])
    assert same(ours["body.stages.1.0.short.1.weight"], state["layer2.0.downsample.0.weight"])
    assert same(ours["body.stem.0.weight"], state["conv1.weight"][:, :, 1:, 1:])  # 7x7 -> our 6x6
    assert same(ours["body.stages.3.2.conv3.1.weight"], state["layer4.2.bn3.weight"])
    assert same(ours["body.stages.0.1.conv1.1.bias"], state["layer1.1.bn1.bias"])
    cached = Path(tmp_path / "home" / "pretrained" / "resnet50-test.pth")
    assert cached.is_file()

    # offline: the cached copy is used, nothing is contacted
    server.shutdown()
    monkeypatch.setenv("POSEZOO_OFFLINE", "1")
    train(project, output=tmp_path / "offline", progress=False, init="imagenet", **RESNET)
    cached.unlink()
    with pytest.raises(NotCachedError, match="resnet50-test.pth"):
        train(project, output=tmp_path / "offline2", progress=False, init="imagenet", **RESNET)
    assert not (tmp_path / "offline2" / "run.json").exists()


def test_imagenet_weights_that_do_not_match_their_pin_are_refused(imagenet_server, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from posezoo.zoo import IntegrityError, pretrained

    pinned = pretrained.IMAGENET["resnet50"]
    monkeypatch.setitem(pretrained.IMAGENET, "resnet50", pretrained.WeightsFile(pinned.url, "0" * 64, pinned.size))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        pretrained.fetch(pretrained.IMAGENET["resnet50"], quiet=True)
    assert not list((tmp_path / "home" / "pretrained").glob("resnet50-test.pth*"))  # nothing half-written kept


def test_imagenet_needs_a_network_with_public_weights(tmp_path: Path) -> None:
    from posezoo.zoo import ZooError

    project = make_project(tmp_path / "p", n_frames=6, video_frames=1, image_size=(96, 96), seed=1)
    with pytest.raises(ZooError, match="no public ImageNet weights for the 'resnet_slim' network"):
        train(project, output=tmp_path / "r", progress=False, init="imagenet", **FAST)


def test_weights_files_run_no_code(tmp_path: Path) -> None:
    from posezoo.training.pretrained import read_torch_zip

    torch.save({"a": torch.arange(6.0).reshape(2, 3).t(), "n": torch.tensor(7)}, tmp_path / "ok.pth")
    arrays = read_torch_zip(tmp_path / "ok.pth")
    assert arrays["a"].tolist() == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]] and int(arrays["n"]) == 7  # strides kept
    torch.save({"a": torch.zeros(2), "extra": {1, 2}}, tmp_path / "bad.pth")
    with pytest.raises(RunError, match="set is not allowed in a weights file"):
        read_torch_zip(tmp_path / "bad.pth")


def test_a_zoo_entry_packed_with_weights_starts_a_run(source: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from posezoo.export import export
    from posezoo.zoo import ZooError, make_server, pack, publish

    export(source)
    zoo = tmp_path / "zoo"
    publish(pack(source, tmp_path / "entry", name="tiny-init", with_weights=True, measure_speed=False), zoo)
    publish(pack(source, tmp_path / "bare", name="tiny-bare", measure_speed=False), zoo)
    assert "--init zoo:tiny-init@1.0.0" in (tmp_path / "entry" / "README.md").read_text()
    from posezoo.zoo.site import build_site

    pages = {str(p): p.read_text() for p in build_site(zoo, tmp_path / "site").parent.rglob("*.html")}
    cards = {Path(p).parent.name: text for p, text in pages.items() if Path(p).parent.name.startswith("tiny-")}
    assert "--init zoo:tiny-init@1.0.0" in cards["tiny-init"] and "--init" not in cards["tiny-bare"]
    server = make_server(zoo, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setenv("POSEZOO_ZOO", f"http://127.0.0.1:{server.server_address[1]}/")
    monkeypatch.setenv("POSEZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.delenv("POSEZOO_OFFLINE", raising=False)
    try:
        project = make_project(tmp_path / "p", n_frames=10, video_frames=1, image_size=(96, 96), seed=4)
        tuned = train(project, output=tmp_path / "tuned", progress=False, init="zoo:tiny-init",
                      **{**FAST, "optimizer.lr": 1e-9})
        before, after = _weights(source, "best"), _weights(tuned)
        learned = [k for k in before if "running" not in k and "num_batches" not in k]
        assert all(torch.allclose(before[k], after[k], atol=1e-5) for k in learned)
        with pytest.raises(RunError, match="no training weights"):
            train(project, output=tmp_path / "x", progress=False, init="zoo:tiny-bare", **FAST)
        with pytest.raises(ZooError, match="not in any zoo source"):
            train(project, output=tmp_path / "y", progress=False, init="zoo:no-such-model", **FAST)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.tf
def test_imagenet_weights_start_the_tf_resnet50(imagenet_server, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from posezoo.training.run import load_run
    from posezoo.training.tf import trainer

    state, _ = imagenet_server
    project = make_project(tmp_path / "p", n_frames=6, video_frames=1, image_size=(96, 96), seed=1)
    run = train(project, backend="tf", output=tmp_path / "r", progress=False, init="imagenet",
                **{**RESNET, "model.channels": 32})
    t = trainer(load_run(run))
    t.restore("last")
    body = t.model.get_layer("resnet50")
    kernel, bias = body.get_layer("conv3_block2_2_conv").get_weights()
    assert np.allclose(kernel, state["layer2.1.conv2.weight"].numpy().transpose(2, 3, 1, 0), atol=1e-6)
    assert np.allclose(bias, 0, atol=1e-6)
    gamma = body.get_layer("conv5_block1_0_bn").get_weights()[0]
    assert np.allclose(gamma, state["layer4.0.downsample.1.weight"].numpy(), atol=1e-6)
    stem = body.get_layer("conv1_conv").get_weights()[0]
    assert np.allclose(stem, state["conv1.weight"].numpy().transpose(2, 3, 1, 0), atol=1e-6)
