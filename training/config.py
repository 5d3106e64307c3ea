"""The one training config, shared by the PyTorch and TensorFlow backends.

A YAML file with the sections below; every key is optional (defaults train the ``lite`` model
on a DeepLabCut project on a CPU in minutes). Loading is strict: an unknown key, a wrong type or
an out-of-range value raises :class:`ConfigError` naming the file, the dotted key and what was
expected, because a silently ignored typo (``epoch: 5``) wastes a whole training run.

    backend: torch            # or tf
    model: {name: lite}       # plus free keyword arguments of the model, e.g. width: 0.5
    input: {scale: null, train_size: null, size_multiple: 32, interpolation: area}   # null: from the data
    augment: {...}            # posezoo.training.data.AugmentConfig (+ flip_pairs)
    targets: {...}            # posezoo.training.data.TargetConfig
    optimizer: {name: adamw, lr: 0.001, weight_decay: 0.0001}
    schedule: {name: cosine, warmup: 0.01, min_lr_ratio: 0.01}   # or step + milestones
    train: {steps: 9000, epochs: null, batch_size: null, eval_every: 500, seed: 0, device: auto, workers: 2}
    split: {train_fraction: 0.8, test_indices: null, seed: 0}
    multi: {graph: all, paf_width: 8, paf_weight: 1.0, ...}   # multi-animal projects only
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Union, get_args, get_origin, get_type_hints

import yaml

from posezoo.runtime.files import write_text_atomic
from posezoo.runtime.spec import INTERPOLATIONS

from .data import AugmentConfig, TargetConfig

__all__ = [
    "ConfigError",
    "TrainConfig",
    "ModelConfig",
    "InputConfig",
    "AugmentSection",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainLoopConfig",
    "SplitConfig",
    "MultiConfig",
]


class ConfigError(ValueError):
    """A bad training config; the message names the file, the dotted key and the problem."""

    def __init__(self, problem: str, key: str | None = None, source: str | None = None) -> None:
        self.key, self.problem, self.source = key, problem, source
        super().__init__(": ".join(p for p in (source, key, problem) if p))

    def at(self, source: str | None, prefix: str | None = None) -> "ConfigError":
        """The same error seen from ``source`` (a file), with ``prefix`` prepended to the key."""
        key = ".".join(p for p in (prefix, self.key) if p) or None
        return ConfigError(self.problem, key, source if self.source is None else self.source)


def _require(ok: bool, key: str, problem: str) -> None:
    if not ok:
        raise ConfigError(problem, key)


# ----------------------------------------------------------------------------------------
# sections


@dataclass
class ModelConfig:
    """Which registered network; every other key is passed to its constructor, except ``init``:
    the weights to start from: ``imagenet`` (the backbone's public ImageNet weights, see
    `posezoo.training.pretrained`), ``zoo:NAME[@VERSION]`` (a zoo entry packed with its training
    weights), an earlier run directory of the same network, or null for a fresh start. The
    layers that fit are copied; heads of another keypoint set start afresh."""

    name: str = "lite"
    kwargs: dict[str, Any] = field(default_factory=dict)
    init: str | None = None

    def __post_init__(self) -> None:
        _require(isinstance(self.name, str) and bool(self.name.strip()), "model.name",
                 f"expected a non-empty model name, got {self.name!r}")
        _require(self.init is None or (isinstance(self.init, str) and bool(self.init.strip())), "model.init",
                 f"expected imagenet, zoo:NAME, a run directory or null, got {self.init!r}")
        for k, v in self.kwargs.items():
            _require(k != "num_keypoints", f"model.{k}", "is set from the project's bodyparts")
            try:
                json.dumps(v)
            except TypeError:
                raise ConfigError(f"expected a plain YAML value, got {type(v).__name__}", f"model.{k}")


@dataclass
class InputConfig:
    """Host-side geometry; the exported spec records the same values, so runtime and training
    see identical pixels. ``train_size`` is (H, W) of the augmented crops, after ``scale``.
    Null ``scale``/``train_size`` are chosen from the labelled animals' size when a run starts
    (`posezoo.training.sizing`) and written into the run's config."""

    scale: float | None = None
    train_size: tuple[int, int] | None = None
    size_multiple: int = 32
    interpolation: str = "area"

    def __post_init__(self) -> None:
        _require(self.scale is None or 0 < self.scale <= 4, "input.scale",
                 f"must be in (0, 4] or null (from the data), got {self.scale}")
        _require(self.size_multiple >= 32 and self.size_multiple % 32 == 0, "input.size_multiple",
                 f"must be a positive multiple of 32 (the networks downsample by 32), "
                 f"got {self.size_multiple}")
        for side, v in zip(("height", "width"), self.train_size or ()):
            _require(v > 0 and v % self.size_multiple == 0, "input.train_size",
                     f"{side} must be a positive multiple of size_multiple={self.size_multiple}, "
                     f"got {list(self.train_size or ())}")
        _require(self.interpolation in INTERPOLATIONS, "input.interpolation",
                 f"must be one of {list(INTERPOLATIONS)}, got {self.interpolation!r}")


