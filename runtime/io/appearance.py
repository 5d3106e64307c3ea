"""The colour descriptors of each frame's animals (`runtime.appearance`) beside a detections table.

An HDF5 file of its own, ``<detections>.h5.appearance``, not a second key in the detections
table (DeepLabCut's and movement's readers open a DeepLabCut .h5 without naming a key, which works
only while it holds one table), and not ending in .h5, where tools that collect a folder's result
tables would take it for one. Rows are the detections' frames in order; columns are (detection row,
keypoint, colour channel), float32, NaN where a keypoint is missing. It streams and resumes
beside the detections' `ResultsWriter`: a ``.partial`` flushed with every chunk and renamed into
place on close. The detections' fingerprint is stored in it, so a file left by another model or
another video is never taken for this one's.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

KEY = "appearance"


def appearance_path(detections: str | os.PathLike[str]) -> Path:
    h5 = Path(detections)
    return h5.with_name(f"{h5.name}.appearance")


class AppearanceWriter:
    """Stream (F, A, D) descriptor chunks to `appearance_path(detections)`; ``state`` is the
    detections' fingerprint. With ``resume_frames`` (the rows the resumed detections table
    holds) the partial (or a complete file with the same state: a kill between the two renames)
    is reopened and cut to that many rows; if it holds fewer, descriptors for this video are
    given up (``active`` False): tracking then goes by motion and size alone."""

    def __init__(self, detections: str | os.PathLike[str], state: dict[str, Any], *,
                 resume_frames: int | None = None) -> None:
        self.path = appearance_path(detections)
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        self._state = json.dumps(state, sort_keys=True)
        self.active = True
        self.frames_written = 0
        self._store: pd.HDFStore | None = None
        if resume_frames:
            self._resume(resume_frames)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.partial_path.unlink()
            self._store = pd.HDFStore(self.partial_path, mode="w")

    def _resume(self, frames: int) -> None:
        if not self.partial_path.exists() and _rows(self.path, self._state) is not None:
            os.replace(self.path, self.partial_path)
        rows = _rows(self.partial_path, self._state)
        if rows is None or rows < frames:
            self.active = False
            with contextlib.suppress(FileNotFoundError):
                self.partial_path.unlink()
            return
        self._store = pd.HDFStore(self.partial_path, mode="a")
        if rows > frames:  # appended just before a kill that the detections' append did not reach
            self._store.remove(KEY, start=frames, stop=rows)
        self.frames_written = frames

    def append(self, looks: np.ndarray) -> None:
        """Append the descriptors (F, A, D) of the next F frames (before the detections' own
        append of those frames: a kill between the two leaves more rows here, never fewer)."""
        if not self.active or self._store is None or not len(looks):
            return
        flat = looks.reshape(len(looks), -1).astype(np.float32, copy=False)
        df = pd.DataFrame(flat, columns=[f"c{i}" for i in range(flat.shape[1])],
                          index=np.arange(self.frames_written, self.frames_written + len(flat)))
        self._store.append(KEY, df, format="table", index=False)
        if self.frames_written == 0:
            self._store.get_storer(KEY).attrs.posezoo_state = self._state
            self._store.get_storer(KEY).attrs.posezoo_shape = list(looks.shape[1:])
        self._store.flush()
        self.frames_written += len(flat)

    def close(self) -> None:
        """Rename into place (before the detections' own rename: their presence means done)."""
        if self._store is not None and self._store.is_open:
            self._store.close()
            if self.active and self.frames_written:
                os.replace(self.partial_path, self.path)
            else:
                self.partial_path.unlink(missing_ok=True)

    def release(self) -> None:
        """Close, keeping the partial for a resume."""
        if self._store is not None and self._store.is_open:
            self._store.close()

    def __enter__(self) -> AppearanceWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """`close` when the block ended normally, `release` (keep the partial) on an exception."""
        if kind is None:
            self.close()
        else:
            self.release()


def _rows(path: Path, state: str) -> int | None:
    """The rows of the appearance file at ``path`` if it was written for ``state`` (the
    detections' fingerprint as JSON); None if not, or absent, damaged or foreign."""
    try:
        with pd.HDFStore(path, mode="r") as store:
            storer = store.get_storer(KEY)
            if storer is None or str(storer.attrs.posezoo_state) != state:
                return None
            return int(storer.nrows)
    except Exception:
        return None


def read_appearance_blocks(detections: str | os.PathLike[str], state: dict[str, Any], frames: int,
                           rows: int = 20_000) -> Iterator[np.ndarray] | None:
    """The descriptors (F, A, D) of a complete detections table in blocks of ``rows`` frames (as
    `io.dlc.read_dlc_blocks` gives the detections); None when there is no file for exactly
    these detections (``state``: their fingerprint; ``frames``: their row count)."""
    path = appearance_path(detections)
    text = json.dumps(state, sort_keys=True)
    if _rows(path, text) != frames:
        return None

    def blocks() -> Iterator[np.ndarray]:
        with pd.HDFStore(path, mode="r") as store:
            shape = tuple(store.get_storer(KEY).attrs.posezoo_shape)
            for begin in range(0, frames, rows):
                block = store.select(KEY, start=begin, stop=min(begin + rows, frames)).to_numpy(np.float32)
                yield block.reshape(len(block), *shape)

    return blocks()
