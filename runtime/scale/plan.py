"""The plan: which units of work a set of videos makes, and which of them shard I of N does.

A unit is one whole video, or one frame range of a long video (``--chunk-frames``). The plan is a
pure function of the video paths, their declared frame counts, the chunk length and the batch
size, so every node of a job array computes the same plan and takes a disjoint share of it
without talking to the others.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..decode import open_video


@dataclass(frozen=True, order=True)
class Unit:
    """One unit: frames ``[start, stop)`` of ``video`` (``stop`` None: to the end of the file).

    A chunked video has ``parts`` units of ``size`` frames each (the last one runs to the end);
    a whole video has ``parts == 1``. Both numbers travel with the unit, so the worker that
    finishes a chunk knows which sibling chunks make the whole video.
    """

    video: Path
    start: int = 0
    stop: int | None = None
    parts: int = 1
    size: int = 0

    @property
    def whole(self) -> bool:
        return self.parts == 1

    @property
    def frames(self) -> tuple[int, int | None]:
        return self.start, self.stop

    def siblings(self) -> list[Unit]:
        """Every unit of this unit's video, in frame order (itself included)."""
        if self.whole:
            return [self]
        return [Unit(self.video, k * self.size, None if k == self.parts - 1 else (k + 1) * self.size, self.parts,
                     self.size) for k in range(self.parts)]

    def __str__(self) -> str:
        if self.whole:
            return str(self.video)
        return f"{self.video} [{self.start}:{'' if self.stop is None else self.stop}]"


def chunk_length(chunk_frames: int, batch_size: int) -> int:
    """``chunk_frames`` rounded up to a multiple of the batch size: every chunk then starts on a
    batch boundary of a whole-video run, so each batch holds the same frames either way."""
    if chunk_frames < 1 or batch_size < 1:
        raise ValueError(f"chunk frames and batch size must be >= 1, got {chunk_frames} and {batch_size}")
    return -(-chunk_frames // batch_size) * batch_size


def video_units(video: Path, frame_count: int, chunk: int | None) -> list[Unit]:
    """The units of one video with ``frame_count`` declared frames (0: unknown, one unit)."""
    if not chunk or frame_count <= chunk:
        return [Unit(video)]
    parts = -(-frame_count // chunk)
    return Unit(video, 0, chunk, parts, chunk).siblings()


def make_plan(videos: Iterable[str | os.PathLike[str]], *, chunk_frames: int | None = None, batch_size: int = 8,
              frame_counts: Mapping[Path, int] | None = None) -> list[Unit]:
    """Units of every video: videos sorted by absolute path, each split into chunks of
    ``chunk_frames`` (rounded up to the batch size) when given and the video is longer.

    Frame counts are those the containers declare (read once per video, only when chunking).
    The same paths give the same plan on every machine.
    """
    paths = sorted({Path(os.path.abspath(v)) for v in videos}, key=str)
    if not chunk_frames:
        return [Unit(p) for p in paths]
    chunk = chunk_length(chunk_frames, batch_size)
    units: list[Unit] = []
    for path in paths:
        count = (frame_counts or {}).get(path)
        if count is None:
            count = declared_frames(path)
        units.extend(video_units(path, count, chunk))
    return units


def declared_frames(video: Path) -> int:
    """The frame count the container declares (0 when unknown or unreadable: one whole unit,
    whose analysis then reports the problem)."""
    try:
        cap, info = open_video(video)
    except (OSError, RuntimeError):
        return 0
    cap.release()
    return info.frame_count


# -- shards ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    """Share ``index`` of ``count`` (0-based): every count-th unit of the plan, from unit index."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= I < N (shards are numbered from 0)")

    def take(self, units: Sequence[Unit]) -> list[Unit]:
        # Round robin: a video's chunks land on different shards, and long and short videos mix.
        return list(units[self.index::self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


#: Where schedulers put a task's index (and, for SLURM, the array's first index and its size).
_INDEX_VARIABLES = ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX")


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> Shard:
    """``I/N``; ``auto/N`` or ``auto`` take I (and N) from the scheduler's environment:
    SLURM arrays (``SLURM_ARRAY_TASK_ID`` minus ``SLURM_ARRAY_TASK_MIN``, ``SLURM_ARRAY_TASK_COUNT``),
    Kubernetes indexed jobs (``JOB_COMPLETION_INDEX``)."""
    env = os.environ if environ is None else environ
    head, sep, tail = text.partition("/")
    try:
        if head != "auto" and not sep:
            raise ValueError
        index = None if head == "auto" else int(head)
        count = int(tail) if sep else int(env.get("SLURM_ARRAY_TASK_COUNT", ""))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected I/N (e.g. 0/8), auto/N or auto (inside a SLURM array)") from None
    if index is not None:
        return Shard(index, count)
    for name in _INDEX_VARIABLES:
        if env.get(name, "").strip().isdigit():
            index = int(env[name])
            if name == "SLURM_ARRAY_TASK_ID":  # --array=1-64 works as well as 0-63
                index -= int(env.get("SLURM_ARRAY_TASK_MIN", "0") or 0)
            return Shard(index, count)
    raise ValueError(f"--shard {text!r}: no array task index in the environment (looked for "
                     f"{', '.join(_INDEX_VARIABLES)}); give I/N explicitly")
