"""The training config: defaults, YAML round trip, dotted overrides, hash, and every error kind."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from posezoo.training.config import ConfigError, TrainConfig
from posezoo.training.data import AugmentConfig, TargetConfig


def test_defaults_are_valid_and_complete() -> None:
    cfg = TrainConfig()
    assert cfg.backend == "torch" and cfg.model.name == "lite" and cfg.model.kwargs == {}
    assert cfg.input.size_multiple == 32 and cfg.input.interpolation == "area"
    assert cfg.input.scale is None and cfg.input.train_size is None and cfg.train.batch_size is None  # from the data
    assert cfg.train.steps >= 1 and cfg.train.epochs is None and cfg.train.total_steps(3) == cfg.train.steps
    assert isinstance(cfg.augment, AugmentConfig) and isinstance(cfg.targets, TargetConfig)
    assert cfg.optimizer.name == "adamw" and cfg.schedule.name == "cosine"
    assert cfg.split.test_indices is None and 0 < cfg.split.train_fraction < 1
    # an empty mapping means "all defaults"
    assert TrainConfig.from_dict({}) == cfg and TrainConfig.from_dict({}).hash() == cfg.hash()


def test_yaml_round_trip(tmp_path: Path) -> None:
    text = """
backend: tf
model: {name: resnet_slim, width: 0.5, stride: 4}
input: {scale: 1, train_size: [192, 256]}
augment: {rotation: 10, scale: [0.9, 1.1], flip_pairs: [[leftear, rightear]]}
targets: {stride: 4, sigma: 5}
optimizer: {lr: 0.002}
schedule: {name: step, milestones: [0.5, 0.8], gamma: 0.5, warmup: 0}
train: {epochs: 100, batch_size: 4, time_limit_minutes: 30, threads: 2, device: "cuda:1"}
split: {test_indices: [4, 9, 14], seed: 3}
"""
    src = tmp_path / "train.yaml"
    src.write_text(text)
    cfg = TrainConfig.from_yaml(src)
    assert cfg.source == str(src)
    assert cfg.backend == "tf"
    assert cfg.model.name == "resnet_slim" and cfg.model.kwargs == {"width": 0.5, "stride": 4}
    assert cfg.input.scale == 1.0 and isinstance(cfg.input.scale, float)
    assert cfg.input.train_size == (192, 256)
    assert cfg.augment.rotation == 10.0 and cfg.augment.scale == (0.9, 1.1)
    assert cfg.augment.flip_pairs == [("leftear", "rightear")]
    assert cfg.augment.flip_prob == AugmentConfig().flip_prob  # untouched keys keep defaults
    assert cfg.targets.stride == 4 and cfg.targets.sigma == 5.0 and cfg.targets.locref_radius == 8.0
    assert cfg.schedule.milestones == [0.5, 0.8] and cfg.schedule.gamma == 0.5
    assert cfg.train.time_limit_minutes == 30.0 and cfg.train.threads == 2
    assert cfg.split.test_indices == [4, 9, 14]

    out = cfg.save(tmp_path / "run" / "config.yaml")
    assert [p.name for p in out.parent.iterdir()] == ["config.yaml"]  # no temporary left behind
    back = TrainConfig.from_yaml(out)
    assert back == cfg and back.hash() == cfg.hash()
    assert back.to_dict() == cfg.to_dict() == yaml.safe_load(out.read_text())
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    # the saved file is complete: it does not depend on today's defaults
    saved = yaml.safe_load(out.read_text())
    assert set(saved["train"]) >= {"epochs", "batch_size", "eval_every", "seed", "device", "workers"}
    assert saved["targets"]["sigma"] == 5.0


def test_hash_is_canonical_and_sensitive() -> None:
    a = TrainConfig()
    assert a.hash() == TrainConfig().hash() and len(a.hash()) == 64
    assert a.hash() != a.with_overrides({"optimizer.lr": 0.0011}).hash()
    # ints and floats, tuples and lists, key order: same config, same hash
    b = TrainConfig.from_dict({"train": {"seed": 0, "steps": float(a.train.steps)},
                               "input": {"train_size": None, "scale": a.input.scale}})
    assert b.hash() == a.hash()
    # the source path is provenance, not content
    assert TrainConfig.from_dict({}, source="elsewhere.yaml").hash() == a.hash()


def test_overrides() -> None:
    base = TrainConfig()
    cfg = base.with_overrides({"train.epochs": 5, "model.name": "resnet50", "model.width": 0.5,
                               "backend": "tf", "augment.scale": [0.7, 1.3],
                               "split.test_indices": [1, 2]})
    assert cfg.train.epochs == 5 and cfg.backend == "tf"
    assert cfg.model.name == "resnet50" and cfg.model.kwargs == {"width": 0.5}
    assert cfg.augment.scale == (0.7, 1.3) and cfg.split.test_indices == [1, 2]
    assert base.train.epochs != 5 and base.model.name == "lite"  # the original is untouched
    assert cfg.with_overrides({}) == cfg


def _error(d: dict, source: str = "cfg.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(d, source=source)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_unknown_keys_list_the_allowed_ones() -> None:
    msg = _error({"train": {"epoch": 5}})
    assert msg.startswith("cfg.yaml: train.epoch: unknown key")
    assert "epochs" in msg and "batch_size" in msg
    msg = _error({"trian": {"epochs": 5}})
    assert msg.startswith("cfg.yaml: trian: unknown key") and "train" in msg and "split" in msg
    msg = _error({"augment": {"rotate": 5}})
    assert "augment.rotate" in msg and "rotation" in msg and "flip_pairs" in msg
    msg = _error({"targets": {"sigmaa": 2}})
    assert "targets.sigmaa" in msg and "locref_scale" in msg


def test_wrong_types_say_what_was_expected() -> None:
    assert _error({"train": {"steps": "ten"}}) == \
        "cfg.yaml: train.steps: expected an integer, got 'ten' (str)"
    assert "expected an integer" in _error({"train": {"batch_size": 2.5}})
    assert "expected a number" in _error({"optimizer": {"lr": "fast"}})
    assert "train.threads: expected an integer or null, got True" in _error({"train": {"threads": True}})
    assert "expected true or false" in _error({"augment": {"enabled": "yes"}})
    assert "input.train_size: expected [an integer, an integer]" in _error({"input": {"train_size": [256]}})
    assert "augment.flip_pairs" in _error({"augment": {"flip_pairs": [["a"]]}})
    assert "cfg.yaml: train: expected a mapping" in _error({"train": 5})
    assert "backend: must be one of 'torch', 'tf', got 'jax'" in _error({"backend": "jax"})
    assert "schedule.name: must be one of 'cosine', 'step'" in _error({"schedule": {"name": "poly"}})
    assert "expected a finite number" in _error({"optimizer": {"lr": float("nan")}})


def test_out_of_range_values() -> None:
    assert _error({"train": {"epochs": 0}}) == "cfg.yaml: train.epochs: must be >= 1 or null (train for `steps`), got 0"
    assert "optimizer.lr: must be in (0, 1]" in _error({"optimizer": {"lr": -0.1}})
    assert "input.scale: must be in (0, 4]" in _error({"input": {"scale": 0}})
    msg = _error({"input": {"train_size": [250, 256]}})
    assert "input.train_size" in msg and "multiple of size_multiple=32" in msg
    assert "input.size_multiple" in _error({"input": {"size_multiple": 16}})
    assert "input.interpolation: must be one of" in _error({"input": {"interpolation": "bilinear"}})
    assert "split.train_fraction" in _error({"split": {"train_fraction": 1.5}})
    assert "repeated" in _error({"split": {"test_indices": [1, 1]}})
    assert "schedule.milestones" in _error({"schedule": {"name": "step"}})
    assert "schedule.milestones" in _error({"schedule": {"milestones": [50, 20]}})
    assert "train.device" in _error({"train": {"device": "tpu"}})
    assert "model.num_keypoints" in _error({"model": {"num_keypoints": 3}})
    # the data pipeline's own checks come through under their section
    msg = _error({"augment": {"scale": [1.2, 0.8]}})
    assert msg.startswith("cfg.yaml: augment: ") and "scale" in msg
    assert "cfg.yaml: targets: " in _error({"targets": {"stride": 0}})


def test_override_errors_name_the_key() -> None:
    base = TrainConfig()
    with pytest.raises(ConfigError, match=r"train\.epoch: unknown key.*epochs"):
        base.with_overrides({"train.epoch": 5})
    with pytest.raises(ConfigError, match=r"^override: trian: unknown key"):
        base.with_overrides({"trian.epochs": 5})
    with pytest.raises(ConfigError, match=r"train\.epochs: must be >= 1 or null"):
        base.with_overrides({"train.epochs": 0})
    with pytest.raises(ConfigError, match=r"train\.epochs\.x: train\.epochs is not a section"):
        base.with_overrides({"train.epochs.x": 1})


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=rf"{missing}: config file not found"):
        TrainConfig.from_yaml(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: 5\n")
    with pytest.raises(ConfigError, match=rf"{bad}: not valid YAML"):
        TrainConfig.from_yaml(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=rf"{listy}: expected a mapping of sections"):
        TrainConfig.from_yaml(listy)
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  epochs: 5\n  batchsize: 4\n")
    with pytest.raises(ConfigError, match=rf"^{typo}: train\.batchsize: unknown key"):
        TrainConfig.from_yaml(typo)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert TrainConfig.from_yaml(empty) == TrainConfig()


def test_save_is_atomic_and_leaves_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    TrainConfig().save(path)
    before = path.read_text()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("posezoo.runtime.files.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        TrainConfig().with_overrides({"train.epochs": 3}).save(path)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_time_limit_default_and_null():
    from posezoo.training.api import resolve_config

    assert TrainConfig().train.time_limit_minutes == 13.5
    # a keyword left at None is "not given"; a dotted key set to None asks for null (--set k=null)
    cfg = resolve_config(None, None, {"steps": None, "train.time_limit_minutes": None})
    assert cfg.train.time_limit_minutes is None and cfg.train.steps == 9000


def test_schedule_follows_the_clock_only_when_the_steps_would_overrun():
    from posezoo.training.loop import _progress

    deadline = 800.0
    assert _progress(0.1, 1e9, math.inf) == 0.1  # no limit: the steps alone
    assert _progress(0.001, 30.0, deadline) == 0.001  # start-up (< 5 % of the limit): the steps alone
    assert _progress(0.25, 400.0, deadline) == 0.5  # half the time, a quarter of the steps: the clock
    assert _progress(0.75, 400.0, deadline) == 0.75  # ahead of the clock: the steps
    assert _progress(0.9, 2000.0, deadline) == 1.0
