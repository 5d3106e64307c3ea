"""DeepLabCut's files: labeled data (``CollectedData_*``), video results and ``config.yaml``.

Tables, as DeepLabCut writes them (so DeepLabCut, movement and pandas users read ours unchanged):

* Labeled data ``labeled-data/<video>/CollectedData_<scorer>.h5`` (+ ``.csv``): columns
  ``scorer/bodyparts/coords`` (multi-animal: ``scorer/individuals/bodyparts/coords``, unique
  bodyparts under the individual ``single``), coords ``x, y``, NaN for unlabeled; rows either
  the legacy single string ``'labeled-data/<video>/<file>'`` (DeepLabCut <= 2.2, pandas
  "table" format) or the 3-level index ``('labeled-data', '<video>', '<file>')`` (>= 2.3 and
  napari-deeplabcut, "fixed" format).
* Video results ``<video>DLC_<scorer>.h5`` (+ ``.csv``): the same column levels with coords
  ``x, y, likelihood``, float64, integer frame index 0..T-1, HDF key ``df_with_missing``,
  pandas "table" format (what ``analyze_videos`` writes).

Any HDF key is read (napari-deeplabcut writes ``keypoints``). Every write goes to a temporary
file beside the target and is renamed, so a crash never leaves a half-written table.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from ..files import atomic_output
from ..poses import DEFAULT_PCUTOFF, Poses, PosesError

DLC_KEY = "df_with_missing"
_OTHER_KEYS = ("keypoints",)  # napari-deeplabcut's key; DeepLabCut reads it with pd.read_hdf(path)
_HEADER_NAMES = frozenset(("scorer", "individuals", "bodyparts", "coords"))
HDF_SUFFIXES = (".h5", ".hdf5", ".hdf")
SUFFIXES = (*HDF_SUFFIXES, ".csv")


# -- tables -----------------------------------------------------------------------------------------
def read_dlc(path: str | os.PathLike[str]) -> Poses:
    """A DeepLabCut table (.h5 any key and storage format, or .csv), labels or predictions."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: DeepLabCut table not found")
    if p.is_dir():
        raise PosesError(f"{p}: is a directory, expected a DeepLabCut table (.h5 or .csv)")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        df = _read_csv(p)
    elif suffix in HDF_SUFFIXES:
        df = _read_hdf(p)
    else:
        raise PosesError(f"{p}: unsupported extension '{p.suffix}', expected .h5 or .csv")
    return Poses.from_dataframe(df, where=str(p))


def write_dlc(poses: Poses, path: str | os.PathLike[str], *, csv: bool = False,
              index_style: Literal["legacy", "multi"] = "legacy",
              hdf_format: Literal["table", "fixed"] | None = None) -> Path:
    """Write ``poses`` in DeepLabCut's layout to ``path`` (.h5, or .csv alone); ``csv`` adds the
    .csv beside an .h5. The HDF format defaults to what DeepLabCut wrote: "table" except for
    labels with the 3-level row index (pandas cannot store those as a table)."""
    out = Path(path)
    df = poses.to_dataframe(index_style)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        with atomic_output(out) as tmp:
            df.to_csv(tmp)
        return out
    if suffix not in HDF_SUFFIXES:
        raise PosesError(f"{out}: DeepLabCut tables end in .h5 or .csv")
    fmt = hdf_format or ("fixed" if index_style == "multi" and poses.images is not None else "table")
    if fmt not in ("table", "fixed"):
        raise PosesError(f"hdf_format must be 'table' or 'fixed', got {hdf_format!r}")
    if fmt == "table" and isinstance(df.index, pd.MultiIndex):
        raise PosesError("pandas cannot write a 3-level row index in 'table' format; use 'fixed'")
    if not len(df):
        fmt = "fixed"  # "table" cannot hold an empty frame; fixed keeps the columns readable
    with atomic_output(out) as tmp:
        df.to_hdf(tmp, key=DLC_KEY, format=fmt, mode="w")
    if csv:
        with atomic_output(out.with_suffix(".csv")) as tmp:
            df.to_csv(tmp)
    return out


