"""The run directory: what a training run holds, and the spec both training and export use.

Layout (identical for every backend)::

    run.json        backend, project path, posezoo version, creation time
    config.yaml     the resolved training config
    split.json      the train/test split (image indices in the project's sorted table)
    spec.json       the model spec: the same geometry training evaluates with and export embeds
    log.csv         one row per epoch (loss, lr, elapsed time, test metrics when evaluated)
    snapshots/      last.* and best.* (weights + optimizer state; written atomically)
    metrics.json    the final evaluation
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posezoo.runtime import geometry
from posezoo.runtime.files import atomic_output, write_json_atomic
from posezoo.runtime.spec import DecodeSpec, InputSpec, OutputSpec, PreprocessSpec, Spec
from posezoo.runtime.version import version

from .config import TrainConfig
from .data import BatchLoader, flip_pairs
from .project import Project, Split, load_project, make_split

RUN_FILE = "run.json"
# log.csv columns, the same for every backend.
LOG_FIELDS = ["epoch", "step", "loss", "heatmap_loss", "locref_loss", "lr", "elapsed_s",
              "test_rmse", "test_rmse_pcutoff", "test_mAP", "train_rmse"]
BACKENDS = ("torch", "tf")


class RunError(ValueError):
    """A run directory that is missing, incomplete or inconsistent."""


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (numpy values and paths become plain JSON)."""
    write_json_atomic(path, data, default=_jsonable)


def append_log(path: Path, row: dict[str, Any]) -> None:
    """Append one epoch's row to log.csv (flushed to disk: a crash loses at most that row)."""
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in LOG_FIELDS})
        fh.flush()
        os.fsync(fh.fileno())


def truncate_log(path: Path, next_epoch: int) -> None:
    """Drop rows of epochs after the snapshot a run resumes from (written before a crash)."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) < next_epoch]
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def build_spec(cfg: TrainConfig, project: Project, *, stride: int, name: str) -> Spec:
    """The spec a model trained with ``cfg`` on ``project`` is evaluated and deployed with."""
    multiple = math.lcm(int(cfg.input.size_multiple), int(stride))
    scale = float(cfg.input.scale)
    return Spec(
        name=name,
        keypoints=list(project.keypoints),
        skeleton=[list(edge) for edge in project.labels.skeleton],
        pcutoff=float(project.pcutoff),
        input=InputSpec(color="RGB", size_multiple=multiple),
        preprocess=PreprocessSpec(resize="none" if scale == 1.0 else "scale", scale=scale,
                                  interpolation=cfg.input.interpolation),
        outputs={"keypoints": OutputSpec("keypoints", ["batch", len(project.keypoints), 3],
                                         "x, y, score per keypoint in input-tensor pixels")},
        decode=DecodeSpec(stride=int(stride), offset=(stride - 1) / 2.0,
                          locref_scale=float(cfg.targets.locref_scale)),
    ).validate(name)


@dataclass
class Run:
    """A run directory and everything derived from it."""

    path: Path
    cfg: TrainConfig
    project: Project
    split: Split
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return str(self.info["backend"])

    @property
    def spec(self) -> Spec:
        return Spec.from_json((self.path / "spec.json").read_text(), str(self.path / "spec.json"))

    @property
    def snapshots(self) -> Path:
        return self.path / "snapshots"

    def frames(self, indices: list[int]) -> list[np.ndarray]:
        """Project images (RGB) by index."""
        return [self.project.load_image(i) for i in indices]

    def train_loader(self) -> BatchLoader:
        """Augmented training batches: the same arrays for every backend."""
        cfg = self.cfg
        images, coords = self.scaled_samples(list(range(len(self.project))))
        pairs = flip_pairs(self.project.keypoints, cfg.augment.flip_pairs or None)
        return BatchLoader(images, coords, self.split.train, batch_size=cfg.train.batch_size,
                           out_size=tuple(cfg.input.train_size), aug=cfg.augment, targets=cfg.targets,
                           flip_pairs=pairs, seed=cfg.train.seed, workers=cfg.train.workers)

    def scaled_samples(self, indices: list[int]) -> tuple[list[np.ndarray], np.ndarray]:
        """Images at the network's input scale (the spec's host geometry, unpadded) and their
        labels' coords in those pixels: what augmentation starts from."""
        spec = self.spec
        images, coords = [], np.full((len(indices), len(spec.keypoints), 2), np.nan, np.float32)
        xy = self.project.labels.xy[:, 0]
        for j, i in enumerate(indices):
            frame = self.project.load_image(i)
            tensor, plan = geometry.prepare(frame, spec.input, spec.preprocess, color="rgb")
            images.append(np.ascontiguousarray(tensor[:plan.resized[0], :plan.resized[1]]))
            coords[j] = plan.to_tensor(xy[i])
        return images, coords


def create_run(project_path: str | Path, cfg: TrainConfig, output: str | Path | None) -> Run:
    """A new run directory: resolved config, split, spec and run.json are written up front."""
    project = load_project(project_path)
    if project.multi_animal:
        raise RunError(f"{project.config.path}: multi-animal projects (multianimalproject: true) are not "
                       "supported for training yet; only single-animal DeepLabCut projects can be trained")
    if output is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        output = project.root / "posezoo-runs" / f"{stamp}-{cfg.backend}-{cfg.model.name}"
    path = Path(output)
    if (path / RUN_FILE).exists():
        raise RunError(f"{path} already holds a training run; use --resume to continue it or choose "
                       "another --output")
    path.mkdir(parents=True, exist_ok=True)
    explicit = cfg.split.test_indices is not None
    split = make_split(len(project), train_fraction=None if explicit else cfg.split.train_fraction,
                       test_indices=cfg.split.test_indices, seed=cfg.split.seed)
    split.save(path / "split.json")
    cfg.save(path / "config.yaml")
    info = {"backend": cfg.backend, "project": str(project.root.resolve()), "posezoo_version": version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config_sha256": cfg.hash()}
    write_json(path / RUN_FILE, info)
    return Run(path, cfg, project, split, info)


def load_run(path: str | Path) -> Run:
    path = Path(path)
    info_path = path / RUN_FILE
    if not info_path.is_file():
        raise RunError(f"{path} is not a posezoo training run (no {RUN_FILE}); train one with `posezoo train`")
    info = json.loads(info_path.read_text())
    if info.get("backend") not in BACKENDS:
        raise RunError(f"{info_path}: unknown backend {info.get('backend')!r} (expected one of {BACKENDS})")
    cfg = TrainConfig.from_yaml(path / "config.yaml")
    project = load_project(info["project"])
    split = Split.load(path / "split.json")
    return Run(path, cfg, project, split, info)


def backend_module(name: str) -> Any:
    """The training backend package, or a clear message naming the extra to install."""
    import importlib
    import importlib.util

    module, extra = {"torch": ("torch", "torch"), "tf": ("tensorflow", "tf")}[name]
    if importlib.util.find_spec(module) is None:
        raise RunError(f'the {name} backend needs {module}, which is not installed: pip install "posezoo[{extra}]"')
    return importlib.import_module(f"posezoo.training.{name}")

