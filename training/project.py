"""Read a DeepLabCut project (config.yaml + labeled-data) and make reproducible train/test splits.

The reader looks only at what is on disk next to config.yaml: ``project_path`` and
``video_sets`` in the config are often stale (projects get copied between machines and
operating systems), so every ``labeled-data/<folder>/CollectedData_<scorer>.h5`` (or ``.csv``
when there is no .h5) is used. Rows are sorted like DeepLabCut sorts its merged table
(by the ('labeled-data', folder, file) tuple), so split indices mean the same frames as in DLC.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from posezoo.runtime.files import write_json_atomic
from posezoo.runtime.io.dlc import DLCConfig, read_dlc, read_dlc_config
from posezoo.runtime.poses import Poses, PosesError

__all__ = [
    "Project",
    "ProjectError",
    "Split",
    "benchmark_test_indices",
    "evaluation_split",
    "load_project",
    "make_split",
]

LABELED_DATA = "labeled-data"


class ProjectError(ValueError):
    """A DeepLabCut project cannot be used; the message names the file and the problem."""


@dataclass
class Project:
    """A DeepLabCut project in memory: its config and its labels (images load on demand).

    ``labels`` holds every labeled frame (rows sorted as DeepLabCut sorts its merged table),
    with the config's keypoints, individuals (one unnamed one for single-animal projects) and
    unique keypoints, NaN where unlabeled.
    """

    root: Path
    config: DLCConfig
    labels: Poses
    tables: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def keypoints(self) -> list[str]:
        return self.labels.keypoints

    @property
    def images(self) -> list[str]:
        return self.labels.images or []

    @property
    def pcutoff(self) -> float:
        return self.config.pcutoff

    @property
    def multi_animal(self) -> bool:
        return self.config.multi_animal

    def image_path(self, i: int) -> Path:
        return self.root.joinpath(*self.images[i].split("/"))

    def load_image(self, i: int) -> np.ndarray:
        """Image ``i`` as RGB uint8 (H, W, 3); grey and 16-bit images are converted."""
        return read_rgb(self.image_path(i))


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3) with a clear error naming the file."""
    p = Path(path)
    try:
        # imdecode of the bytes also works for non-ASCII paths, where cv2.imread fails on Windows.
        data = np.fromfile(p, dtype=np.uint8)
    except FileNotFoundError:
        raise ProjectError(f"{p}: image not found") from None
    except OSError as exc:
        raise ProjectError(f"{p}: cannot read image ({exc})") from exc
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ProjectError(f"{p}: not a readable image (unknown format or corrupt file)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- labeled data


def _table_files(root: Path, scorer: str, cfg_path: Path) -> list[Path]:
    data_dir = root / LABELED_DATA
    if not data_dir.is_dir():
        raise ProjectError(f"{cfg_path}: no labeled data: folder {data_dir} does not exist")
    folders = sorted(p for p in data_dir.iterdir() if p.is_dir())
    found: list[Path] = []
    others: list[str] = []
    for folder in folders:
        h5 = folder / f"CollectedData_{scorer}.h5"
        csv_file = folder / f"CollectedData_{scorer}.csv"
        if h5.is_file():
            found.append(h5)
        elif csv_file.is_file():
            found.append(csv_file)
        else:
            others += [f.relative_to(root).as_posix() for f in folder.glob("CollectedData_*")]
    if not found:
        hint = f"; other CollectedData files found (different scorer?): {others[:5]}" if others else ""
        raise ProjectError(
            f"{cfg_path}: no labeled data found: no {LABELED_DATA}/*/CollectedData_{scorer}.h5 "
            f"or .csv in {len(folders)} folder(s) of {data_dir}{hint}"
        )
    return found


def _relative_image(entry: str, folder: str) -> str:
    """The image path relative to the project root, from the folder the table sits in.

    The row index may carry another folder name (a renamed/copied folder) or an absolute or
    Windows path; DLC images always live beside their CollectedData file.
    """
    return f"{LABELED_DATA}/{folder}/{entry.rsplit('/', 1)[-1]}"


def _check_names(found: list[str], wanted: list[str], what: str, table: Path, cfg_path: Path) -> None:
    missing = [b for b in wanted if b not in found]
    extra = [b for b in found if b not in wanted]
    if missing or extra:
        problems = ([f"missing {what} {missing}"] if missing else []) + \
                   ([f"{what} not in the requested list {extra}"] if extra else [])
        raise ProjectError(f"{table}: table {what} {found} do not match {wanted}: {'; '.join(problems)} "
                           f"(config: {cfg_path})")


def _table_labels(table_path: Path, cfg: DLCConfig) -> Poses:
    """One CollectedData table on the config's grid of individuals and keypoints."""
    try:
        poses = read_dlc(table_path)
    except PosesError as exc:
        raise ProjectError(str(exc)) from None
    if poses.images is None:
        raise ProjectError(f"{table_path}: rows are frame numbers, not image paths: this is a video result, "
                           "not a CollectedData table")
    if cfg.multi_animal == poses.single_animal:
        if cfg.multi_animal:
            raise ProjectError(f"{table_path}: single-animal table in a multi-animal project "
                               f"(multianimalproject: true in {cfg.path})")
        raise ProjectError(f"{table_path}: multi-animal table (individuals {poses.individuals}) in a "
                           f"single-animal project; set multianimalproject: true in {cfg.path}")
    _check_names(poses.keypoints, cfg.keypoints, "bodyparts", table_path, cfg.path)
    _check_names(poses.unique_keypoints, cfg.unique_keypoints, "unique bodyparts", table_path, cfg.path)
    unknown = [i for i in poses.individuals if cfg.multi_animal and i not in cfg.individuals]
    if unknown:
        raise ProjectError(f"{table_path}: individuals {unknown} are not in the config's individuals "
                           f"{cfg.individuals} ({cfg.path})")
    if poses.scorer != cfg.scorer:
        warnings.warn(f"{table_path}: scorer '{poses.scorer}' in the table differs from config scorer "
                      f"'{cfg.scorer}'; using the labels anyway", stacklevel=3)
    individuals = cfg.individuals if cfg.multi_animal else poses.individuals
    grid = Poses.empty(len(poses), cfg.keypoints, individuals, unique_keypoints=cfg.unique_keypoints)
    rows = [individuals.index(i) for i in poses.individuals]
    grid.coords[:, rows] = poses.select(keypoints=cfg.keypoints).coords
    if poses.unique is not None:
        grid.unique[:] = poses.select(keypoints=cfg.unique_keypoints).unique  # type: ignore[index]
    grid.images = [_relative_image(img, table_path.parent.name) for img in poses.images]
    return grid


def load_project(path: str | os.PathLike[str], check_images: bool = True) -> Project:
    """Load a DeepLabCut project (single- or multi-animal) from its directory or its config.yaml.

    Raises ProjectError for a config that is not YAML or lacks bodyparts, no labeled data, a
    table whose bodyparts or individuals differ from the config, duplicate images, or (with
    ``check_images``) images missing on disk.
    """
    try:
        cfg = read_dlc_config(path)
    except (PosesError, FileNotFoundError) as exc:
        raise ProjectError(str(exc)) from None
    root = cfg.path.parent.resolve()
    tables = _table_files(root, cfg.scorer, cfg.path)
    parts = [_table_labels(t, cfg) for t in tables]
    keys: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()
    for part, table in zip(parts, tables):
        for image in part.images or []:
            keys.append(tuple(image.split("/")))
            if keys[-1] in seen:
                raise ProjectError(f"{table}: image {image} is listed more than once")
            seen.add(keys[-1])
    if not keys:
        raise ProjectError(f"{cfg.path}: no labeled data found: the CollectedData tables are empty")
    merged = Poses.concat(parts)
    order = sorted(range(len(keys)), key=lambda i: keys[i])  # DLC: pd.concat(tables).sort_index()
    labels = merged[order]
    labels.skeleton = list(cfg.skeleton)
    labels.scorer, labels.kind = cfg.scorer, "labels"
    if check_images:
        missing = [img for img in labels.images or [] if not root.joinpath(*img.split("/")).is_file()]
        if missing:
            raise ProjectError(f"{cfg.path}: {len(missing)} labeled image(s) missing under {root}, e.g. "
                               + ", ".join(missing[:5]))
    return Project(root=root, config=cfg, labels=labels, tables=tables)


# --------------------------------------------------------------------------- split


@dataclass
class Split:
    """Indices into the sorted project table; ``method`` is 'random' or 'explicit'."""

    train: list[int]
    test: list[int]
    seed: int | None
    method: str

    def save(self, path: str | os.PathLike[str]) -> Path:
        doc = {"train": self.train, "test": self.test, "seed": self.seed, "method": self.method,
               "n": len(self.train) + len(self.test)}
        return write_json_atomic(path, doc)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Split:
        p = Path(path)
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{p}: split file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p}: not a JSON split file ({exc})") from exc
        if not isinstance(doc, dict) or not all(k in doc for k in ("train", "test", "method")):
            raise ValueError(f"{p}: split file needs 'train', 'test' and 'method' entries")
        lists = (doc["train"], doc["test"])
        if not all(isinstance(x, list) and all(isinstance(i, int) for i in x) for x in lists):
            raise ValueError(f"{p}: 'train' and 'test' must be lists of integers")
        if set(doc["train"]) & set(doc["test"]):
            raise ValueError(f"{p}: train and test indices overlap")
        return cls(train=doc["train"], test=doc["test"], seed=doc.get("seed"), method=str(doc["method"]))


