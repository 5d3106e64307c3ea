"""`Poses`: the one data class for every set of keypoints posezoo handles.

Labeled frames, a model's predictions and a whole video's results are all `Poses`: an array
``coords`` of shape ``(frames, individuals, keypoints, 3)`` holding x, y and a score (NaN where a
keypoint is absent; labels have score 1), with the names that give the axes their meaning.
Single-animal data has one unnamed individual (``individuals == [""]``). DeepLabCut's unique
keypoints (one per frame, not per animal, labelled under the individual ``single``) live apart
in ``unique``, shape ``(frames, unique keypoints, 3)``.

Only the data and its conversion to and from DeepLabCut's DataFrame layout live here; files are
read and written by `posezoo.runtime.io`, one module per format.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Literal

import numpy as np
import pandas as pd

#: DeepLabCut's default ``pcutoff`` (config.yaml), used wherever a file does not give one.
DEFAULT_PCUTOFF = 0.6
#: The individual under which DeepLabCut tables hold the unique keypoints.
UNIQUE_INDIVIDUAL = "single"
SINGLE = ""  # the one unnamed individual of single-animal data

Kind = Literal["predictions", "labels"]
_LEVELS_SINGLE = ("scorer", "bodyparts", "coords")
_LEVELS_MULTI = ("scorer", "individuals", "bodyparts", "coords")


class PosesError(ValueError):
    """Data that cannot be a `Poses` (wrong shape, duplicate names, a malformed DataFrame)."""


def skeleton_indices(names: Sequence[str], skeleton: Sequence[Sequence[str]],
                     where: str = "skeleton") -> list[tuple[int, int]]:
    """Name pairs -> index pairs into ``names``, naming any keypoint that is not there."""
    index = {n: i for i, n in enumerate(names)}
    out = []
    for pair in skeleton:
        if len(pair) != 2:
            raise PosesError(f"{where}: each skeleton edge needs two keypoints, got {list(pair)!r}")
        unknown = [str(p) for p in pair if str(p) not in index]
        if unknown:
            raise PosesError(f"{where}: keypoints {unknown} are not among {list(names)}")
        out.append((index[str(pair[0])], index[str(pair[1])]))
    return out


@dataclass(eq=False)
class Poses:
    """Keypoints of some frames: ``coords[f, i, k] = (x, y, score)`` in frame pixels.

    ``frame_indices`` (video frame numbers) or ``images`` (image paths, posix, relative to a
    project) say which frame each row is; with neither, rows are frames 0..n-1. ``kind`` tells
    labels (written with x, y only) from predictions (x, y, likelihood).
    """

    coords: np.ndarray
    keypoints: list[str]
    individuals: list[str] = field(default_factory=lambda: [SINGLE])
    unique: np.ndarray | None = None
    unique_keypoints: list[str] = field(default_factory=list)
    skeleton: list[tuple[str, str]] = field(default_factory=list)
    frame_indices: np.ndarray | None = None
    images: list[str] | None = None
    scorer: str = "posezoo"
    model: str | None = None
    video: str | None = None
    kind: Kind = "predictions"

    def __post_init__(self) -> None:
        self.keypoints = [str(k) for k in self.keypoints]
        self.individuals = [str(i) for i in self.individuals]
        self.unique_keypoints = [str(k) for k in self.unique_keypoints]
        self.skeleton = [(str(a), str(b)) for a, b in self.skeleton]
        coords = np.asarray(self.coords)
        if not np.issubdtype(coords.dtype, np.floating):
            coords = coords.astype(np.float64)
        shape = (len(self.individuals), len(self.keypoints), 3)
        if coords.ndim != 4 or coords.shape[1:] != shape:
            raise PosesError(f"coords have shape {coords.shape}; expected (frames, individuals, keypoints, 3) "
                             f"= (n, {', '.join(map(str, shape))})")
        self.coords = coords
        n = len(coords)
        if self.unique_keypoints or self.unique is not None:
            unique = np.full((n, len(self.unique_keypoints), 3), np.nan) if self.unique is None \
                else np.asarray(self.unique, dtype=coords.dtype)
            if unique.shape != (n, len(self.unique_keypoints), 3):
                raise PosesError(f"unique coords have shape {unique.shape}; expected (frames, unique keypoints, 3) "
                                 f"= ({n}, {len(self.unique_keypoints)}, 3)")
            self.unique = unique
        if self.frame_indices is not None:
            self.frame_indices = np.asarray(self.frame_indices, dtype=np.int64).reshape(-1)
            if len(self.frame_indices) != n:
                raise PosesError(f"{len(self.frame_indices)} frame indices for {n} frames")
        if self.images is not None:
            self.images = [str(i) for i in self.images]
            if len(self.images) != n:
                raise PosesError(f"{len(self.images)} image paths for {n} frames")
        if self.kind not in ("predictions", "labels"):
            raise PosesError(f"kind must be 'predictions' or 'labels', got {self.kind!r}")
        for what, names in (("keypoints", self.keypoints + self.unique_keypoints),
                            ("individuals", self.individuals), ("images", self.images or [])):
            dup = sorted({x for x in names if names.count(x) > 1}) if len(set(names)) != len(names) else []
            if dup:
                raise PosesError(f"duplicate {what}: {dup[:5]}")
        skeleton_indices(self.keypoints + self.unique_keypoints, self.skeleton)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def empty(cls, n_frames: int, keypoints: Sequence[str], individuals: Sequence[str] = (SINGLE,), *,
              dtype: type = np.float64, **fields: Any) -> Poses:
        """``n_frames`` frames with every keypoint absent (NaN)."""
        coords = np.full((n_frames, len(individuals), len(keypoints), 3), np.nan, dtype)
        return cls(coords, list(keypoints), list(individuals), **fields)

    @classmethod
    def concat(cls, parts: Sequence[Poses]) -> Poses:
        """Frames of several `Poses` with the same names, one after the other."""
        if not parts:
            raise PosesError("nothing to concatenate")
        first = parts[0]
        for p in parts[1:]:
            if (p.keypoints, p.individuals, p.unique_keypoints) != (first.keypoints, first.individuals,
                                                                   first.unique_keypoints):
                raise PosesError("cannot concatenate Poses with different keypoints or individuals")
        frames = None
        if all(p.frame_indices is not None for p in parts):
            frames = np.concatenate([p.frame_indices for p in parts])  # type: ignore[misc]
        images = sum((p.images for p in parts), []) if all(p.images is not None for p in parts) else None
        unique = np.concatenate([p.unique for p in parts]) if first.unique is not None else None  # type: ignore[misc]
        return replace(first, coords=np.concatenate([p.coords for p in parts]), unique=unique,
                       frame_indices=frames, images=images)

    # -- views ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.coords)

    @property
    def n_frames(self) -> int:
        return len(self.coords)

    @property
    def single_animal(self) -> bool:
        """One unnamed individual: written as DeepLabCut's 3-level single-animal table."""
        return self.individuals == [SINGLE]

    @property
    def xy(self) -> np.ndarray:
        """(frames, individuals, keypoints, 2) positions."""
        return self.coords[..., :2]

    @property
    def scores(self) -> np.ndarray:
        """(frames, individuals, keypoints) scores (likelihoods)."""
        return self.coords[..., 2]

    def skeleton_indices(self) -> list[tuple[int, int]]:
        """The skeleton as index pairs into ``keypoints`` (edges touching unique keypoints are left out)."""
        return skeleton_indices(self.keypoints, [e for e in self.skeleton if set(e) <= set(self.keypoints)])

    def __getitem__(self, frames: int | slice | Sequence[int] | np.ndarray) -> Poses:
        """The `Poses` of some frames (an int keeps the frame axis, with one frame)."""
        if isinstance(frames, tuple):
            raise TypeError("Poses[...] selects frames only; index the arrays (.coords, .xy, .scores) for more")
        sel: Any = [frames] if isinstance(frames, (int, np.integer)) else frames
        if isinstance(sel, slice):
            rows = np.arange(len(self))[sel]
        else:
            rows = np.asarray(sel)
            if rows.dtype == bool:
                rows = np.flatnonzero(rows)
            rows = rows.astype(np.int64).reshape(-1)
        return replace(self, coords=self.coords[rows],
                       unique=None if self.unique is None else self.unique[rows],
                       frame_indices=self.frame_numbers()[rows] if self.images is None else None,
                       images=None if self.images is None else [self.images[i] for i in rows])

    def frame_numbers(self) -> np.ndarray:
        """The video frame number of each row (0..n-1 when none were recorded)."""
        return self.frame_indices if self.frame_indices is not None else np.arange(len(self), dtype=np.int64)

    def select(self, *, keypoints: Sequence[str] | None = None,
               individuals: Sequence[str] | None = None) -> Poses:
        """Some keypoints (in the given order; unique ones too) and/or individuals, by name."""
        out = self
        if individuals is not None:
            missing = [i for i in individuals if i not in self.individuals]
            if missing:
                raise PosesError(f"individuals {missing} are not among {self.individuals}")
            rows = [self.individuals.index(i) for i in individuals]
            out = replace(out, coords=out.coords[:, rows], individuals=list(individuals))
        if keypoints is not None:
            known = set(self.keypoints) | set(self.unique_keypoints)
            missing = [k for k in keypoints if k not in known]
            if missing:
                raise PosesError(f"keypoints {missing} are not among {self.keypoints + self.unique_keypoints}")
            main = [k for k in keypoints if k in self.keypoints]
            uniq = [k for k in keypoints if k in self.unique_keypoints]
            kept = set(main) | set(uniq)
            out = replace(out, coords=out.coords[:, :, [self.keypoints.index(k) for k in main]], keypoints=main,
                          unique=None if self.unique is None else self.unique[:, [self.unique_keypoints.index(k)
                                                                                  for k in uniq]],
                          unique_keypoints=uniq, skeleton=[e for e in self.skeleton if set(e) <= kept])
        return out

    # -- DeepLabCut's DataFrame layout ----------------------------------------------------------
    def to_dataframe(self, index_style: Literal["legacy", "multi"] = "legacy") -> pd.DataFrame:
        """DeepLabCut's table: columns ``scorer/bodyparts/coords`` (single animal) or
        ``scorer/individuals/bodyparts/coords`` (unique keypoints under ``single``), coords
        ``x, y, likelihood`` (labels: ``x, y``); rows are frame numbers or image paths, the
        latter as one string (``legacy``) or as ('labeled-data', folder, file) (``multi``)."""
        names = ["x", "y"] if self.kind == "labels" else ["x", "y", "likelihood"]
        width = len(names)
        blocks: list[np.ndarray] = []
        tuples: list[tuple[str, ...]] = []
        multi = not self.single_animal or bool(self.unique_keypoints)
        for i, ind in enumerate(self.individuals):
            blocks.append(self.coords[:, i, :, :width].reshape(len(self), len(self.keypoints) * width))
            head = (self.scorer, ind) if multi else (self.scorer,)
            tuples += [(*head, k, c) for k in self.keypoints for c in names]
        if self.unique_keypoints:
            blocks.append(self.unique[..., :width].reshape(len(self), len(self.unique_keypoints) * width))  # type: ignore[index]
            tuples += [(self.scorer, UNIQUE_INDIVIDUAL, k, c) for k in self.unique_keypoints for c in names]
        columns = pd.MultiIndex.from_tuples(tuples, names=list(_LEVELS_MULTI if multi else _LEVELS_SINGLE))
        values = np.concatenate(blocks, axis=1).astype(np.float64) if blocks else np.zeros((len(self), 0))
        return pd.DataFrame(values, index=self._index(index_style), columns=columns)

    def _index(self, style: str) -> pd.Index:
        if self.images is None:
            return pd.RangeIndex(len(self)) if self.frame_indices is None else pd.Index(self.frame_indices)
        if style == "legacy":
            return pd.Index(self.images, dtype=object)
        if style != "multi":
            raise PosesError(f"index_style must be 'legacy' or 'multi', got {style!r}")
        parts = [tuple(img.split("/")) for img in self.images]
        bad = [img for img, p in zip(self.images, parts) if len(p) != 3]
        if bad:
            raise PosesError(f"index_style 'multi' needs 'labeled-data/<folder>/<file>' paths, got {bad[:3]}")
        return pd.MultiIndex.from_tuples(parts)

    @classmethod
    def from_dataframe(cls, df: pd.DataFrame, where: str = "<DataFrame>", **fields: Any) -> Poses:
        """Read DeepLabCut's table layout (either column layout, labels or predictions, frame
        numbers or image paths as rows). Bodyparts keep the table's order; columns missing for
        an individual are NaN. ``where`` names the source in errors."""
        cols = df.columns
        if not isinstance(cols, pd.MultiIndex) or cols.nlevels not in (3, 4):
            n = cols.nlevels if isinstance(cols, pd.MultiIndex) else 1
            raise PosesError(f"{where}: not a DeepLabCut table: columns have {n} level(s), expected "
                             "scorer/bodyparts/coords or scorer/individuals/bodyparts/coords")
        expected = _LEVELS_SINGLE if cols.nlevels == 3 else _LEVELS_MULTI
        if any(n is not None for n in cols.names) and tuple(cols.names) != expected:
            raise PosesError(f"{where}: wrong column levels {list(cols.names)}, expected {list(expected)}")
        # Level values can be non-str (a numeric scorer read back from CSV): compare as str.
        keys = [tuple(str(v) for v in t) for t in cols]
        if len(set(keys)) != len(keys):
            raise PosesError(f"{where}: duplicate columns in the table")
        scorers = _unique(k[0] for k in keys)
        if len(scorers) != 1:
            raise PosesError(f"{where}: expected one scorer in the columns, found {scorers}")
        coord_names = _unique(k[-1] for k in keys)
        if "x" not in coord_names or "y" not in coord_names:
            raise PosesError(f"{where}: wrong columns: coords level lacks x/y (found {coord_names})")
        kind: Kind = "predictions" if "likelihood" in coord_names else "labels"
        if cols.nlevels == 3:
            inds, per_ind = [SINGLE], {SINGLE: _unique(k[1] for k in keys)}
        else:
            inds = _unique(k[1] for k in keys)
            per_ind = {i: _unique(k[2] for k in keys if k[1] == i) for i in inds}
        uniq: list[str] = []
        if UNIQUE_INDIVIDUAL in inds and len(inds) > 1:
            uniq = per_ind[UNIQUE_INDIVIDUAL]
            inds = [i for i in inds if i != UNIQUE_INDIVIDUAL]
        keypoints = _unique(k for i in inds for k in per_ind[i])
        flat = df.copy(deep=False)
        flat.columns = pd.MultiIndex.from_tuples(keys)
        try:
            values = flat.to_numpy(dtype=np.float64, na_value=np.nan) if len(keys) else np.zeros((len(df), 0))
        except (TypeError, ValueError) as exc:
            raise PosesError(f"{where}: non-numeric coordinate values ({exc})") from None
        column = {key: j for j, key in enumerate(keys)}
        head = (scorers[0],)

        def gather(ind: str | None, names: list[str]) -> np.ndarray:
            out = np.full((len(df), len(names), 3), np.nan)
            prefix = head if ind is None else (*head, ind)
            for kk, name in enumerate(names):
                for c, coord in enumerate(("x", "y", "likelihood")):
                    j = column.get((*prefix, name, coord))
                    if j is not None:
                        out[:, kk, c] = values[:, j]
            return out

        if cols.nlevels == 3:
            coords = gather(None, keypoints)[:, None]
        else:
            coords = np.stack([gather(i, keypoints) for i in inds], axis=1) if inds else \
                np.zeros((len(df), 0, len(keypoints), 3))
        unique = gather(UNIQUE_INDIVIDUAL, uniq) if uniq else None
        if kind == "labels":  # a label is there (score 1) exactly where x and y are
            coords[..., 2] = np.where(np.isfinite(coords[..., :2]).all(-1), 1.0, np.nan)
            if unique is not None:
                unique[..., 2] = np.where(np.isfinite(unique[..., :2]).all(-1), 1.0, np.nan)
        frames, images = _rows(df.index, where)
        try:
            return cls(coords, keypoints, inds, unique=unique, unique_keypoints=uniq, frame_indices=frames,
                       images=images, scorer=scorers[0], kind=kind, **fields)
        except PosesError as exc:
            raise PosesError(f"{where}: {exc}") from None


def _unique(values: Any) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values))


def _rows(index: pd.Index, where: str) -> tuple[np.ndarray | None, list[str] | None]:
    """Frame numbers (an integer index) or image paths (strings or tuples) of a table's rows."""
    if not isinstance(index, pd.MultiIndex) and len(index) and pd.api.types.is_integer_dtype(index):
        return np.asarray(index, dtype=np.int64), None
    if not len(index):
        return np.zeros(0, np.int64), None
    return None, [_image_key(entry, where) for entry in index]


def _image_key(entry: object, where: str) -> str:
    """One row label -> a posix relative path; accepts tuples and Windows or posix strings."""
    if isinstance(entry, tuple):
        parts = [str(p) for p in entry]
    else:
        text = str(entry)
        pure = PureWindowsPath(text) if "\\" in text else PurePosixPath(text)
        parts = [p for p in pure.parts if p not in ("/", "\\")]
    if not parts or any(p == "" for p in parts):
        raise PosesError(f"{where}: invalid image entry {entry!r} in the row index")
    return "/".join(parts)
