"""Joining the chunk tables of a video into its one results table.

Chunks live in ``<results stem>.chunks/`` beside the final table, one DeepLabCut-layout table per
frame range (``frames-0000000000-0000004096.h5``; the last ends in ``-end.h5``) with its own
``_meta.json``. Merging streams them, in frame order, through the same `ResultsWriter` a
whole-video analysis uses (so the table, its .csv and the atomic rename are the same), checks
that they tile the video with the right number of rows, writes the sidecar, then removes them.
"""
from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..files import write_json_atomic
from ..io.appearance import AppearanceWriter, appearance_path, read_appearance_blocks
from ..io.dlc import DLC_KEY, read_dlc_blocks
from ..io.writer import ResultsWriter
from ..lock import file_lock
from ..poses import Poses
from ..video import load_meta, meta_path, recorded_fingerprint

_CHUNK = re.compile(r"^frames-(\d{10})-(\d{10}|end)\.h5$")
_READ_ROWS = 100_000  # rows read from a chunk at a time: memory stays flat for any chunk length
_LIST_LIMIT = 1000


class MergeError(ValueError):
    """Chunks that do not make a whole video; the message names the folder and the fix."""


def chunk_dir(final: Path) -> Path:
    """The folder beside a results table that holds its chunks."""
    return final.with_name(final.stem + ".chunks")


def chunk_path(final: Path, start: int, stop: int | None) -> Path:
    return chunk_dir(final) / f"frames-{start:010d}-{'end' if stop is None else f'{stop:010d}'}.h5"


def final_for(folder: Path) -> Path:
    """The results table a chunk folder belongs to."""
    return folder.with_name(folder.name[: -len(".chunks")] + ".h5")


@dataclass(frozen=True)
class Chunk:
    path: Path
    start: int
    stop: int | None


def list_chunks(folder: Path) -> list[Chunk]:
    """The finished chunk tables in a chunk folder, by first frame (partial ones are not listed)."""
    found = []
    for path in folder.iterdir() if folder.is_dir() else ():
        match = _CHUNK.match(path.name)
        if match:
            found.append(Chunk(path, int(match[1]), None if match[2] == "end" else int(match[2])))
    return sorted(found, key=lambda c: (c.start, c.stop is None, c.stop or 0))


def tiling(chunks: list[Chunk]) -> tuple[list[Chunk] | None, str]:
    """The chunks that cover frame 0 to the end without gap or overlap, or None and what is missing."""
    out: list[Chunk] = []
    at = 0
    by_start: dict[int, list[Chunk]] = {}
    for c in chunks:
        by_start.setdefault(c.start, []).append(c)
    while True:
        options = by_start.get(at)
        if not options:
            return None, f"no chunk starts at frame {at}"
        if len(options) > 1:
            return None, f"{len(options)} chunks start at frame {at} (left by runs with different --chunk-frames)"
        chunk = options[0]
        out.append(chunk)
        if chunk.stop is None:
            return out, ""
        at = chunk.stop


