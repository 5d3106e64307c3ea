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

import contextlib
import csv
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from posezoo.runtime import geometry
from posezoo.runtime.files import atomic_output, write_json_atomic
from posezoo.runtime.spec import AssemblySpec, DecodeSpec, InputSpec, MultiAnimalSpec, OutputSpec, PreprocessSpec, Spec
from posezoo.runtime.version import version

from . import sizing
from .body import assembly_distances, body_spec
from .config import TrainConfig
from .data import BatchLoader, flip_pairs
from .paf_graph import paf_graph
from .project import Project, Split, load_project, make_split

RUN_FILE = "run.json"
# log.csv columns, the same for every backend.
LOG_FIELDS = ["epoch", "step", "loss", "heatmap_loss", "locref_loss", "lr", "elapsed_s",
              "test_rmse", "test_rmse_pcutoff", "test_mAP", "train_rmse", "paf_loss", "identity_loss"]
BACKENDS = ("torch", "tf")
#: What to do about a snapshot that cannot be read (both backends say it).
SNAPSHOT_HELP = ("the snapshot is damaged (an interrupted copy, a full disk?): to go on from the best one, copy "
                 "snapshots/best.* over snapshots/last.*, or train again into a new --output")


class RunError(ValueError):
    """A run directory that is missing, incomplete or inconsistent."""


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (numpy values and paths become plain JSON)."""
    write_json_atomic(path, data, default=_jsonable)


def append_log(path: Path, row: dict[str, Any]) -> None:
    """Append one epoch's row to log.csv (flushed: a killed process loses no row; not synced,
    since a one-step epoch of a small project would pay a disk sync per step)."""
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in LOG_FIELDS})
        fh.flush()


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


def build_spec(cfg: TrainConfig, project: Project, *, stride: int, name: str,
               train: Sequence[int] = ()) -> Spec:
    """The spec a model trained with ``cfg`` on ``project`` is evaluated and deployed with; a
    model's body plan (single-animal: `BodySpec`; multi-animal: the assembly's keypoint
    distances) is measured on the labels of the ``train`` frames."""
    multiple = math.lcm(int(cfg.input.size_multiple), int(stride))
    scale = float(cfg.input.scale)
    multi, assembly, outputs, body = None, None, {}, None
    skeleton = [list(edge) for edge in project.labels.skeleton]
    if project.multi_animal:
        multi, outputs = _multi_spec(cfg, project)
        shape = assembly_distances(project.labels.coords[list(train)][..., :2].reshape(-1, len(project.keypoints), 2),
                                   slack=stride / scale / 4) if len(train) else None  # a quarter heatmap cell
        assembly = AssemblySpec(nearest=shape[0], farthest=shape[1]) if shape else AssemblySpec()
        skeleton = [edge for edge in skeleton if set(edge) <= set(project.keypoints)]
    elif len(train):
        pairs = flip_pairs(project.keypoints, cfg.augment.flip_pairs or None)
        body = body_spec(project.labels.coords[list(train), 0, :, :2], project.keypoints, pairs,
                         slack=2 * stride / scale)  # two heatmap cells in frame pixels
    return Spec(
        multi=multi, assembly=assembly, body=body,
        name=name,
        keypoints=list(project.keypoints),
        skeleton=skeleton,
        pcutoff=float(project.pcutoff),
        input=InputSpec(color="RGB", size_multiple=multiple),
        preprocess=PreprocessSpec(resize="none" if scale == 1.0 else "scale", scale=scale,
                                  interpolation=cfg.input.interpolation),
        outputs={"keypoints": OutputSpec("keypoints", ["batch", len(project.keypoints), 3],
                                         "x, y, score per keypoint in input-tensor pixels"
                                         + (" (the best candidate)" if multi else "")), **outputs},
        decode=DecodeSpec(method="peaks+locref+paf" if multi else "argmax+locref", stride=int(stride),
                          offset=(stride - 1) / 2.0, locref_scale=float(cfg.targets.locref_scale)),
    ).validate(name)


def _multi_spec(cfg: TrainConfig, project: Project) -> tuple[MultiAnimalSpec, dict[str, OutputSpec]]:
    """The multi-animal section and the extra outputs of a project with several individuals."""
    config = project.config
    graph = paf_graph(project.keypoints, cfg.multi.graph, skeleton=project.labels.skeleton,
                      labels=project.labels.xy)
    animals = min(cfg.multi.max_animals or len(config.individuals), len(config.individuals))
    k = max(cfg.multi.candidates or animals, animals)
    multi = MultiAnimalSpec(individuals=list(config.individuals), graph=[list(e) for e in graph], max_animals=animals,
                            candidates=k, unique_keypoints=list(config.unique_keypoints), identity=config.identity)
    channels = len(project.keypoints) + len(config.unique_keypoints)
    outputs = {
        "candidates": OutputSpec("candidates", ["batch", channels, k, 3],
                                 "x, y, score of the best local maxima per keypoint (then unique keypoints), "
                                 "input-tensor pixels, by descending score"),
        "affinities": OutputSpec("affinities", ["batch", len(graph), k, k],
                                 "part-affinity score of each candidate pair of each multi.graph edge"),
    }
    if config.identity:
        outputs["identity"] = OutputSpec("identity", ["batch", channels, k, len(config.individuals)],
                                         "identity-head probabilities of each individual at each candidate")
    return multi, outputs


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

    @property
    def channels(self) -> int:
        """Heatmap channels the network outputs: the keypoints, then any unique keypoints."""
        return len(self.project.keypoints) + len(self.project.labels.unique_keypoints)

    def heads(self) -> dict[str, int]:
        """Extra output channels of a multi-animal network: part-affinity fields (x, y per edge)
        and, with ``identity: true``, one identity channel per individual."""
        spec = self.spec
        if spec.multi is None:
            return {}
        out = {"paf": 2 * len(spec.multi.graph)}
        if spec.multi.identity:
            out["identity"] = len(spec.multi.individuals)
        return out

    def frames(self, indices: list[int]) -> list[np.ndarray]:
        """Project images (RGB) by index."""
        return [self.project.load_image(i) for i in indices]

    def train_loader(self, rank: int = 0, world: int = 1) -> BatchLoader:
        """Augmented training batches: the same arrays for every backend (this process's share of
        each global batch when ``world`` processes train together)."""
        cfg = self.cfg
        images, coords = self.scaled_samples(list(range(len(self.project))))
        names = self.project.keypoints + self.project.labels.unique_keypoints
        pairs = flip_pairs(names, cfg.augment.flip_pairs or None)
        extra: dict[str, Any] = {}
        spec = self.spec
        if spec.multi is not None:
            index = {n: i for i, n in enumerate(names)}
            extra = {"graph": [(index[a], index[b]) for a, b in spec.multi.graph], "paf_width": cfg.multi.paf_width,
                     "identities": len(spec.multi.individuals) if spec.multi.identity else 0}
        return BatchLoader(images, coords, self.split.train, batch_size=cfg.train.batch_size,
                           out_size=tuple(cfg.input.train_size), aug=cfg.augment, targets=cfg.targets,
                           flip_pairs=pairs, seed=cfg.train.seed, workers=cfg.train.workers, rank=rank, world=world,
                           **extra)

    def scaled_samples(self, indices: list[int]) -> tuple[list[np.ndarray], np.ndarray]:
        """Images at the network's input scale (the spec's host geometry, unpadded) and their
        labels' coords in those pixels: what augmentation starts from. Multi-animal coords are
        (frames, individuals, keypoints + unique keypoints, 2), the unique ones in row 0."""
        spec = self.spec
        labels = self.project.labels
        if spec.multi is None:
            xy = labels.xy[:, 0]
        else:
            xy = np.full((len(labels), len(labels.individuals), self.channels, 2), np.nan, np.float32)
            xy[:, :, :len(labels.keypoints)] = labels.xy
            if labels.unique is not None:
                xy[:, 0, len(labels.keypoints):] = labels.unique[..., :2]
        images, coords = [], np.full((len(indices), *xy.shape[1:]), np.nan, np.float32)
        for j, i in enumerate(indices):
            frame = self.project.load_image(i)
            tensor, plan = geometry.prepare(frame, spec.input, spec.preprocess, color="rgb")
            images.append(np.ascontiguousarray(tensor[:plan.resized[0], :plan.resized[1]]))
            coords[j] = plan.to_tensor(xy[i])
        return images, coords


def create_run(project_path: str | Path, cfg: TrainConfig, output: str | Path | None) -> Run:
    """A new run directory: resolved config, split, spec and run.json are written up front."""
    project = load_project(project_path)
    if output is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        output = project.root / "posezoo-runs" / f"{stamp}-{cfg.backend}-{cfg.model.name}"
    path = Path(output)
    if (path / RUN_FILE).exists():
        raise RunError(f"{path} already holds a training run; use --resume to continue it or choose "
                       "another --output")
    explicit = cfg.split.test_indices is not None
    split = make_split(len(project), train_fraction=None if explicit else cfg.split.train_fraction,
                       test_indices=cfg.split.test_indices, seed=cfg.split.seed)
    _check_labels(project, split)
    cfg, chosen = sizing.resolve(cfg, project, split.train)
    if chosen is not None:
        print(f"{project.root.name}: {chosen.describe()}", flush=True)
    path.mkdir(parents=True, exist_ok=True)
    split.save(path / "split.json")
    cfg.save(path / "config.yaml")
    info = {"backend": cfg.backend, "project": str(project.root.resolve()), "posezoo_version": version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config_sha256": cfg.hash()}
    write_json(path / RUN_FILE, info)
    return Run(path, cfg, project, split, info)


def discard_run(run: Run) -> None:
    """Remove what `create_run` and a first failed epoch wrote (the folder too, when that leaves
    it empty), so the corrected command can use the same --output."""
    for name in (RUN_FILE, "config.yaml", "split.json", "spec.json", "log.csv"):
        (run.path / name).unlink(missing_ok=True)
    for folder in (run.snapshots, run.path):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty


def _check_labels(project: Project, split: Split) -> None:
    """Refuse a project whose training frames hold no label at all: it would "train" to loss 0."""
    labeled = np.isfinite(project.labels.xy).all(-1).any(axis=(1, 2))
    if not labeled[split.train].any():
        where = "the training frames" if labeled.any() else "any frame"
        tables = ", ".join(str(t) for t in project.tables)
        raise RunError(f"{tables}: no keypoint is labeled in {where} (every x, y is empty/NaN); label frames in "
                       "DeepLabCut (or napari-deeplabcut) and save them before training")


def load_run(path: str | Path) -> Run:
    path = Path(path)
    info = _run_info(path)
    cfg = TrainConfig.from_yaml(path / "config.yaml")
    project = load_project(info["project"])
    split = Split.load(path / "split.json")
    return Run(path, cfg, project, split, info)


def _run_info(path: Path) -> dict[str, Any]:
    """A run directory's run.json, checked; the errors name the file and the remedy."""
    info_path = path / RUN_FILE
    if not info_path.is_file():
        raise RunError(f"{path} is not a posezoo training run (no {RUN_FILE}); train one with `posezoo train`")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{info_path}: not readable JSON ({exc}); the run directory is damaged: train again into a "
                       "new --output (its snapshots/ can still be exported once run.json is restored)") from None
    if not isinstance(info, dict) or not isinstance(info.get("project"), str):
        raise RunError(f"{info_path}: not a posezoo run.json (no 'project'); train again into a new --output")
    if info.get("backend") not in BACKENDS:
        raise RunError(f"{info_path}: unknown backend {info.get('backend')!r} (expected one of {BACKENDS})")
    return info


