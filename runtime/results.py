"""DeepLabCut-compatible tables: labeled data (CollectedData_*) and video results.

Only numpy, pandas and PyTables: this module is part of the light runtime.

Layouts (what DeepLabCut itself writes, so DLC, movement and pandas users read ours unchanged):

* Labeled data ``labeled-data/<video>/CollectedData_<scorer>.h5`` (+ ``.csv``): columns
  ``scorer/bodyparts/coords`` (multi-animal: ``scorer/individuals/bodyparts/coords``), coords
  ``x, y``, NaN for unlabeled; rows either the legacy single string
  ``'labeled-data/<video>/<file>'`` (DLC <= 2.2, pandas "table" format) or the 3-level index
  ``('labeled-data', '<video>', '<file>')`` (DLC >= 2.3 / napari-deeplabcut, "fixed" format).
* Video results ``<video>DLC_<scorer>.h5`` (+ ``.csv``): same column levels with coords
  ``x, y, likelihood``, float64, integer frame index 0..T-1 (no index name), HDF key
  ``df_with_missing``, pandas "table" format (``df.to_hdf(key="df_with_missing",
  format="table", mode="w")`` in DLC's ``analyze_videos``).

Every writer writes to a temporary file in the destination directory and renames it, so a
crash never leaves a half-written table under the final name.
"""
from __future__ import annotations

import contextlib
import csv
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

import numpy as np
import pandas as pd

from .files import atomic_output

__all__ = [
    "DLC_KEY",
    "DLCTableError",
    "LabeledTable",
    "Results",
    "ResultsWriter",
    "SINGLE_ANIMAL",
    "read_labeled_table",
    "read_results",
    "write_labeled_table",
    "write_results",
]

DLC_KEY = "df_with_missing"
# napari-deeplabcut saves CollectedData under this key; DLC reads it with pd.read_hdf(path).
_OTHER_KEYS = ("keypoints",)
SINGLE_ANIMAL = "single"
_LEVELS_SINGLE = ("scorer", "bodyparts", "coords")
_LEVELS_MULTI = ("scorer", "individuals", "bodyparts", "coords")
_HEADER_NAMES = frozenset(_LEVELS_MULTI)
_RESULT_COORDS = ("x", "y", "likelihood")
_LABEL_COORDS = ("x", "y")
_CSV_CHUNK_ROWS = 20_000


class DLCTableError(ValueError):
    """A file is not a readable DeepLabCut table; the message names the file and the problem."""


# --------------------------------------------------------------------------- atomic output


# --------------------------------------------------------------------------- reading helpers


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    if path.is_dir():
        raise DLCTableError(f"{path}: is a directory, expected a {what} (.h5 or .csv)")


def _read_hdf_frame(path: Path) -> pd.DataFrame:
    """Read the DataFrame of a DLC .h5 (key df_with_missing, napari's 'keypoints', or the only key)."""
    try:
        store = pd.HDFStore(path, mode="r")
    except Exception as exc:  # tables raises HDF5ExtError / OSError / ValueError variants
        raise DLCTableError(f"{path}: not a readable HDF5 file ({exc})") from exc
    try:
        keys = [k.lstrip("/") for k in store.keys()]
        key = next((k for k in (DLC_KEY, *_OTHER_KEYS) if k in keys), None)
        if key is None and len(keys) == 1:
            key = keys[0]
        if key is None:
            found = ", ".join(keys) if keys else "none"
            raise DLCTableError(
                f"{path}: no DeepLabCut table in this HDF5 file (expected key '{DLC_KEY}'; "
                f"pandas keys found: {found})"
            )
        try:
            obj = store.get(key)
        except Exception as exc:
            raise DLCTableError(f"{path}: cannot read HDF key '{key}' ({exc})") from exc
    finally:
        store.close()
    if not isinstance(obj, pd.DataFrame):
        raise DLCTableError(f"{path}: key '{key}' holds a {type(obj).__name__}, not a DataFrame")
    return obj