def read_dlc_blocks(path: str | os.PathLike[str], rows: int = 20_000) -> Iterator[Poses]:
    """The frames of a video-results table written in pandas "table" format (what posezoo and
    DeepLabCut's ``analyze_videos`` write), ``rows`` at a time: flat memory for any length."""
    p = Path(path)
    with pd.HDFStore(p, mode="r") as store:
        storer = store.get_storer(DLC_KEY)
        if storer is None or not storer.is_table:
            raise PosesError(f"{p}: not a streamable results table (HDF key '{DLC_KEY}' in table format)")
        n = int(storer.nrows)
        for begin in range(0, n, rows):
            yield Poses.from_dataframe(store.select(DLC_KEY, start=begin, stop=min(begin + rows, n)), str(p))


def _read_hdf(path: Path) -> pd.DataFrame:
    """The DataFrame of a DeepLabCut .h5: key df_with_missing, napari's 'keypoints', or the only key."""
    try:
        store = pd.HDFStore(path, mode="r")
    except Exception as exc:  # tables raises HDF5ExtError / OSError / ValueError variants
        raise PosesError(f"{path}: not a readable HDF5 file ({exc})") from None
    try:
        keys = [k.lstrip("/") for k in store.keys()]
        key = next((k for k in (DLC_KEY, *_OTHER_KEYS) if k in keys), None)
        if key is None and len(keys) == 1:
            key = keys[0]
        if key is None:
            raise PosesError(f"{path}: no DeepLabCut table in this HDF5 file (expected key '{DLC_KEY}'; "
                             f"pandas keys found: {', '.join(keys) or 'none'})")
        try:
            obj = store.get(key)
        except Exception as exc:
            raise PosesError(f"{path}: cannot read HDF key '{key}' ({exc})") from None
    finally:
        store.close()
    if not isinstance(obj, pd.DataFrame):
        raise PosesError(f"{path}: key '{key}' holds a {type(obj).__name__}, not a DataFrame")
    return obj


def _read_csv(path: Path) -> pd.DataFrame:
    n_header, n_index = _csv_layout(path)
    try:
        df = pd.read_csv(path, header=list(range(n_header)), index_col=list(range(n_index)), dtype=str)
    except Exception as exc:
        raise PosesError(f"{path}: cannot parse as a DeepLabCut CSV ({exc})") from None
    if n_index == 1:
        try:  # frame numbers (results) or image paths (labels)
            df.index = pd.Index(df.index.astype(np.int64))
        except (TypeError, ValueError):
            pass
    return df


def _csv_layout(path: Path) -> tuple[int, int]:
    """Number of header rows (3 or 4) and of index columns (1 legacy, 3 multi) of a DeepLabCut csv.

    The header rows start with the level names (scorer, [individuals,] bodyparts, coords); a
    3-level row index shows up as empty cells after the level name in those rows.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [row for _, row in zip(range(5), csv.reader(fh))]
    except UnicodeDecodeError as exc:
        raise PosesError(f"{path}: not a text CSV file ({exc})") from None
    n_header = 0
    for row in rows:
        if row and row[0].strip() in _HEADER_NAMES:
            n_header += 1
        else:
            break
    if n_header not in (3, 4) or rows[0][0].strip() != "scorer":
        first = ",".join(rows[0][:4]) if rows else "<empty file>"
        raise PosesError(f"{path}: not a DeepLabCut CSV: expected header rows starting with 'scorer', "
                         f"['individuals',] 'bodyparts', 'coords'; first line is '{first}'")
    n_index = 1
    while n_index < len(rows[0]) and rows[0][n_index] == "":
        n_index += 1
    return n_header, n_index


# -- config.yaml ------------------------------------------------------------------------------------
@dataclass
class DLCConfig:
    """What posezoo uses of a DeepLabCut ``config.yaml`` (``project_path`` and ``video_sets`` are
    often stale after a project is copied, so they are never used)."""

    path: Path
    scorer: str
    keypoints: list[str]  # bodyparts, or multianimalbodyparts in a multi-animal project
    skeleton: list[tuple[str, str]] = field(default_factory=list)
    pcutoff: float = DEFAULT_PCUTOFF
    training_fraction: float = 0.95
    multi_animal: bool = False
    individuals: list[str] = field(default_factory=list)
    unique_keypoints: list[str] = field(default_factory=list)
    identity: bool = False
    raw: dict[str, Any] = field(default_factory=dict)


def config_path(path: str | os.PathLike[str]) -> Path:
    """A project's config.yaml from the project folder or the file itself."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.yaml"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: DeepLabCut config.yaml not found")
    return p