def init_snapshot(source: str | Path, backend: str) -> Path:
    """The snapshot a run starts from with ``model.init``: an earlier run's best weights, or the
    training weights of a zoo entry (``zoo:NAME[@VERSION]``, downloaded and verified)."""
    if str(source).startswith("zoo:"):
        return _zoo_snapshot(str(source), backend)
    path = Path(source)
    try:
        info = _run_info(path)
    except RunError as exc:
        raise RunError(f"model.init {source}: not a posezoo run directory ({exc}); give the folder "
                       "`posezoo train --output` wrote") from None
    if info.get("backend") != backend:
        raise RunError(f"model.init {source}: a {info.get('backend')} run cannot start a {backend} run; train "
                       f"with --backend {info.get('backend')}")
    found = sorted(path.glob("snapshots/best.*")) or sorted(path.glob("snapshots/last.*"))
    if not found:
        raise RunError(f"model.init {source}: the run has no snapshot yet (snapshots/best.* or last.*)")
    return found[0]


def _zoo_snapshot(ref: str, backend: str) -> Path:
    """A zoo entry's training weights (pulled with its model by the zoo's resolver)."""
    from posezoo.runtime.model import WEIGHTS_STEM, resolve_model_path
    from posezoo.runtime.spec import read_spec

    model = resolve_model_path(ref)
    found = sorted(model.parent.glob(f"{WEIGHTS_STEM}*"))
    if not found:
        raise RunError(f"model.init {ref}: the zoo entry has no training weights (it was packed without "
                       "--with-weights); start from scratch, from imagenet, or from a run of your own")
    theirs = read_spec(model).provenance.get("backend")
    if theirs != backend:
        raise RunError(f"model.init {ref}: its weights are of a {theirs} run and cannot start a {backend} run; "
                       f"train with --backend {theirs}")
    return found[0]


def backend_module(name: str) -> Any:
    """The training backend package, or a clear message naming the extra to install."""
    import importlib
    import importlib.util

    module, extra = {"torch": ("torch", "torch"), "tf": ("tensorflow", "tf")}[name]
    if importlib.util.find_spec(module) is None:
        raise RunError(f'the {name} backend needs {module}, which is not installed: pip install "posezoo[{extra}]"')
    return importlib.import_module(f"posezoo.training.{name}")

