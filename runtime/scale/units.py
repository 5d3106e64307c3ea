"""Running units of work: the one function every engine calls, wherever the unit lands.

`run_unit` analyses a unit with `video.analyze_unit` (the same decoder -> PoseModel ->
ResultsWriter road as `posezoo analyze`), then, when it finished the last missing chunk of its
video, merges the chunks. It never raises for a bad video: the failure is its result, so a Ray or
SLURM retry is spent only on a lost worker, not on a file that will never decode. A unit whose
output another process is writing (a worker of an earlier, killed driver) is not waited for: it
comes back "busy", and the driver waits for that process before handing the unit out again.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..lock import LockedError, file_lock, lock_holder
from ..model import PoseModel
from ..track import TrackerSettings
from ..video import (analyze_unit, detections_path, fingerprint, meta_path, recorded_fingerprint, result_path,
                     scorer_name, track_results)
from .merge import Chunk, chunk_dir, chunk_path, merge_chunks, whole_fingerprint
from .plan import Unit


@dataclass(frozen=True)
class Job:
    """What every unit of one analysis shares: the model and the options. Plain values only, so
    engines can pickle it to other processes and machines (give absolute paths)."""

    model: str
    output_dir: str | None = None
    batch_size: int = 8
    csv: bool = False
    nwb: bool = False
    overwrite: bool = False
    resume: bool = True
    device: str = "auto"
    threads: int | None = None
    spin: bool = True
    optimization: str = "all"
    arena: bool = True
    static: bool = True
    body_check: bool = True
    tracking: bool = True  # a multi-animal model's animals are tracked once a video is whole

    def with_(self, **changes: Any) -> Job:
        return Job(**{**asdict(self), **changes})

    def load_model(self) -> PoseModel:
        """The job's model, loaded once per process (a Ray worker or array task runs many units)."""
        key = (self.model, self.device, self.threads, self.spin, self.optimization, self.arena, self.static,
               self.body_check)
        if key not in _MODELS:
            _MODELS.clear()  # one model per worker process is plenty
            _MODELS[key] = PoseModel.load(self.model, device=self.device, threads=self.threads, spin=self.spin,
                                          optimization=self.optimization, arena=self.arena, static=self.static,
                                          body_check=self.body_check)
        return _MODELS[key]

    def tracks(self, model: PoseModel) -> bool:
        return self.tracking and model.spec.multi is not None

    def tracked(self, model: PoseModel, video: Path) -> Path:
        """The results table users get (where `posezoo analyze` puts it)."""
        return result_path(video, scorer_name(model.name), self.output_dir)

    def final(self, model: PoseModel, video: Path) -> Path:
        """The table the units of a whole video make: the results, or, for a tracked multi-animal
        model, each frame's animals (`video.detections_path`), which tracking names afterwards."""
        tracked = self.tracked(model, video)
        return detections_path(tracked) if self.tracks(model) else tracked

    def output(self, model: PoseModel, unit: Unit) -> Path:
        final = self.final(model, unit.video)
        return final if unit.whole else chunk_path(final, unit.start, unit.stop)


_MODELS: dict[tuple[Any, ...], PoseModel] = {}


@dataclass
class UnitResult:
    """What happened to one unit (plain values: it travels back from remote workers)."""

    unit: Unit
    status: str  # "done", "skipped", "failed" or "busy" (another process holds its output's lock)
    path: str | None = None
    error: str | None = None
    seconds: float = 0.0
    frames: int = 0
    merged: str | None = None  # the video's table, when this unit's finish completed it
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    warnings: list[str] = field(default_factory=list)


def run_unit(job: Job, unit: Unit, progress: bool = False) -> UnitResult:
    """Analyse one unit (skipped when its results, or its whole video's, are up to date)."""
    began = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # frame losses, stale results: shown by the driver
        try:
            result = _run_unit(job, unit, progress)
        except LockedError as exc:
            result = UnitResult(unit, "busy", error=str(exc))
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            result = UnitResult(unit, "failed", error=str(exc) or type(exc).__name__)
    result.seconds = round(time.perf_counter() - began, 3)
    result.warnings = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return result


def run_units(job: Job, units: Sequence[Unit], progress: bool = False) -> list[UnitResult]:
    """Several units in this process, in order (one array task's share)."""
    return [run_unit(job, unit, progress) for unit in units]


def _run_unit(job: Job, unit: Unit, progress: bool) -> UnitResult:
    model = job.load_model()
    final = job.final(model, unit.video)
    if not unit.whole and not job.overwrite and is_current(final, _whole_print(model, job, unit.video)):
        return UnitResult(unit, "skipped", str(final))
    # a chunk gets them when merged; tracked detections never (the tracked table gets them)
    csv, nwb = (job.csv, job.nwb) if unit.whole and not job.tracks(model) else (False, False)
    outcome = analyze_unit(model, unit.video, output=job.output(model, unit), frames=unit.frames,
                           batch_size=job.batch_size, csv=csv, nwb=nwb, overwrite=job.overwrite, resume=job.resume,
                           progress=progress)
    frames = int((outcome.meta or {}).get("frames_written", 0))
    result = UnitResult(unit, outcome.status, str(outcome.path), frames=frames)
    if not unit.whole:
        merged = merge_if_complete(job, model, unit)
        result.merged = None if merged is None else str(merged)
    if job.tracks(model) and (unit.whole or result.merged):
        result.merged = str(track_if_needed(job, model, unit.video))
    return result