@dataclass
class AugmentSection(AugmentConfig):
    """The data pipeline's AugmentConfig plus ``flip_pairs``: left/right bodypart name pairs
    swapped by horizontal flips; null infers them from left/right in the names."""

    flip_pairs: list[tuple[str, str]] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.flip_pairs is not None:
            pairs = [tuple(p) for p in self.flip_pairs]
            _require(all(len(p) == 2 and all(isinstance(n, str) for n in p) for p in pairs),
                     "augment.flip_pairs", f"expected [left, right] name pairs, got {self.flip_pairs}")
            self.flip_pairs = pairs  # type: ignore[assignment]


@dataclass
class OptimizerConfig:
    name: Literal["adamw"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        _require(0 < self.lr <= 1, "optimizer.lr", f"must be in (0, 1], got {self.lr}")
        _require(0 <= self.weight_decay < 1, "optimizer.weight_decay",
                 f"must be in [0, 1), got {self.weight_decay}")


@dataclass
class ScheduleConfig:
    """Linear warmup over the first ``warmup`` of the training steps, then cosine decay to
    ``min_lr_ratio * lr`` or steps of x``gamma`` at ``milestones``. Both are fractions of the
    run's steps, so one schedule fits a 16-frame and a 1,000-frame project alike."""

    name: Literal["cosine", "step"] = "cosine"
    warmup: float = 0.01
    min_lr_ratio: float = 0.01
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _require(0 <= self.warmup < 1, "schedule.warmup",
                 f"must be a fraction of the training steps in [0, 1), got {self.warmup}")
        _require(0 <= self.min_lr_ratio <= 1, "schedule.min_lr_ratio",
                 f"must be in [0, 1], got {self.min_lr_ratio}")
        _require(0 < self.gamma <= 1, "schedule.gamma", f"must be in (0, 1], got {self.gamma}")
        if self.name == "step":
            _require(bool(self.milestones), "schedule.milestones",
                     "a step schedule needs at least one point (a fraction of the steps) to decay at")
        _require(all(0 < m < 1 for m in self.milestones)
                 and all(a < b for a, b in zip(self.milestones, self.milestones[1:])),
                 "schedule.milestones",
                 f"must be increasing fractions of the training steps in (0, 1), got {self.milestones}")


_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|gpu|gpu:\d+)$")


@dataclass
class TrainLoopConfig:
    """The loop. The budget is ``steps`` optimisation steps whatever the project's size (a
    16-frame project needs as many as a 100-frame one), or ``epochs`` passes over the training
    frames when set. ``eval_every`` is in steps (evaluations fall on epoch ends). ``threads``
    None = one per physical core. ``time_limit_minutes`` (evaluations included) stops early, after
    the running epoch and with a final evaluation; when the steps would not fit in it the
    learning-rate schedule follows the clock, so the run still ends annealed. Its default keeps
    the default recipe within 15 minutes on a slow 2-core machine (9000 steps take 12 there on
    openfield; a GPU never reaches it); null = no limit."""

    steps: int = 9000
    epochs: int | None = None
    batch_size: int | None = None  # null: from the training crop's size (`posezoo.training.sizing`)
    eval_every: int = 500
    seed: int = 0
    device: str = "auto"
    devices: int = 1  # TF: MirroredStrategy replicas on one machine (torch: processes, see `posezoo train --devices`)
    workers: int = 2
    threads: int | None = None
    time_limit_minutes: float | None = 13.5
    locref_weight: float = 0.05

    def __post_init__(self) -> None:
        for key in ("steps", "eval_every", "devices"):
            _require(getattr(self, key) >= 1, f"train.{key}", f"must be >= 1, got {getattr(self, key)}")
        _require(self.epochs is None or self.epochs >= 1, "train.epochs",
                 f"must be >= 1 or null (train for `steps`), got {self.epochs}")
        _require(self.batch_size is None or self.batch_size >= 1, "train.batch_size",
                 f"must be >= 1 or null (from the crop size), got {self.batch_size}")
        _require(self.seed >= 0, "train.seed", f"must be >= 0, got {self.seed}")
        _require(self.workers >= 0, "train.workers", f"must be >= 0, got {self.workers}")
        _require(self.threads is None or self.threads >= 1, "train.threads",
                 f"must be >= 1 or null, got {self.threads}")
        _require(self.time_limit_minutes is None or self.time_limit_minutes > 0,
                 "train.time_limit_minutes", f"must be > 0 or null, got {self.time_limit_minutes}")
        _require(self.locref_weight >= 0, "train.locref_weight",
                 f"must be >= 0, got {self.locref_weight}")
        _require(isinstance(self.device, str) and bool(_DEVICE.match(self.device)), "train.device",
                 f"expected auto, cpu, cuda, cuda:N, gpu or gpu:N, got {self.device!r}")

    def total_steps(self, steps_per_epoch: int) -> int:
        """The run's length in optimisation steps."""
        return self.epochs * steps_per_epoch if self.epochs else self.steps