def _csv_layout(path: Path) -> tuple[int, int]:
    """Number of header rows (3 or 4) and of index columns (1 legacy, 3 multi) of a DLC csv.

    The header rows start with the level names (scorer, [individuals,] bodyparts, coords); a
    3-level row index shows up as empty cells after the level name in those rows.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [row for _, row in zip(range(5), csv.reader(fh))]
    except UnicodeDecodeError as exc:
        raise DLCTableError(f"{path}: not a text CSV file ({exc})") from exc
    n_header = 0
    for row in rows:
        if row and row[0].strip() in _HEADER_NAMES:
            n_header += 1
        else:
            break
    if n_header not in (3, 4) or rows[0][0].strip() != "scorer":
        first = ",".join(rows[0][:4]) if rows else "<empty file>"
        raise DLCTableError(
            f"{path}: not a DeepLabCut CSV: expected header rows starting with "
            f"'scorer', ['individuals',] 'bodyparts', 'coords'; first line is '{first}'"
        )
    n_index = 1
    while n_index < len(rows[0]) and rows[0][n_index] == "":
        n_index += 1
    return n_header, n_index


def _level_names(df: pd.DataFrame, path: Path) -> tuple[str, ...]:
    cols = df.columns
    if not isinstance(cols, pd.MultiIndex) or cols.nlevels not in (3, 4):
        n = cols.nlevels if isinstance(cols, pd.MultiIndex) else 1
        raise DLCTableError(
            f"{path}: not a DeepLabCut table: columns have {n} level(s), expected "
            f"scorer/bodyparts/coords or scorer/individuals/bodyparts/coords"
        )
    expected = _LEVELS_SINGLE if cols.nlevels == 3 else _LEVELS_MULTI
    names = tuple(cols.names)
    if all(n is None for n in names):
        return expected
    if names != expected:
        raise DLCTableError(
            f"{path}: wrong column levels {list(names)}, expected {list(expected)}"
        )
    return expected


def _unique(values: pd.Index) -> list[str]:
    return [str(v) for v in pd.unique(np.asarray(values, dtype=object))]


@dataclass(frozen=True)
class _Columns:
    scorer: str
    individuals: list[str] | None  # None: single-animal table (3 levels)
    bodyparts: list[str]
    coords: list[str]


def _parse_columns(df: pd.DataFrame, path: Path, need: Sequence[str]) -> _Columns:
    names = _level_names(df, path)
    cols = df.columns
    scorers = _unique(cols.get_level_values(0))
    if len(scorers) != 1:
        raise DLCTableError(f"{path}: expected one scorer in the columns, found {scorers}")
    pos = {n: i for i, n in enumerate(names)}
    coords = _unique(cols.get_level_values(pos["coords"]))
    missing = [c for c in need if c not in coords]
    if missing:
        raise DLCTableError(
            f"{path}: wrong columns: coords level lacks {missing} (found {coords})"
        )
    individuals = _unique(cols.get_level_values(pos["individuals"])) if "individuals" in pos else None
    bodyparts = _unique(cols.get_level_values(pos["bodyparts"]))
    return _Columns(scorers[0], individuals, bodyparts, coords)


def _gather(
    df: pd.DataFrame, c: _Columns, coords: Sequence[str], path: Path
) -> np.ndarray:
    """Values as (rows, individuals, bodyparts, len(coords)) float64, NaN where a column is absent."""
    inds = c.individuals if c.individuals is not None else [None]
    wanted = [
        (c.scorer, *((i,) if i is not None else ()), b, k)
        for i in inds
        for b in c.bodyparts
        for k in coords
    ]
    flat = df.copy(deep=False)
    # Level values can be non-str (e.g. a numeric scorer read back from CSV); compare as str.
    flat.columns = pd.MultiIndex.from_tuples(
        [tuple(str(v) for v in t) for t in df.columns], names=df.columns.names
    )
    if flat.columns.has_duplicates:
        raise DLCTableError(f"{path}: duplicate columns in the table")
    sub = flat.reindex(columns=pd.MultiIndex.from_tuples(wanted))
    try:
        values = sub.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise DLCTableError(f"{path}: non-numeric coordinate values ({exc})") from exc
    return values.reshape(len(df), len(inds), len(c.bodyparts), len(coords))


# --------------------------------------------------------------------------- labeled data


def _image_key(entry: object, path: Path) -> str:
    """One row label -> posix relative path; accepts tuples and Windows/posix strings."""
    if isinstance(entry, tuple):
        parts = [str(p) for p in entry]
    else:
        text = str(entry)
        pure = PureWindowsPath(text) if "\\" in text else PurePosixPath(text)
        parts = [p for p in pure.parts if p not in ("/", "\\")]
    if not parts or any(p == "" for p in parts):
        raise DLCTableError(f"{path}: invalid image entry {entry!r} in the row index")
    return "/".join(parts)


@dataclass
class LabeledTable:
    """The labels of one CollectedData table.

    ``coords[n, a, k]`` is (x, y) of bodypart ``k`` of individual ``a`` in image ``n``; NaN when
    unlabeled. Single-animal tables have ``individuals == [SINGLE_ANIMAL]`` and are written
    without an individuals level.
    """

    images: list[str]
    bodyparts: list[str]
    individuals: list[str]
    scorer: str
    coords: np.ndarray
    multi_animal: bool | None = None  # None: infer (True unless individuals == ['single'])
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.images = [str(i) for i in self.images]
        self.bodyparts = [str(b) for b in self.bodyparts]
        self.individuals = [str(i) for i in self.individuals]
        self.coords = np.asarray(self.coords, dtype=np.float64)
        if self.multi_animal is None:
            self.multi_animal = self.individuals != [SINGLE_ANIMAL]
        expected = (len(self.images), len(self.individuals), len(self.bodyparts), 2)
        if self.coords.shape != expected:
            raise ValueError(
                f"LabeledTable coords shape {self.coords.shape} does not match "
                f"(images, individuals, bodyparts, 2) = {expected}"
            )
        if not self.multi_animal and len(self.individuals) != 1:
            raise ValueError("a single-animal LabeledTable must have exactly one individual")
        for name, items in (("bodyparts", self.bodyparts), ("individuals", self.individuals),
                            ("images", self.images)):
            dup = sorted({x for x in items if items.count(x) > 1})
            if dup:
                where = f"{self.source}: " if self.source else ""
                raise ValueError(f"{where}duplicate {name} in LabeledTable: {dup[:5]}")

    def reorder(self, bodyparts: Sequence[str], allow_extra: bool = False) -> LabeledTable:
        """Return a copy with bodyparts in the given (config) order.

        Missing bodyparts are an error; bodyparts in the table but not in ``bodyparts`` are an
        error too unless ``allow_extra`` (then they are dropped).
        """
        wanted = [str(b) for b in bodyparts]
        where = f"{self.source}: " if self.source else ""
        missing = [b for b in wanted if b not in self.bodyparts]
        extra = [b for b in self.bodyparts if b not in wanted]
        if missing or (extra and not allow_extra):
            problems = []
            if missing:
                problems.append(f"missing bodyparts {missing}")
            if extra and not allow_extra:
                problems.append(f"bodyparts not in the requested list {extra}")
            raise DLCTableError(
                f"{where}table bodyparts {self.bodyparts} do not match {wanted}: "
                + "; ".join(problems)
            )
        order = [self.bodyparts.index(b) for b in wanted]
        return LabeledTable(
            images=list(self.images),
            bodyparts=wanted,
            individuals=list(self.individuals),
            scorer=self.scorer,
            coords=self.coords[:, :, order].copy(),
            multi_animal=self.multi_animal,
            source=self.source,
        )

    def to_dataframe(self, index_style: Literal["legacy", "multi"] = "legacy") -> pd.DataFrame:
        """The DLC DataFrame: legacy string row index or 3-level ('labeled-data', video, file)."""
        if self.multi_animal:
            cols = pd.MultiIndex.from_product(
                [[self.scorer], self.individuals, self.bodyparts, list(_LABEL_COORDS)],
                names=list(_LEVELS_MULTI),
            )
        else:
            cols = pd.MultiIndex.from_product(
                [[self.scorer], self.bodyparts, list(_LABEL_COORDS)], names=list(_LEVELS_SINGLE)
            )
        if index_style == "legacy":
            index: pd.Index = pd.Index(self.images, dtype=object)
        elif index_style == "multi":
            parts = [tuple(img.split("/")) for img in self.images]
            bad = [img for img, p in zip(self.images, parts) if len(p) != 3]
            if bad:
                raise ValueError(
                    f"index_style='multi' needs 'labeled-data/<video>/<file>' paths, got {bad[:3]}"
                )
            index = pd.MultiIndex.from_tuples(parts)
        else:
            raise ValueError(f"index_style must be 'legacy' or 'multi', got {index_style!r}")
        return pd.DataFrame(self.coords.reshape(len(self.images), -1), index=index, columns=cols)


def read_labeled_table(
    path: str | os.PathLike[str], bodyparts: Sequence[str] | None = None
) -> LabeledTable:
    """Read a DLC CollectedData table (.h5 fixed/table format or .csv, either row index style).

    With ``bodyparts`` the result is reordered to that order (see ``LabeledTable.reorder``).
    Extra coords columns (e.g. a ``likelihood`` written by some tools) are ignored.
    """
    p = Path(path)
    _check_exists(p, "labeled-data table")
    if p.suffix.lower() == ".csv":
        n_header, n_index = _csv_layout(p)
        try:
            df = pd.read_csv(
                p, header=list(range(n_header)), index_col=list(range(n_index)), dtype=str
            )
        except Exception as exc:
            raise DLCTableError(f"{p}: cannot parse as a DeepLabCut CSV ({exc})") from exc
    elif p.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        df = _read_hdf_frame(p)
    else:
        raise DLCTableError(f"{p}: unsupported extension '{p.suffix}', expected .h5 or .csv")
    cols = _parse_columns(df, p, _LABEL_COORDS)
    values = _gather(df, cols, _LABEL_COORDS, p)
    images = [_image_key(e, p) for e in df.index]
    table = LabeledTable(
        images=images,
        bodyparts=cols.bodyparts,
        individuals=cols.individuals if cols.individuals is not None else [SINGLE_ANIMAL],
        scorer=cols.scorer,
        coords=values,
        multi_animal=cols.individuals is not None,
        source=p,
    )
    return table.reorder(bodyparts) if bodyparts is not None else table


def write_labeled_table(
    path_h5: str | os.PathLike[str],
    table: LabeledTable,
    also_csv: bool = True,
    index_style: Literal["legacy", "multi"] = "legacy",
    hdf_format: Literal["table", "fixed"] | None = None,
) -> Path:
    """Write ``table`` as DLC's CollectedData .h5 (key df_with_missing) and optionally the .csv.

    Default HDF format follows what DLC wrote for each index style: "table" for the legacy
    string index (DLC <= 2.2), "fixed" for the 3-level index (DLC >= 2.3). pandas cannot store
    a MultiIndex row index together with MultiIndex columns in "table" format.
    """
    out = Path(path_h5)
    if out.suffix.lower() != ".h5":
        raise ValueError(f"{out}: labeled tables are written as .h5 (the .csv goes beside it)")
    fmt = hdf_format or ("table" if index_style == "legacy" else "fixed")
    if fmt not in ("table", "fixed"):
        raise ValueError(f"hdf_format must be 'table' or 'fixed', got {hdf_format!r}")
    if fmt == "table" and index_style == "multi":
        raise ValueError("pandas cannot write a 3-level row index in 'table' format; use 'fixed'")
    df = table.to_dataframe(index_style)
    with atomic_output(out) as tmp:
        df.to_hdf(tmp, key=DLC_KEY, mode="w", format=fmt)
    if also_csv:
        with atomic_output(out.with_suffix(".csv")) as tmp:
            df.to_csv(tmp)
    return out


# --------------------------------------------------------------------------- video results


def _result_columns(
    bodyparts: Sequence[str], scorer: str, individuals: Sequence[str] | None
) -> pd.MultiIndex:
    if not bodyparts:
        raise ValueError("bodyparts must not be empty")
    if individuals is None:
        return pd.MultiIndex.from_product(
            [[str(scorer)], [str(b) for b in bodyparts], list(_RESULT_COORDS)],
            names=list(_LEVELS_SINGLE),
        )
    if not individuals:
        raise ValueError("individuals must be None (single animal) or a non-empty list")
    return pd.MultiIndex.from_product(
        [[str(scorer)], [str(i) for i in individuals], [str(b) for b in bodyparts],
         list(_RESULT_COORDS)],
        names=list(_LEVELS_MULTI),
    )


def _as_rows(
    coords: np.ndarray, n_bodyparts: int, individuals: Sequence[str] | None
) -> np.ndarray:
    """Check (T, K, 3) / (T, A, K, 3) against the declared layout and flatten to (T, cols)."""
    arr = np.asarray(coords, dtype=np.float64)
    if individuals is None:
        expected: tuple[int, ...] = (n_bodyparts, 3)
        label = "(frames, bodyparts, 3)"
    else:
        expected = (len(individuals), n_bodyparts, 3)
        label = "(frames, individuals, bodyparts, 3)"
    if arr.ndim != len(expected) + 1 or arr.shape[1:] != expected:
        raise ValueError(f"coords shape {arr.shape} does not match {label} = (T, {expected})")
    return arr.reshape(arr.shape[0], int(np.prod(expected)))


def write_results(
    path: str | os.PathLike[str],
    coords: np.ndarray,
    bodyparts: Sequence[str],
    scorer: str,
    individuals: Sequence[str] | None = None,
    csv: bool = False,
) -> Path:
    """Write video results in DLC's layout to ``path`` (.h5), atomically; ``csv`` adds the .csv.

    ``coords`` is (T, K, 3) single-animal or (T, A, K, 3) with ``individuals``; last axis x, y,
    likelihood in frame pixels.
    """
    out = Path(path)
    cols = _result_columns(bodyparts, scorer, individuals)
    rows = _as_rows(coords, len(bodyparts), individuals)
    df = pd.DataFrame(rows, columns=cols, index=range(len(rows)))
    with atomic_output(out) as tmp:
        if len(df):
            df.to_hdf(tmp, key=DLC_KEY, format="table", mode="w")
        else:  # "table" format cannot hold an empty frame; fixed keeps the columns readable
            df.to_hdf(tmp, key=DLC_KEY, format="fixed", mode="w")
    if csv:
        with atomic_output(out.with_suffix(".csv")) as tmp:
            df.to_csv(tmp)
    return out


def write_image_predictions(path: str | os.PathLike[str], images: Sequence[str], coords: np.ndarray,
                            bodyparts: Sequence[str], scorer: str) -> Path:
    """Predictions on image files in DLC's layout, rows indexed by image path; .csv or .h5 by suffix."""
    out = Path(path)
    if out.suffix not in (".csv", ".h5"):
        raise ValueError(f"{out}: the output table must end in .csv or .h5")
    df = pd.DataFrame(_as_rows(coords, len(bodyparts), None), columns=_result_columns(bodyparts, scorer, None),
                      index=pd.Index([str(i) for i in images]))
    with atomic_output(out) as tmp:
        if out.suffix == ".csv":
            df.to_csv(tmp)
        else:
            df.to_hdf(tmp, key=DLC_KEY, format="table", mode="w")
    return out