def read_dlc_config(path: str | os.PathLike[str]) -> DLCConfig:
    """Read and check a DeepLabCut config.yaml (a project folder or the file)."""
    cfg_path = config_path(path)
    try:
        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PosesError(f"{cfg_path}: not valid YAML ({exc})") from None
    if not isinstance(cfg, dict):
        raise PosesError(f"{cfg_path}: expected a YAML mapping of settings, got {type(cfg).__name__}")
    multi = bool(cfg.get("multianimalproject"))
    key = "multianimalbodyparts" if multi else "bodyparts"
    keypoints = _names(cfg, key, cfg_path, required=True)
    unique = _names(cfg, "uniquebodyparts", cfg_path) if multi else []
    individuals = _names(cfg, "individuals", cfg_path, required=True) if multi else []
    scorer = cfg.get("scorer")
    if not isinstance(scorer, (str, int)) or not str(scorer):
        raise PosesError(f"{cfg_path}: 'scorer' is missing (it names CollectedData_<scorer>.h5)")
    clash = sorted(set(keypoints) & set(unique))
    if clash:
        raise PosesError(f"{cfg_path}: {clash} are both multi-animal and unique bodyparts")
    raw_skeleton = cfg.get("skeleton") or []
    if not isinstance(raw_skeleton, list) or not all(isinstance(e, (list, tuple)) for e in raw_skeleton):
        raise PosesError(f"{cfg_path}: 'skeleton' must be a list of [bodypart, bodypart] pairs")
    known = keypoints + unique
    for edge in raw_skeleton:
        unknown = [str(b) for b in edge if str(b) not in known]
        if len(edge) != 2 or unknown:
            problem = f"names unknown bodyparts {unknown}" if unknown else "is not a pair of bodyparts"
            raise PosesError(f"{cfg_path}: skeleton entry {list(edge)} {problem} (bodyparts: {known})")
    skeleton = [(str(a), str(b)) for a, b in raw_skeleton]
    return DLCConfig(path=cfg_path, scorer=str(scorer), keypoints=keypoints, skeleton=skeleton,
                     pcutoff=_number(cfg, "pcutoff", DEFAULT_PCUTOFF, cfg_path),
                     training_fraction=_number(cfg, "TrainingFraction", 0.95, cfg_path), multi_animal=multi,
                     individuals=individuals, unique_keypoints=unique, identity=bool(cfg.get("identity")), raw=cfg)


def _names(cfg: dict[str, Any], key: str, cfg_path: Path, required: bool = False) -> list[str]:
    value = cfg.get(key) or []
    if not isinstance(value, list) or not all(isinstance(b, (str, int)) and str(b) for b in value) or \
            (required and not value):
        raise PosesError(f"{cfg_path}: '{key}' must be a {'non-empty ' if required else ''}list of names, "
                         f"got {cfg.get(key)!r}")
    names = [str(b) for b in value]
    dup = sorted({b for b in names if names.count(b) > 1})
    if dup:
        raise PosesError(f"{cfg_path}: duplicate {key} {dup}")
    return names


def _number(cfg: dict[str, Any], key: str, default: float, cfg_path: Path) -> float:
    value = cfg.get(key, default)
    if isinstance(value, list):  # TrainingFraction is a list; the first entry is the default
        value = value[0] if value else default
    if value is None:
        value = default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PosesError(f"{cfg_path}: '{key}' must be a number, got {value!r}") from None