def benchmark_test_indices(n: int, every: int = 5, offset: int = 4) -> list[int]:
    """The fixed benchmark test set: indices ``i`` with ``i % every == offset`` (openfield: 23 of 116)."""
    return [i for i in range(n) if i % every == offset]


def make_split(
    n: int,
    *,
    train_fraction: float | None = None,
    test_indices: Sequence[int] | None = None,
    seed: int = 0,
) -> Split:
    """Split ``n`` frames into train/test, deterministically.

    Either ``test_indices`` (explicit; train = the rest) or ``train_fraction`` (a seeded random
    permutation, ``floor(n * fraction)`` train frames as in DeepLabCut). Lists come back sorted.
    """
    if n <= 0:
        raise ValueError(f"cannot split {n} frames")
    if (train_fraction is None) == (test_indices is None):
        raise ValueError("give exactly one of train_fraction or test_indices")
    if test_indices is not None:
        test = sorted({int(i) for i in test_indices})
        if len(test) != len(test_indices):
            raise ValueError("test_indices contains duplicates")
        bad = [i for i in test if not 0 <= i < n]
        if bad:
            raise ValueError(f"test_indices out of range 0..{n - 1}: {bad[:5]}")
        chosen = set(test)
        train = [i for i in range(n) if i not in chosen]
        method = "explicit"
    else:
        f = float(train_fraction)  # type: ignore[arg-type]
        if not 0.0 < f <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
        n_train = int(n * f)
        if n_train == 0:
            raise ValueError(f"train_fraction {f} of {n} frames leaves no training frame")
        perm = np.random.default_rng(seed).permutation(n)
        train = sorted(int(i) for i in perm[:n_train])
        test = sorted(int(i) for i in perm[n_train:])
        method = "random"
    if not train:
        raise ValueError("the split leaves no training frame")
    return Split(train=train, test=test, seed=seed, method=method)


def evaluation_split(project: Project, split_file: str | os.PathLike[str] | None = None) -> tuple[Split, str]:
    """The split to evaluate a model on, and where it came from: ``split_file`` (a training run's
    split.json), else DeepLabCut's draw (the config's TrainingFraction, seed 0)."""
    if split_file is not None:
        split, source = Split.load(split_file), str(split_file)
    else:
        split = make_split(len(project), train_fraction=project.config.training_fraction, seed=0)
        source = f"TrainingFraction {project.config.training_fraction:g}, seed 0"
    bad = [i for i in split.train + split.test if not 0 <= i < len(project)]
    if bad:
        raise ProjectError(f"{source}: split indices {bad[:5]} are outside the project's {len(project)} images")
    return split, source