@dataclass
class SplitConfig:
    """Train/test split of the labeled frames: explicit ``test_indices`` (positions in the
    project's sorted table) win over a seeded random ``train_fraction``."""

    train_fraction: float = 0.8
    test_indices: list[int] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _require(0 < self.train_fraction <= 1, "split.train_fraction",
                 f"must be in (0, 1], got {self.train_fraction}")
        _require(self.seed >= 0, "split.seed", f"must be >= 0, got {self.seed}")
        if self.test_indices is not None:
            bad = [i for i in self.test_indices if i < 0]
            _require(not bad, "split.test_indices", f"must be >= 0, got {bad}")
            _require(len(set(self.test_indices)) == len(self.test_indices), "split.test_indices",
                     "has repeated indices")


@dataclass
class MultiConfig:
    """Multi-animal projects (bottom-up): the part-affinity graph (``all`` keypoint pairs as
    DeepLabCut builds it, or the project's ``skeleton``), the field's half-width in input pixels,
    the loss weights, and how many animals (null: the project's individuals) and candidates per
    keypoint (null: as many as animals) the exported graph returns. Ignored for one animal."""

    graph: Literal["all", "skeleton"] = "all"
    paf_width: float = 8.0
    paf_weight: float = 1.0
    identity_weight: float = 0.5
    max_animals: int | None = None
    candidates: int | None = None

    def __post_init__(self) -> None:
        _require(self.paf_width > 0, "multi.paf_width", f"must be > 0, got {self.paf_width}")
        for key in ("paf_weight", "identity_weight"):
            _require(getattr(self, key) >= 0, f"multi.{key}", f"must be >= 0, got {getattr(self, key)}")
        for key in ("max_animals", "candidates"):
            value = getattr(self, key)
            _require(value is None or value >= 1, f"multi.{key}", f"must be >= 1 or null, got {value}")


_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "input": InputConfig,
    "augment": AugmentSection,
    "targets": TargetConfig,
    "optimizer": OptimizerConfig,
    "schedule": ScheduleConfig,
    "train": TrainLoopConfig,
    "split": SplitConfig,
    "multi": MultiConfig,
}
_TOP_KEYS = ["backend", *_SECTIONS]


# ----------------------------------------------------------------------------------------
# the config