class ResultsWriter:
    """Stream video results to DLC's .h5 layout with flat memory, atomically on close.

    Frames go to ``<path>.partial`` (a pandas "table" HDF5 in the destination directory)
    through ``HDFStore.append`` and are flushed after every chunk; ``close()`` builds the
    table index, renames the partial onto ``path`` and, with ``csv=True``, streams the .csv
    from it in chunks. ``pd.read_hdf(path)`` then equals what DLC's ``analyze_videos`` writes.

    Resuming an interrupted analysis::

        w = ResultsWriter.resume(out_h5, bodyparts, scorer)   # reopens out_h5.partial if any
        start = w.frames_written                              # frames already on disk
        # seek the video to frame `start`, then append the remaining frames and close()

    The partial survives a crash or kill. Inside ``with`` an exception aborts (deletes the
    partial) unless ``keep_partial=True``, which keeps it for a later ``resume``. A plain
    ``ResultsWriter(...)`` (no resume) discards any stale partial and starts at frame 0.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        bodyparts: Sequence[str],
        scorer: str,
        individuals: Sequence[str] | None = None,
        csv: bool = False,
        *,
        resume: bool = False,
        keep_partial: bool = False,
        expected_frames: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        self.bodyparts = [str(b) for b in bodyparts]
        self.scorer = str(scorer)
        self.individuals = None if individuals is None else [str(i) for i in individuals]
        self.csv = csv
        self.keep_partial = keep_partial
        self._columns = _result_columns(self.bodyparts, self.scorer, self.individuals)
        self._expected = expected_frames
        self._done = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.frames_written = 0
        self._store: pd.HDFStore | None = None
        if resume and self.partial_path.exists():
            self._reopen()
        else:
            with contextlib.suppress(FileNotFoundError):
                self.partial_path.unlink()
            self._store = pd.HDFStore(self.partial_path, mode="w")

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike[str],
        bodyparts: Sequence[str],
        scorer: str,
        individuals: Sequence[str] | None = None,
        csv: bool = False,
        **kwargs: object,
    ) -> ResultsWriter:
        """Reopen ``<path>.partial`` and continue after its last frame (fresh if none exists)."""
        return cls(path, bodyparts, scorer, individuals, csv, resume=True, **kwargs)  # type: ignore[arg-type]

    def _reopen(self) -> None:
        try:
            store = pd.HDFStore(self.partial_path, mode="a")
        except Exception as exc:  # a kill during an HDF5 write can leave it unreadable
            warnings.warn(f"{self.partial_path}: unreadable partial results ({exc}); starting over",
                          stacklevel=3)
            self.partial_path.unlink()
            self._store = pd.HDFStore(self.partial_path, mode="w")
            return
        try:
            if f"/{DLC_KEY}" in store.keys():
                storer = store.get_storer(DLC_KEY)
                cols = store.select(DLC_KEY, start=0, stop=0).columns
                if not cols.equals(self._columns):
                    raise DLCTableError(
                        f"{self.partial_path}: partial results have different columns "
                        f"(scorer/individuals/bodyparts) than requested; delete it or start "
                        f"without resume"
                    )
                self.frames_written = int(storer.nrows)
        except BaseException:
            store.close()
            raise
        self._store = store

    def append(self, chunk: np.ndarray) -> None:
        """Append frames ``chunk`` (n, K, 3) or (n, A, K, 3); they get the next frame numbers."""
        if self._done or self._store is None:
            raise RuntimeError(f"{self.path}: ResultsWriter is already closed")
        rows = _as_rows(chunk, len(self.bodyparts), self.individuals)
        if not len(rows):
            return
        start = self.frames_written
        df = pd.DataFrame(rows, columns=self._columns,
                          index=np.arange(start, start + len(rows), dtype=np.int64))
        self._store.append(DLC_KEY, df, format="table", index=False,
                           expectedrows=self._expected)
        self._store.flush()
        self.frames_written += len(rows)

    def close(self) -> Path:
        """Finalise: index the table, rename onto ``path``, write the .csv if asked."""
        if self._done:
            return self.path
        store = self._store
        assert store is not None
        try:
            if self.frames_written:
                store.create_table_index(DLC_KEY)  # as DataFrame.to_hdf(format="table") does
            store.close()
            if not self.frames_written:  # nothing appended: still leave a readable empty table
                write_results(self.partial_path, np.zeros((0, *self._shape())), self.bodyparts,
                              self.scorer, self.individuals)
            if self.csv:
                with atomic_output(self.path.with_suffix(".csv")) as tmp:
                    _stream_csv(self.partial_path, tmp)
            os.replace(self.partial_path, self.path)
        finally:
            # On failure the complete partial stays on disk: nothing is lost, close can be redone
            # through ResultsWriter.resume(...).close().
            self._done = True
        return self.path

    def abort(self) -> None:
        """Stop and delete the partial file; ``path`` is left untouched."""
        self._release()
        with contextlib.suppress(FileNotFoundError):
            self.partial_path.unlink()

    def _shape(self) -> tuple[int, ...]:
        k = len(self.bodyparts)
        return (k, 3) if self.individuals is None else (len(self.individuals), k, 3)

    def _release(self) -> None:
        if self._store is not None and self._store.is_open:
            self._store.close()
        self._done = True

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        elif self.keep_partial:
            self._release()  # flushed partial stays for ResultsWriter.resume
        else:
            self.abort()


def _stream_csv(h5: Path, out: Path) -> None:
    """Write the .csv of a results table chunk by chunk (same text as DataFrame.to_csv)."""
    with pd.HDFStore(h5, mode="r") as store, open(out, "w", newline="", encoding="utf-8") as fh:
        storer = store.get_storer(DLC_KEY)
        if not storer.is_table:  # only the empty-results case
            store.get(DLC_KEY).to_csv(fh)
            return
        n = int(storer.nrows)
        for start in range(0, n, _CSV_CHUNK_ROWS):
            part = store.select(DLC_KEY, start=start, stop=min(start + _CSV_CHUNK_ROWS, n))
            part.to_csv(fh, header=start == 0)


@dataclass
class Results:
    """Video results: ``coords`` (T, K, 3) single-animal or (T, A, K, 3); last axis x, y, likelihood."""

    coords: np.ndarray
    bodyparts: list[str]
    scorer: str
    individuals: list[str] | None
    df: pd.DataFrame

    @property
    def n_frames(self) -> int:
        return int(self.coords.shape[0])


def read_results(path: str | os.PathLike[str]) -> Results:
    """Read DLC-layout video results (.h5 or .csv), ours or DeepLabCut's."""
    p = Path(path)
    _check_exists(p, "results file")
    if p.suffix.lower() == ".csv":
        n_header, n_index = _csv_layout(p)
        if n_index != 1:
            raise DLCTableError(f"{p}: results CSV must have one index column (frame number)")
        try:
            df = pd.read_csv(p, header=list(range(n_header)), index_col=0)
        except Exception as exc:
            raise DLCTableError(f"{p}: cannot parse as a DeepLabCut CSV ({exc})") from exc
        try:
            df.index = df.index.astype(np.int64)
        except (TypeError, ValueError) as exc:
            raise DLCTableError(f"{p}: row index is not integer frame numbers ({exc})") from exc
    elif p.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        df = _read_hdf_frame(p)
    else:
        raise DLCTableError(f"{p}: unsupported extension '{p.suffix}', expected .h5 or .csv")
    cols = _parse_columns(df, p, _RESULT_COORDS)
    values = _gather(df, cols, _RESULT_COORDS, p)
    if cols.individuals is None:
        values = values[:, 0]
    return Results(
        coords=values,
        bodyparts=cols.bodyparts,
        scorer=cols.scorer,
        individuals=cols.individuals,
        df=df,
    )
