"""Live results on disk: the DeepLabCut-layout table, its capture timestamps, and a summary.

One row per captured frame, in both files, so row i of ``<stem>.h5`` is frame i of the camera (and
of the ``--record`` video): frames dropped while the model was busy get a NaN row there, as
frames that fail to decode do in ``analyze``. Beside it:

- ``<stem>_timestamps.csv``: per frame ``frame, capture_time`` (unix seconds), ``analysed``,
  ``latency_ms`` (capture -> poses), ``processed_ms`` (capture -> processors done), the crop
  window ``crop_x1, crop_x2, crop_y1, crop_y2`` (empty: whole frame), ``recorded`` and the
  processors' ``actions``;
- ``<stem>_meta.json``: the session (model, source, counts, latency percentiles, how it ended).

The timestamps live in their own file, not as a second table in the .h5, because DeepLabCut's
helpers and many lab scripts read that file with ``pd.read_hdf(path)`` and no key, which fails on
a file with two tables. Both tables stream to ``.partial`` files (flushed every second) that are renamed when the session
ends, as ``analyze`` does.
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_json_atomic
from ..io.writer import ResultsWriter
from ..poses import Poses
from ..video import meta_path

TIMESTAMP_COLUMNS = ("frame", "capture_time", "analysed", "latency_ms", "processed_ms", "crop_x1", "crop_x2",
                     "crop_y1", "crop_y2", "recorded", "actions")


def timestamps_path(h5: str | os.PathLike[str]) -> Path:
    """``<results stem>_timestamps.csv`` beside the table."""
    h5 = Path(h5)
    return h5.with_name(f"{h5.stem}_timestamps.csv")


@dataclass
class FrameRow:
    """One captured frame as written: ``coords`` (individuals, K, 3) is None for a dropped frame."""

    index: int
    capture_time: float
    recorded: bool
    coords: np.ndarray | None = None
    latency_ms: float | None = None
    processed_ms: float | None = None
    crop: tuple[int, int, int, int] | None = None
    actions: str = ""
    unique: np.ndarray | None = None  # (unique keypoints, 3) of a multi-animal model


class LiveResults:
    """Streams `FrameRow`s to the table and the timestamps file; ``close`` renames both."""

    def __init__(self, path: str | os.PathLike[str], layout: Poses, *, csv_table: bool = False) -> None:
        self.path = Path(path)
        self.layout = layout[:0]
        self._shape = (len(layout.individuals), len(layout.keypoints), 3)
        self._unique = len(layout.unique_keypoints)
        self.writer = ResultsWriter(self.path, self.layout, csv=csv_table)
        self.timestamps = timestamps_path(self.path)
        self._ts_partial = self.timestamps.with_name(self.timestamps.name + ".partial")
        try:
            self._ts = open(self._ts_partial, "w", newline="", encoding="utf-8")
        except OSError:
            self.writer.abort()
            raise
        csv.writer(self._ts).writerow(TIMESTAMP_COLUMNS)
        self._pending: list[FrameRow] = []
        self.rows = 0
        self.closed = False

    def add(self, row: FrameRow) -> None:
        if row.index != self.rows + len(self._pending):
            raise RuntimeError(f"{self.path}: frame {row.index} arrived out of order (expected "
                               f"{self.rows + len(self._pending)})")
        self._pending.append(row)

    def flush(self) -> None:
        """Append the pending rows to both partial files (a few ms: called between frames)."""
        rows, self._pending = self._pending, []
        if not rows:
            return
        coords = np.full((len(rows), *self._shape), np.nan, np.float32)
        unique = np.full((len(rows), self._unique, 3), np.nan, np.float32) if self._unique else None
        for i, row in enumerate(rows):
            if row.coords is not None:
                coords[i] = row.coords
            if unique is not None and row.unique is not None:
                unique[i] = row.unique
        self.writer.append(Poses(coords, self.layout.keypoints, self.layout.individuals, unique=unique,
                                 unique_keypoints=self.layout.unique_keypoints, scorer=self.layout.scorer,
                                 kind=self.layout.kind))
        text = io.StringIO()
        out = csv.writer(text)
        for row in rows:
            crop = row.crop if row.crop is not None else ("", "", "", "")
            out.writerow((row.index, f"{row.capture_time:.6f}", int(row.coords is not None),
                          _ms(row.latency_ms), _ms(row.processed_ms), *crop, int(row.recorded), row.actions))
        self._ts.write(text.getvalue())
        self._ts.flush()
        self.rows += len(rows)

    def close(self, meta: dict[str, Any]) -> Path:
        """Write what is pending, finalise the table, rename the timestamps, write the summary."""
        if self.closed:
            return self.path
        try:
            self.flush()
        finally:
            self.closed = True
            self._ts.close()
            self.writer.close()  # renames onto the .h5 (and writes the .csv if asked)
            os.replace(self._ts_partial, self.timestamps)
            write_json_atomic(meta_path(self.path), meta)
        return self.path

    def abort(self) -> None:
        """Nothing was captured: remove the partial files."""
        self.closed = True
        self._ts.close()
        self.writer.abort()
        with contextlib.suppress(FileNotFoundError):
            self._ts_partial.unlink()


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