def whole_fingerprint(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """A chunk's fingerprint without its frame range: the merged table's fingerprint, equal to
    that of a whole-video analysis with the same model, video and options."""
    return {k: v for k, v in fingerprint.items() if k != "frames"}


def merge_chunks(final: Path, chunks: list[Chunk], *, csv: bool = False, nwb: bool = False,
                 expected: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Join ``chunks`` (a tiling, see `tiling`) into ``final``; returns ``final``.

    ``expected`` is the whole-video fingerprint the chunks must have (None: they must agree
    with each other and with the video as it is now). Under the final table's lock; when
    another process merged meanwhile, its table is kept.
    """
    folder = chunk_dir(final)
    with file_lock(final.with_name(f".{final.name}.lock"), str(final), wait=True):
        gone = not all(c.path.exists() for c in chunks)
        if expected is not None and (gone or not overwrite) and recorded_fingerprint(final) == expected:
            remove_chunks(chunks, folder)
            return final  # another worker merged them while this one waited
        metas = [_chunk_meta(c) for c in chunks]
        prints = [whole_fingerprint(m.get("fingerprint") or {}) for m in metas]
        whole = expected if expected is not None else prints[0]
        if not overwrite and final.exists() and recorded_fingerprint(final) == whole:
            remove_chunks(chunks, folder)
            return final
        _check(final, chunks, metas, prints, whole)
        meta = _merged_meta(final, metas, whole, csv, nwb)
        layout = _layout(chunks[0].path)
        writer = ResultsWriter(final, layout, csv=csv, expected_frames=meta["frames_written"])
        with writer:
            for chunk in chunks:
                for block in read_dlc_blocks(chunk.path, _READ_ROWS):
                    writer.append(block)
            _merge_appearance(final, chunks, metas, whole)  # before the table's rename, as `analyze` does
        if writer.frames_written != meta["frames_written"]:  # _check counted them: a chunk changed under us
            raise MergeError(f"{folder}: the chunks held {writer.frames_written} rows while merging, "
                             f"{meta['frames_written']} before; run the merge again")
        if nwb:
            _write_nwb(final, metas[0])
        write_json_atomic(meta_path(final), meta)
        remove_chunks(chunks, folder)
    return final


def _merge_appearance(final: Path, chunks: list[Chunk], metas: list[dict[str, Any]], whole: dict[str, Any]) -> None:
    """Join the chunks' colour descriptors (`io.appearance`) when every chunk has them."""
    parts = [read_appearance_blocks(c.path, m.get("fingerprint") or {}, int(m["frames_written"]), _READ_ROWS)
             for c, m in zip(chunks, metas)]
    if any(part is None for part in parts):
        return  # chunks made without them: tracking goes by motion and size
    with AppearanceWriter(final, whole) as looks:
        for part in parts:
            for block in part or ():
                looks.append(block)


def _chunk_meta(chunk: Chunk) -> dict[str, Any]:
    try:
        return load_meta(chunk.path)
    except (OSError, ValueError) as exc:
        raise MergeError(f"{chunk.path}: {exc}; delete this chunk and run the analysis again to redo it") from None


def _check(final: Path, chunks: list[Chunk], metas: list[dict[str, Any]], prints: list[dict[str, Any]],
           whole: dict[str, Any]) -> None:
    folder = chunk_dir(final)
    for chunk, meta, fp in zip(chunks, metas, prints):
        if fp != whole:
            raise MergeError(f"{chunk.path}: made with another model, other options or another version of the "
                             f"video than the other chunks; delete {folder} and analyse again")
        rows = int(meta.get("frames_written", -1))
        if chunk.stop is not None and rows != chunk.stop - chunk.start:
            raise MergeError(f"{chunk.path}: {rows} rows for frames {chunk.start}-{chunk.stop - 1}; delete it and "
                             "analyse again to redo it")
    video = Path(metas[0]["video"]["path"])
    try:
        stat = video.stat()
    except OSError:
        stat = None  # the video may not be mounted where merging runs: the chunks' record stands
    if stat is not None and (stat.st_size, stat.st_mtime_ns) != (whole.get("video_bytes"), whole.get("video_mtime_ns")):
        raise MergeError(f"{folder}: {video} changed since its chunks were analysed (size or modification time); "
                         f"delete {folder} and analyse the video again")
    declared = int(metas[0]["video"].get("frame_count") or 0)
    total = sum(int(m["frames_written"]) for m in metas)
    if declared and total < declared:
        raise MergeError(f"{folder}: the chunks hold {total} rows but {video.name} declares {declared} frames; "
                         "delete the last chunk and analyse again")


def _merged_meta(final: Path, metas: list[dict[str, Any]], whole: dict[str, Any], csv: bool,
                 nwb: bool) -> dict[str, Any]:
    seconds = sum(float((m.get("timing") or {}).get("seconds") or 0.0) for m in metas)
    total = sum(int(m["frames_written"]) for m in metas)
    meta = {k: v for k, v in metas[0].items() if k != "frames"}
    corrupt = [i for m in metas for i in m.get("corrupt_frame_indices", [])]
    meta.update({
        "fingerprint": whole,
        "frames_written": total,
        "frames_read": sum(int(m.get("frames_read", 0)) for m in metas),
        "corrupt_frames": sum(int(m.get("corrupt_frames", 0)) for m in metas),
        "corrupt_frame_indices": corrupt[:_LIST_LIMIT],
        "missing_frames": sum(int(m.get("missing_frames", 0)) for m in metas),
        "resumed_from_frame": 0,
        "timing": {"seconds": round(seconds, 3), "frames_per_second": round(total / seconds, 2) if seconds else None,
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "chunks": {"count": len(metas), "starts": [int(m["frames"]["start"]) if "frames" in m else 0 for m in metas],
                   "devices": sorted({str(m.get("device")) for m in metas})},
        "outputs": [final.name] + ([final.with_suffix(".csv").name] if csv else [])
                   + ([final.with_suffix(".nwb").name] if nwb else []),
    })
    return meta


def _layout(table: Path) -> Poses:
    with pd.HDFStore(table, mode="r") as store:
        head = store.select(DLC_KEY, start=0, stop=0)
    return Poses.from_dataframe(head, str(table))


def _write_nwb(final: Path, meta: dict[str, Any]) -> None:
    from ..io.dlc import read_dlc
    from ..io.nwb import write_nwb

    poses = read_dlc(final)
    poses.skeleton = [(a, b) for a, b in meta["model"].get("skeleton", [])]
    video = meta["video"]
    write_nwb(poses, final.with_suffix(".nwb"), fps=video["fps"], video=video["path"], width=video["width"],
              height=video["height"])


def remove_chunks(chunks: list[Chunk], folder: Path) -> None:
    """Delete merged (or redundant) chunk tables and their sidecars; the folder once empty."""
    for chunk in chunks:
        for path in (chunk.path, meta_path(chunk.path), appearance_path(chunk.path)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when empty: a chunk of another plan still being written stays


def merge_folder(folder: Path, *, csv: bool = False, nwb: bool = False, overwrite: bool = False) -> Path:
    """Merge the chunks in ``folder`` (a ``*.chunks`` folder) into the table beside it."""
    found = list_chunks(folder)
    chunks, missing = tiling(found)
    if chunks is None:
        raise MergeError(f"{folder}: not every chunk is there ({missing}); run the same analyze command again: "
                         "it analyses only the missing chunks and merges them")
    return merge_chunks(final_for(folder), chunks, csv=csv, nwb=nwb, overwrite=overwrite)


def find_chunk_dirs(paths: list[Path]) -> list[Path]:
    """``*.chunks`` folders named directly, inside folders given, or beside results tables given."""
    out: list[Path] = []
    for path in paths:
        if path.name.endswith(".chunks") and path.is_dir():
            out.append(path)
        elif path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.is_dir() and p.name.endswith(".chunks")))
        elif chunk_dir(path).is_dir():
            out.append(chunk_dir(path))
        elif not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
    return sorted(set(out), key=str)


__all__ = ["Chunk", "MergeError", "chunk_dir", "chunk_path", "find_chunk_dirs", "list_chunks", "merge_chunks",
           "merge_folder", "remove_chunks", "tiling", "whole_fingerprint"]