@dataclass
class TrainConfig:
    """The whole training config; build it with :meth:`from_yaml` / :meth:`from_dict`."""

    backend: Literal["torch", "tf"] = "torch"
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    augment: AugmentSection = field(default_factory=AugmentSection)
    targets: TargetConfig = field(default_factory=TargetConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    multi: MultiConfig = field(default_factory=MultiConfig)
    #: where the values came from (a file path); not part of the config or its hash
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _require(self.backend in ("torch", "tf"), "backend",
                 f"must be 'torch' or 'tf', got {self.backend!r}")

    # -- reading -------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        """Read a YAML config; missing keys take the defaults."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("config file not found", source=str(path)) from None
        except OSError as e:
            raise ConfigError(f"cannot read the config file ({e.strerror})", source=str(path)) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"not valid YAML: {e}", source=str(path)) from None
        return cls.from_dict({} if data is None else data, source=str(path))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str | None = None) -> "TrainConfig":
        """Validate a plain mapping (as read from YAML/JSON) into a config."""
        src = source or "<config>"
        if not isinstance(d, Mapping):
            raise ConfigError(f"expected a mapping of sections, got {type(d).__name__}", source=src)
        try:
            _no_unknown(d, _TOP_KEYS, "")
            kwargs: dict[str, Any] = {}
            if "backend" in d:
                kwargs["backend"] = _coerce(d["backend"], Literal["torch", "tf"], "backend")
            for name, section_cls in _SECTIONS.items():
                if name in d and d[name] is not None:
                    kwargs[name] = _build_section(name, section_cls, d[name])
            return cls(**kwargs, source=source)
        except ConfigError as e:
            raise e.at(src) from None

    # -- changing ------------------------------------------------------------------------

    def with_overrides(self, overrides: Mapping[str, Any]) -> "TrainConfig":
        """A new config with dotted keys replaced, e.g. ``{"train.epochs": 5}``; validated as a
        whole, so an override can name any key a YAML file could."""
        d = self.to_dict()
        for dotted, value in overrides.items():
            parts = str(dotted).split(".")
            if not all(parts):
                raise ConfigError("not a dotted config key", str(dotted), "override")
            node: Any = d
            for i, part in enumerate(parts[:-1]):
                if not isinstance(node, dict) or part not in node:
                    where = ".".join(parts[:i + 1])
                    allowed = list(node) if isinstance(node, dict) else []
                    raise ConfigError(f"unknown key (allowed: {', '.join(allowed)})", where, "override")
                node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"{'.'.join(parts[:-1])} is not a section", str(dotted), "override")
            node[parts[-1]] = value
        src = f"{self.source} with overrides" if self.source else "overrides"
        out = TrainConfig.from_dict(d, source=src)
        out.source = self.source
        return out

    # -- writing -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, no tuples) that :meth:`from_dict` reads back equal."""
        out: dict[str, Any] = {"backend": self.backend}
        for name in _SECTIONS:
            section = getattr(self, name)
            if isinstance(section, ModelConfig):
                out[name] = {"name": section.name, **_plain(section.kwargs),
                             **({"init": section.init} if section.init is not None else {})}
            else:
                out[name] = {f.name: _plain(getattr(section, f.name))
                             for f in dataclasses.fields(section)}
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def save(self, path: str | Path) -> Path:
        """Write the YAML atomically (a temporary file in the same folder, then rename)."""
        text = f"# posezoo training config (sha256 {self.hash()})\n" + self.to_yaml()
        return write_text_atomic(path, text)

    def hash(self) -> str:
        """sha256 of the canonical JSON of :meth:`to_dict`: equal configs, equal hashes."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------
# validation helpers


def _no_unknown(d: Mapping[str, Any], allowed: list[str], prefix: str) -> None:
    for key in d:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(f"unknown key (allowed: {', '.join(allowed)})", where)


def _build_section(name: str, cls: type, value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a mapping of keys, got {value!r} ({type(value).__name__})", name)
    if cls is ModelConfig:
        extra = {str(k): v for k, v in value.items() if k not in ("name", "init")}
        name_value = _coerce(value.get("name", ModelConfig.name), str, "model.name")
        init = _coerce(value.get("init"), str | None, "model.init")  # type: ignore[arg-type]
        return ModelConfig(name=name_value, kwargs=extra, init=init)
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    _no_unknown(value, names, name)
    kwargs = {k: _coerce(v, hints[k], f"{name}.{k}") for k, v in value.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:  # the data pipeline's own checks name the field
        raise ConfigError(str(e), name) from None


def _describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"[{', '.join(_describe(a) for a in args)}]"
    if origin is list:
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the type hint (ints accepted for floats, lists for tuples)."""
    origin, args = get_origin(hint), get_args(hint)
    bad = ConfigError(f"expected {_describe(hint)}, got {value!r} ({type(value).__name__})", key)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError:
                pass
        raise bad
    if origin is Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
            raise ConfigError(f"must be one of {', '.join(repr(a) for a in args)}, got {value!r}", key)
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"expected a finite number, got {value}", key)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise bad
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise bad
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise bad
        return dict(value)
    raise ConfigError(f"unsupported type {hint!r} in the config schema", key)


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively (YAML's safe dumper and JSON want lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
