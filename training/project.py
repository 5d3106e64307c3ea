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
from typing import Any

import cv2
import numpy as np
import yaml

from posezoo.runtime.files import atomic_output
from posezoo.runtime.results import DLCTableError, read_labeled_table

__all__ = [
    "Project",
    "ProjectError",
    "Split",
    "benchmark_test_indices",
    "load_project",
    "make_split",
]

LABELED_DATA = "labeled-data"
DEFAULT_PCUTOFF = 0.6  # DeepLabCut's default config value
DEFAULT_TRAINING_FRACTION = 0.95


class ProjectError(ValueError):
    """A DeepLabCut project cannot be used; the message names the file and the problem."""


@dataclass
class Project:
    """A single-animal DeepLabCut project in memory (labels only; images load on demand).

    ``keypoints[i, k]`` is (x, y) of ``bodyparts[k]`` in ``images[i]``, NaN when unlabeled.
    """

    root: Path
    config: dict[str, Any]
    bodyparts: list[str]
    scorer: str
    skeleton: list[tuple[int, int]]
    pcutoff: float
    training_fraction: float
    images: list[str]
    keypoints: np.ndarray
    tables: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def image_path(self, i: int) -> Path:
        return self.root.joinpath(*self.images[i].split("/"))

    def load_image(self, i: int) -> np.ndarray:
        """Image ``i`` as RGB uint8 (H, W, 3); grey and 16-bit images are converted."""
        path = self.image_path(i)
        return read_rgb(path)


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


# --------------------------------------------------------------------------- config


def _config_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "config.yaml"
    if not p.is_file():
        raise ProjectError(f"{p}: DeepLabCut config.yaml not found")
    return p


def _read_config(cfg_path: Path) -> dict[str, Any]:
    try:
        text = cfg_path.read_text(encoding="utf-8")
        cfg = yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{cfg_path}: not valid YAML ({exc})") from exc
    if not isinstance(cfg, dict):
        raise ProjectError(f"{cfg_path}: expected a YAML mapping of settings, got {type(cfg).__name__}")
    if cfg.get("multianimalproject"):
        raise ProjectError(
            f"{cfg_path}: multi-animal projects (multianimalproject: true) are not supported "
            f"for training yet; only single-animal DeepLabCut projects can be trained"
        )
    bodyparts = cfg.get("bodyparts")
    if not isinstance(bodyparts, list) or not bodyparts or not all(
        isinstance(b, (str, int)) and str(b) for b in bodyparts
    ):
        raise ProjectError(f"{cfg_path}: 'bodyparts' must be a non-empty list of names, got {bodyparts!r}")
    names = [str(b) for b in bodyparts]
    dup = sorted({b for b in names if names.count(b) > 1})
    if dup:
        raise ProjectError(f"{cfg_path}: duplicate bodyparts {dup}")
    scorer = cfg.get("scorer")
    if not isinstance(scorer, (str, int)) or not str(scorer):
        raise ProjectError(f"{cfg_path}: 'scorer' is missing (it names CollectedData_<scorer>.h5)")
    return cfg


def _skeleton(cfg: dict[str, Any], bodyparts: list[str], cfg_path: Path) -> list[tuple[int, int]]:
    raw = cfg.get("skeleton") or []
    if not isinstance(raw, list):
        raise ProjectError(f"{cfg_path}: 'skeleton' must be a list of [bodypart, bodypart] pairs")
    edges: list[tuple[int, int]] = []
    for edge in raw:
        if not isinstance(edge, (list, tuple)) or len(edge) != 2:
            raise ProjectError(f"{cfg_path}: skeleton entry {edge!r} is not a pair of bodyparts")
        unknown = [str(b) for b in edge if str(b) not in bodyparts]
        if unknown:
            raise ProjectError(
                f"{cfg_path}: skeleton entry {list(edge)} names unknown bodyparts {unknown} "
                f"(bodyparts: {bodyparts})"
            )
        edges.append((bodyparts.index(str(edge[0])), bodyparts.index(str(edge[1]))))
    return edges


def _number(cfg: dict[str, Any], key: str, default: float, cfg_path: Path) -> float:
    value = cfg.get(key, default)
    if isinstance(value, list):  # TrainingFraction is a list; the first entry is the default
        value = value[0] if value else default
    if value is None:
        value = default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ProjectError(f"{cfg_path}: '{key}' must be a number, got {value!r}") from None


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


def load_project(path: str | os.PathLike[str], check_images: bool = True) -> Project:
    """Load a single-animal DeepLabCut project from its directory or its config.yaml.

    Raises ProjectError for a config that is not YAML or lacks bodyparts, a multi-animal
    project, no labeled data, a table whose bodyparts differ from the config, duplicate
    images, or (with ``check_images``) images missing on disk.
    """
    cfg_path = _config_path(path)
    root = cfg_path.parent.resolve()
    cfg = _read_config(cfg_path)
    bodyparts = [str(b) for b in cfg["bodyparts"]]
    scorer = str(cfg["scorer"])
    rows: dict[tuple[str, ...], np.ndarray] = {}
    tables = _table_files(root, scorer, cfg_path)
    for table_path in tables:
        try:
            table = read_labeled_table(table_path)
        except DLCTableError as exc:
            raise ProjectError(str(exc)) from exc
        if table.multi_animal:
            raise ProjectError(
                f"{table_path}: multi-animal table (individuals {table.individuals}) in a "
                f"single-animal project; multi-animal training is not supported yet"
            )
        try:
            table = table.reorder(bodyparts)
        except DLCTableError as exc:
            raise ProjectError(f"{exc} (config: {cfg_path})") from exc
        if table.scorer != scorer:
            warnings.warn(
                f"{table_path}: scorer '{table.scorer}' in the table differs from config scorer "
                f"'{scorer}'; using the labels anyway",
                stacklevel=2,
            )
        folder = table_path.parent.name
        for image, xy in zip(table.images, table.coords[:, 0]):
            rel = _relative_image(image, folder)
            key = tuple(rel.split("/"))
            if key in rows:
                raise ProjectError(f"{table_path}: image {rel} is listed more than once")
            rows[key] = xy
    order = sorted(rows)  # DLC: pd.concat(tables).sort_index() on the 3-level row index
    images = ["/".join(k) for k in order]
    keypoints = (
        np.stack([rows[k] for k in order]).astype(np.float64)
        if order
        else np.zeros((0, len(bodyparts), 2))
    )
    if not images:
        raise ProjectError(f"{cfg_path}: no labeled data found: the CollectedData tables are empty")
    if check_images:
        missing = [img for img in images if not root.joinpath(*img.split("/")).is_file()]
        if missing:
            raise ProjectError(
                f"{cfg_path}: {len(missing)} labeled image(s) missing under {root}, e.g. "
                + ", ".join(missing[:5])
            )
    return Project(
        root=root,
        config=cfg,
        bodyparts=bodyparts,
        scorer=scorer,
        skeleton=_skeleton(cfg, bodyparts, cfg_path),
        pcutoff=_number(cfg, "pcutoff", DEFAULT_PCUTOFF, cfg_path),
        training_fraction=_number(cfg, "TrainingFraction", DEFAULT_TRAINING_FRACTION, cfg_path),
        images=images,
        keypoints=keypoints,
        tables=tables,
    )


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
        out = Path(path)
        with atomic_output(out) as tmp:
            tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        return out

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
