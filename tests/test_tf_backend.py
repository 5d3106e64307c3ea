"""The TensorFlow backend against the PyTorch one: same recipe, same export contract, same accuracy.

One synthetic project is trained briefly with both backends (the `lite` nets), exported through
`posezoo.training.api.export` and loaded in PoseModel: both files must expose the same graph
contract and spec fields and predict the frames they trained on within a few pixels.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from posezoo.runtime.model import PoseModel  # noqa: E402
from posezoo.export import export  # noqa: E402
from posezoo.training.api import train  # noqa: E402
from posezoo.training.run import load_run  # noqa: E402

# Eight training frames without augmentation: both backends memorise them to ~2-3 px in 30
# short epochs (measured: tf 2.6 px, torch 2.0 px), a clear margin under the 5 px bound.
N_TRAIN = 8
RECIPE: dict[str, Any] = {
    "model": "lite", "epochs": 30, "batch_size": 4, "eval_every": 60, "scale": 1.0,
    "input.train_size": [160, 192], "augment.enabled": False, "optimizer.lr": 0.003,
    "schedule.warmup": 0.07, "train.threads": 1, "split.test_indices": list(range(N_TRAIN, 48)),
}


def _log(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def both(tmp_path_factory, synthetic_project: Path) -> dict[str, tuple[Path, Path]]:
    """backend -> (run directory, exported .onnx with heatmaps)."""
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("tf_vs_torch")
    out = {}
    for backend in ("tf", "torch"):
        run = train(synthetic_project, backend=backend, output=root / backend, progress=False, **RECIPE)
        exported = export(run, root / f"{backend}.onnx", heatmaps=True, progress=lambda _msg: None)
        out[backend] = (run, exported.path)
    return out


def test_tf_run_directory_mirrors_torch(both: dict[str, tuple[Path, Path]]) -> None:
    tf_run, torch_run = both["tf"][0], both["torch"][0]
    assert json.loads((tf_run / "run.json").read_text())["backend"] == "tf"
    for name in ("config.yaml", "split.json", "spec.json", "metrics.json", "snapshots/last.weights.h5",
                 "snapshots/best.weights.h5"):
        assert (tf_run / name).is_file(), name
    assert (tf_run / "split.json").read_text() == (torch_run / "split.json").read_text()
    a, b = _log(tf_run), _log(torch_run)
    assert list(a[0]) == list(b[0]) and len(a) == len(b) == RECIPE["epochs"]
    # Same batches, losses, initial heatmap prior and schedule: the curves start together and
    # both fall (different inits and kernels, so not equal beyond that).
    assert float(a[0]["loss"]) == pytest.approx(float(b[0]["loss"]), rel=0.05)
    assert [float(r["lr"]) for r in a] == pytest.approx([float(r["lr"]) for r in b], rel=1e-9)
    assert float(a[-1]["loss"]) < 0.5 * float(a[0]["loss"])
    tf_metrics = json.loads((tf_run / "metrics.json").read_text())
    torch_metrics = json.loads((torch_run / "metrics.json").read_text())
    assert tf_metrics.keys() == torch_metrics.keys()
    assert tf_metrics["test"].keys() == torch_metrics["test"].keys()


def test_exports_share_the_graph_contract_and_spec(both: dict[str, tuple[Path, Path]]) -> None:
    import onnxruntime as ort

    models = {b: PoseModel.load(path, device="cpu") for b, (_, path) in both.items()}
    specs = {b: m.spec.to_dict() for b, m in models.items()}
    for field in ("keypoints", "skeleton", "pcutoff", "input", "preprocess", "outputs", "decode"):
        assert specs["tf"][field] == specs["torch"][field], field
    assert set(specs["tf"]["outputs"]) == {"keypoints", "heatmaps"}

    def signature(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return ([(i.name, i.type, i.shape) for i in sess.get_inputs()],
                [(o.name, o.type, o.shape) for o in sess.get_outputs()])

    assert signature(both["tf"][1]) == signature(both["torch"][1])
    assert signature(both["tf"][1])[0] == [("frames", "tensor(uint8)", ["batch", "height", "width", 3])]

    prov = specs["tf"]["provenance"]
    assert prov["backend"] == "tf" and {"tensorflow", "tf2onnx", "keras"} <= set(prov["framework_versions"])
    assert prov["parity"]["passed"] and prov["parity"]["max_px_diff"] < 0.01
    from posezoo.runtime.files import weights_sha256
    from posezoo.training.tf import trainer

    best = trainer(load_run(both["tf"][0]))
    best.restore("best")
    assert prov["weights_sha256"] == weights_sha256(best.state_arrays())


def test_exported_models_predict_their_training_frames(both: dict[str, tuple[Path, Path]]) -> None:
    run = load_run(both["tf"][0])
    idx = list(run.split.train)
    frames = run.frames(idx)
    gt = run.project.labels.xy[idx, 0]
    errors = {}
    for backend, (_, path) in both.items():
        model = PoseModel.load(path, device="cpu")
        pred = model.predict(frames, color="rgb")
        errors[backend] = float(np.nanmean(np.linalg.norm(pred.xy[:, 0] - gt, axis=-1)))
        # the heatmaps output agrees with the keypoints output (its argmax cell holds the score)
        tensor = model.prepare(frames[:2], color="rgb").tensor
        kps, heat = model.session.run(["keypoints", "heatmaps"], {"frames": tensor})
        assert heat.shape == (2, len(model.keypoints), tensor.shape[1] // 8, tensor.shape[2] // 8)
        np.testing.assert_allclose(heat.reshape(2, len(model.keypoints), -1).max(-1), kps[..., 2], rtol=1e-6)
    assert errors["tf"] < 5.0 and errors["torch"] < 5.0, errors


@pytest.mark.slow  # four TF trainings with their traces: about 40 s on 2 busy cores
def test_cli_trains_tf_and_resume_matches_an_uninterrupted_run(tmp_path: Path, synthetic_project: Path) -> None:
    """`posezoo train --backend tf` runs one epoch and stops at its (tiny) time limit; two
    in-process resumes each continue from the last snapshot; the losses and final weights equal
    those of the same config trained without stopping."""
    opts = ["--model", "lite", "--epochs", "3", "--batch-size", "8", "--set", "input.scale=0.5",
            "--set", "input.train_size=[64,64]", "--set", "train.eval_every=3", "--set", "train.threads=1",
            "--set", f"split.test_indices={list(range(4, 48, 8))}"]
    stopped = tmp_path / "stopped"
    cli = subprocess.run([sys.executable, "-m", "posezoo.runtime.cli", "train", str(synthetic_project),
                          "--backend", "tf", "--output", str(stopped), "--time-limit", "1e-6", "--quiet", *opts],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "run directory:" in cli.stdout and "test: rmse" in cli.stdout
    assert len(_log(stopped)) == 1 and json.loads((stopped / "run.json").read_text())["backend"] == "tf"
    for epochs_done in (2, 3):
        train(output=stopped, resume=True, progress=False)
        assert [r["epoch"] for r in _log(stopped)] == [str(e) for e in range(epochs_done)]

    run = load_run(stopped)
    straight = train(synthetic_project, output=tmp_path / "straight", progress=False,
                     config=run.cfg.with_overrides({"train.time_limit_minutes": None}))
    for a, b in zip(_log(straight), _log(stopped)):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-5), (a, b)
        assert float(a["lr"]) == pytest.approx(float(b["lr"]), rel=1e-12)
    from posezoo.training.tf import trainer

    weights = []
    for r in (load_run(straight), run):
        t = trainer(r)
        t.restore("last")
        weights.append(t.model.get_weights())
    w_straight, w_stopped = weights
    for x, y in zip(w_straight, w_stopped):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_losses_equal_the_torch_losses() -> None:
    torch = pytest.importorskip("torch")
    from posezoo.training.tf.train import losses as tf_losses
    from posezoo.training.torch.train import losses as torch_losses

    rng = np.random.default_rng(0)
    n, k, h, w = 2, 3, 4, 5
    batch = {"heatmap": rng.random((n, k, h, w), np.float32),
             "locref": rng.normal(0, 2, (n, k, 2, h, w)).astype(np.float32),
             "locref_mask": (rng.random((n, k, h, w)) < 0.4).astype(np.float32),
             "weight": np.array([[1, 0, 1], [1, 1, 0]], np.float32)}
    logits = rng.normal(0, 2, (n, k, h, w)).astype(np.float32)
    locref = rng.normal(0, 2, (n, k, 2, h, w)).astype(np.float32)
    expect = torch_losses((torch.from_numpy(logits), torch.from_numpy(locref)),
                          {key: torch.from_numpy(v) for key, v in batch.items()}, 0.05)
    # the TF model's NHWC outputs: locref channel 2k is keypoint k's x, 2k+1 its y
    nhwc = (logits.transpose(0, 2, 3, 1), locref.transpose(0, 3, 4, 1, 2).reshape(n, h, w, 2 * k))
    got = tf_losses(nhwc, batch, 0.05)
    for g, e in zip(got, expect):
        assert float(g) == pytest.approx(float(e), rel=1e-5)
        assert float(e) > 0


def _grid_error(model: Any, size: int) -> tuple[float, float]:
    """Offset (px) of the centre of the input region a 4x4 block of stride-8 cells depends on,
    from the block's nominal centre. Nearest/transposed upsampling makes a single cell's support
    lean by half a coarse cell, a block aligned to the stride-32 grid does not."""
    x = tf.Variable(np.random.default_rng(0).random((1, size, size, 3), np.float32) * 255)
    with tf.GradientTape() as tape:
        heat, _ = model(x, training=False)
        i = 4 * (heat.shape[1] // 8)
        total = tf.reduce_sum(heat[0, i:i + 4, i:i + 4, :])
    grad = np.abs(tape.gradient(total, x).numpy()[0]).sum(-1)
    rows, cols = np.nonzero(grad.sum(1))[0], np.nonzero(grad.sum(0))[0]
    want = (i + 1.5) * 8 + 3.5
    return (rows[0] + rows[-1]) / 2 - want, (cols[0] + cols[-1]) / 2 - want


def test_lite_keeps_the_decode_grid() -> None:
    from posezoo.training.tf.nets import create_model

    model = create_model("lite", 2)
    assert model.pose_stride == 8 and model.name == "resnet_slim"
    heat, loc = model(np.zeros((1, 64, 96, 3), np.float32))
    assert heat.shape == (1, 8, 12, 2) and loc.shape == (1, 8, 12, 4)
    assert _grid_error(model, 256) == (0.0, 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("resnet50", 768), ("mobilenetv2", 1024)])
def test_application_backbones_keep_the_decode_grid(name: str, size: int) -> None:
    """Without the half-pixel pool and the pad/crop these are 15.5 px off (see nets.py)."""
    from posezoo.training.tf.nets import create_model

    assert _grid_error(create_model(name, 2), size) == (0.0, 0.0)


def test_unknown_or_torch_only_models_name_the_tf_models() -> None:
    from posezoo.training.config import TrainConfig
    from posezoo.training.tf import list_models, model_stride

    assert {"lite", "resnet50", "mobilenetv2", "efficientnet_b0"} <= set(list_models())
    with pytest.raises(ValueError, match=r"unknown model .hrnet_small. for the TensorFlow backend; available: "
                                         r".*efficientnet_b0.*lite.*resnet50"):
        model_stride(TrainConfig().with_overrides({"backend": "tf", "model.name": "hrnet_small"}))
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['depth'\]; allowed"):
        model_stride(TrainConfig().with_overrides({"model.depth": 3}))
    assert model_stride(TrainConfig().with_overrides({"model.stride": 4})) == 4
