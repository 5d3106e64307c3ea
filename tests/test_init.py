"""Fine-tuning: a run starts from an earlier run's weights (`model.init`, `posezoo train --init`)."""
from __future__ import annotations

from pathlib import Path

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
