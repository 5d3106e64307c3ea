"""Streaming, resumable video results: DeepLabCut's .h5 layout written chunk by chunk.

Apart from the formats on purpose: the layout comes from `Poses.to_dataframe` (so a streamed
table equals one written at once by `io.dlc.write_dlc`), this module only adds flat memory,
the ``.partial`` file that survives a kill, and the atomic rename at the end.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_output
from ..poses import Poses, PosesError
from .dlc import DLC_KEY, write_dlc

_CSV_CHUNK_ROWS = 20_000


class ResultsWriter:
    """Stream video results to DeepLabCut's .h5 layout with flat memory, atomically on close.

    ``layout`` is a `Poses` (any number of frames) whose names and scorer the table takes.
    Frames go to ``<path>.partial`` (a pandas "table" HDF5 beside ``path``) through
    ``HDFStore.append`` and are flushed after every chunk; ``close()`` builds the table index,
    renames the partial onto ``path`` and, with ``csv=True``, streams the .csv from it.

    Resuming an interrupted analysis::

        w = ResultsWriter(out_h5, layout, resume=True)  # reopens out_h5.partial if any
        start = w.frames_written                        # frames already on disk

    Inside ``with`` an exception deletes the partial unless ``keep_partial=True``, which keeps
    it for a later resume. Without ``resume`` any stale partial is discarded. ``first_frame``
    numbers the rows of a table that holds a frame range of a video from its first frame.
    """

    def __init__(self, path: str | os.PathLike[str], layout: Poses, *, csv: bool = False, resume: bool = False,
                 keep_partial: bool = False, expected_frames: int | None = None, first_frame: int = 0) -> None:
        self.path = Path(path)
        self.first_frame = int(first_frame)
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        self.layout = layout[:0]
        self.csv = csv
        self.keep_partial = keep_partial
        self._columns = self.layout.to_dataframe().columns
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

    def _reopen(self) -> None:
        try:
            store = pd.HDFStore(self.partial_path, mode="a")
        except Exception as exc:  # a kill during an HDF5 write can leave it unreadable
            warnings.warn(f"{self.partial_path}: unreadable partial results ({exc}); starting over", stacklevel=3)
            self.partial_path.unlink()
            self._store = pd.HDFStore(self.partial_path, mode="w")
            return
        try:
            if f"/{DLC_KEY}" in store.keys():
                cols = store.select(DLC_KEY, start=0, stop=0).columns
                if not cols.equals(self._columns):
                    raise PosesError(f"{self.partial_path}: partial results have different columns "
                                     "(scorer/individuals/bodyparts) than requested; delete it or start without resume")
                self.frames_written = int(store.get_storer(DLC_KEY).nrows)
        except BaseException:
            store.close()
            raise
        self._store = store

    def append(self, chunk: Poses) -> None:
        """Append the frames of ``chunk``; they get the next frame numbers."""
        if self._done or self._store is None:
            raise RuntimeError(f"{self.path}: ResultsWriter is already closed")
        if (chunk.keypoints, chunk.individuals, chunk.unique_keypoints) != (
                self.layout.keypoints, self.layout.individuals, self.layout.unique_keypoints):
            raise PosesError(f"{self.path}: the chunk's keypoints or individuals differ from the table's")
        if not len(chunk):
            return
        start = self.first_frame + self.frames_written
        rows = np.arange(start, start + len(chunk), dtype=np.int64)
        df = Poses(chunk.coords, chunk.keypoints, chunk.individuals, unique=chunk.unique,
                   unique_keypoints=chunk.unique_keypoints, frame_indices=rows, scorer=self.layout.scorer,
                   kind=self.layout.kind).to_dataframe()
        try:
            self._store.append(DLC_KEY, df, format="table", index=False, expectedrows=self._expected)
            self._store.flush()
        except Exception as exc:  # PyTables wraps ENOSPC/EFBIG in its own HDF5 errors
            raise OSError(f"{self.partial_path}: cannot write results ({_first_line(exc)}); is the disk full? "
                          "Free space and run again: the analysis resumes from the last written frame") from None
        self.frames_written += len(chunk)

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
            self._verify()
            if not self.frames_written:  # nothing appended: still leave a readable empty table
                write_dlc(self.layout, self.partial_path.with_suffix(".h5"))
                os.replace(self.partial_path.with_suffix(".h5"), self.partial_path)
            if self.csv:
                with atomic_output(self.path.with_suffix(".csv")) as tmp:
                    _stream_csv(self.partial_path, tmp)
            os.replace(self.partial_path, self.path)
        finally:
            # On failure the complete partial stays on disk: nothing is lost, and a resumed
            # writer can close it again.
            self._done = True
        return self.path

    def _verify(self) -> None:
        """Read the closed partial back: HDF5 can lose buffered writes on a full disk without an
        error, and a short table must never be renamed into place as if it were complete."""
        try:
            with pd.HDFStore(self.partial_path, mode="r") as store:
                rows = int(store.get_storer(DLC_KEY).nrows) if self.frames_written else self.frames_written
                if self.frames_written:
                    store.select(DLC_KEY, start=rows - 1, stop=rows)  # the last row really is there
        except Exception as exc:
            raise OSError(f"{self.partial_path}: the results could not be written completely ({_first_line(exc)}); "
                          "is the disk full? Free space and run again") from None
        if rows != self.frames_written:
            raise OSError(f"{self.partial_path}: {rows} of {self.frames_written} result rows reached the disk; is "
                          "the disk full? Free space and run again")

    def abort(self) -> None:
        """Stop and delete the partial file; ``path`` is left untouched."""
        self._release()
        with contextlib.suppress(FileNotFoundError):
            self.partial_path.unlink()

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
            self._release()  # the flushed partial stays for a resume
        else:
            self.abort()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def set_aside_unreadable(partial: str | os.PathLike[str]) -> Path | None:
    """Rename a partial table that cannot be resumed (a kill before its first write leaves an
    HDF5 file with no table in it) to ``<partial>.unreadable``; returns the new path, or None
    when the partial is fine or absent."""
    partial = Path(partial)
    if not partial.exists():
        return None
    try:
        with pd.HDFStore(partial, mode="r") as store:
            if f"/{DLC_KEY}" in store.keys():
                store.get_storer(DLC_KEY).nrows  # noqa: B018  (reads the table's header)
                return None
    except Exception:  # PyTables raises HDF5ExtError, OSError, ValueError... for a broken file
        pass
    aside = partial.with_name(partial.name + ".unreadable")
    os.replace(partial, aside)
    return aside


def nan_rows(partial: str | os.PathLike[str]) -> list[int]:
    """Frame numbers whose row is all NaN in a partial table (frames lost before an interruption);
    [] when it cannot be read (the writer then decides what to do with it)."""
    lost: list[int] = []
    try:
        with pd.HDFStore(partial, mode="r") as store:
            n = int(store.get_storer(DLC_KEY).nrows)
            for begin in range(0, n, 100_000):
                part = store.select(DLC_KEY, start=begin, stop=begin + 100_000)
                lost.extend(int(i) for i in part.index[part.isna().all(axis=1).to_numpy()])
    except Exception:  # unreadable: the writer decides what to do with it
        return []
    return lost


def _stream_csv(h5: Path, out: Path) -> None:
    """Write the .csv of a results table chunk by chunk (the same text as DataFrame.to_csv)."""
    with pd.HDFStore(h5, mode="r") as store, open(out, "w", newline="", encoding="utf-8") as fh:
        storer = store.get_storer(DLC_KEY)
        if not storer.is_table:  # only the empty-results case
            store.get(DLC_KEY).to_csv(fh)
            return
        n = int(storer.nrows)
        for start in range(0, n, _CSV_CHUNK_ROWS):
            part = store.select(DLC_KEY, start=start, stop=min(start + _CSV_CHUNK_ROWS, n))
            part.to_csv(fh, header=start == 0)