def track_if_needed(job: Job, model: PoseModel, video: Path) -> Path:
    """Track a video's complete detections into its results table, unless that is current."""
    tracked, detections = job.tracked(model, video), job.final(model, video)
    settings = TrackerSettings()
    expected = {**_whole_print(model, job, video), "tracking": settings.to_dict()}
    if not job.overwrite and is_current(tracked, expected):
        return tracked
    with file_lock(tracked.with_name(f".{tracked.name}.lock"), str(tracked), wait=True):
        if job.overwrite or not is_current(tracked, expected):  # another worker may have just done it
            track_results(model, detections, tracked, settings=settings, csv=job.csv, nwb=job.nwb, video=video)
    return tracked


def busy_holder(job: Job, model: PoseModel, unit: Unit) -> str | None:
    """Who is writing ``unit``'s output right now (None: nobody), without touching anything."""
    out = job.output(model, unit)
    return lock_holder(out.with_name(f".{out.name}.lock"))


def _whole_print(model: PoseModel, job: Job, video: Path) -> dict[str, Any]:
    return fingerprint(model, video, batch_size=job.batch_size)


def is_current(table: Path, expected: dict[str, Any]) -> bool:
    return table.exists() and recorded_fingerprint(table) == expected


def unit_current(job: Job, model: PoseModel, unit: Unit) -> bool:
    """Whether a unit's results (or its whole video's) are up to date, so it need not run."""
    if job.overwrite:
        return False
    try:
        whole = _whole_print(model, job, unit.video)
    except OSError:
        return False  # a missing video: let the unit run and report it
    if is_current(job.final(model, unit.video), whole):
        return True
    if unit.whole:
        return False
    return is_current(job.output(model, unit), {**whole, "frames": [unit.start, unit.stop]})


def missing_units(job: Job, model: PoseModel, units: Iterable[Unit]) -> list[Unit]:
    """The units that still have to run (what a rerun or a resubmission does)."""
    return [u for u in units if not unit_current(job, model, u)]


def merge_if_complete(job: Job, model: PoseModel, unit: Unit) -> Path | None:
    """Merge the chunks of ``unit``'s video when every one is finished and up to date."""
    final = job.final(model, unit.video)
    whole = _whole_print(model, job, unit.video)
    chunks = [Chunk(chunk_path(final, s.start, s.stop), s.start, s.stop) for s in unit.siblings()]
    for chunk in chunks:
        if whole_fingerprint(recorded_fingerprint(chunk.path) or {}) != whole or not chunk.path.exists():
            return None
    return merge_chunks(final, chunks, csv=job.csv, nwb=job.nwb, expected=whole, overwrite=job.overwrite)


@dataclass
class VideoState:
    """Where a video of the plan stands after a run."""

    video: Path
    path: Path
    complete: bool
    missing: list[Unit] = field(default_factory=list)


def finish(job: Job, units: Sequence[Unit]) -> list[VideoState]:
    """Merge every chunked video of the plan whose chunks are all finished (a worker that raced
    another to the last chunk may have left that to this pass), and say where each video stands."""
    model = job.load_model()
    by_video: dict[Path, Unit] = {}
    for unit in units:
        by_video.setdefault(unit.video, unit)
    states = []
    settled = job.with_(overwrite=False)  # what is finished now counts, whoever made it
    for video, unit in by_video.items():
        final = job.final(model, video)
        whole = Unit(video)
        if not unit.whole and not unit_current(settled, model, whole):
            try:
                merge_if_complete(settled, model, unit)
            except (OSError, ValueError) as exc:
                warnings.warn(f"{chunk_dir(final)}: could not merge ({exc})", stacklevel=2)
        # complete means merged: chunks that are all there may be another worker's to merge yet
        complete = unit_current(settled, model, whole)
        missing = [] if complete else missing_units(settled, model, unit.siblings())
        if complete and job.tracks(model):
            try:
                track_if_needed(settled, model, video)
            except (OSError, ValueError) as exc:
                warnings.warn(f"{final}: could not track ({exc})", stacklevel=2)
        if complete:
            tidy(final, _whole_print(model, settled, video))
        states.append(VideoState(video, job.tracked(model, video) if job.tracks(model) else final, complete, missing))
    return states


def tidy(final: Path, expected: dict[str, Any]) -> None:
    """Remove what killed workers left around a results table that is complete and up to date
    (its fingerprint is ``expected``): temporary files of interrupted atomic writes, partial and
    set-aside tables, stale lock files and the chunk folder. None of it holds a row the table
    lacks. Skipped while another process holds the table's lock, or when the table is not
    current (its chunks are then still to be merged)."""
    try:
        with file_lock(final.with_name(f".{final.name}.lock"), str(final), wait=False):
            if not is_current(final, expected):
                return
            for name in (final, meta_path(final), final.with_suffix(".csv"), final.with_suffix(".nwb")):
                for tmp in final.parent.glob(f".{glob.escape(name.name)}.*.tmp"):
                    tmp.unlink(missing_ok=True)
            for suffix in (".partial", ".partial.json", ".partial.unreadable"):
                final.with_name(final.name + suffix).unlink(missing_ok=True)
            shutil.rmtree(chunk_dir(final), ignore_errors=True)
    except LockedError:
        pass


__all__ = ["Job", "UnitResult", "VideoState", "busy_holder", "finish", "is_current", "merge_if_complete",
           "missing_units", "run_unit", "run_units", "tidy", "unit_current"]
