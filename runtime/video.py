"""Video analysis: hours of video -> DeepLabCut-layout results, with flat memory and resume.

One background thread decodes frames and prepares them straight into a small pool of reused input
tensors while the main thread runs the previous batch through onnxruntime (both release the GIL).
Results stream to ``<video stem><scorer>.h5.partial`` through ``ResultsWriter`` and are renamed
onto ``<video stem><scorer>.h5`` when the video is complete, so a crash leaves no half-written
table and the next run resumes after the last flushed frame.

Frame accounting: every row of the table is one frame of the video. A frame that fails to
decode (a corrupt packet) or that is missing because the file ends before its declared frame
count gets a NaN row, so row i is always frame i; both are counted in the ``_meta.json`` sidecar
and reported, never silently dropped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import re
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from .model import PoseModel
from .files import atomic_output, sha256_file
from .results import ResultsWriter
from .static import StaticSession

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".m4v", ".wmv", ".webm", ".h264")
#: Give up on a stream after this many failed reads in a row (the rest counts as missing).
MAX_CONSECUTIVE_FAILURES = 1000
#: Results are appended to the .partial file at least this often (frames / seconds): bounds
#: both the memory held and the work lost to a kill.
FLUSH_FRAMES, FLUSH_SECONDS = 512, 10.0
_LIST_LIMIT = 1000  # at most this many corrupt-frame indices are listed in the sidecar


class VideoError(RuntimeError):
    """A video that cannot be analysed (cannot be opened, no decodable frame); names the file."""


class FrameLossWarning(UserWarning):
    """Some frames of a video could not be decoded; their rows hold NaN."""


# -- names ----------------------------------------------------------------------------------------
def scorer_name(model_name: str) -> str:
    """DeepLabCut-style scorer for a model: ``DLC_posezoo_<name>`` (file-name safe).

    It starts with "DLC" so DeepLabCut's own helpers, which glob ``<video>DLC*.h5``, find our files.
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", model_name).strip("-.") or "model"
    return f"DLC_posezoo_{safe}"


def result_path(video: str | os.PathLike[str], scorer: str, output_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<output_dir or video's folder>/<video stem><scorer>.h5``, as DeepLabCut names it."""
    video = Path(video)
    folder = Path(output_dir) if output_dir is not None else video.parent
    return folder / f"{video.stem}{scorer}.h5"


def meta_path(h5: str | os.PathLike[str]) -> Path:
    """The JSON sidecar beside a results table: ``<same stem>_meta.json``."""
    h5 = Path(h5)
    return h5.with_name(f"{h5.stem}_meta.json")


def expand_videos(items: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; folders expand to the video files directly inside them (sorted)."""
    out: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise VideoError(f"{path}: folder holds no video files ({', '.join(VIDEO_EXTENSIONS)})")
            out.extend(found)
        else:
            out.append(path)
    return out


# -- reading --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float
    frame_count: int  # as the container declares it (0 when unknown)
    width: int
    height: int
    codec: str


def open_video(path: str | os.PathLike[str]) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a video with OpenCV; a clear VideoError instead of OpenCV's silent failure."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    if path.is_dir():
        raise VideoError(f"{path} is a folder, not a video file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{path}: OpenCV cannot open this file as a video (not a video, an unsupported "
                         "codec, or a damaged header)")
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    codec = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ") if code > 0 else "?"
    height, width = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    # The size that frames really decode to (OpenCV applies rotation metadata, which the size
    # properties do not show): decode the first frame, then start again from the top.
    ok, first = cap.read()
    if ok and first is not None:
        height, width = first.shape[:2]
        cap.release()
        cap = cv2.VideoCapture(str(path))
    elif not cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
        cap.release()
        cap = cv2.VideoCapture(str(path))
    info = VideoInfo(path, float(cap.get(cv2.CAP_PROP_FPS) or 0.0), max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))),
                     width, height, codec)
    return cap, info


def indexed_frames(cap: cv2.VideoCapture, info: VideoInfo, start: int = 0,
                   frame: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray | None, str]]:
    """Yield ``(index, frame or None, kind)`` for every frame index of the video, in order.

    ``kind`` is "ok", "corrupt" (a failed read followed by later good frames) or "missing" (the
    file ended before its declared frame count). Frames before ``start`` are skipped without
    being converted (resume). Counting is by reads, like DeepLabCut; only after failed reads do
    the timestamps say how many frames were lost, so variable-frame-rate files keep their count.
    ``frame`` is an optional reused output buffer.
    """
    last, pending, base = -1, 0, None
    while True:
        if not cap.grab():
            pending += 1  # frame `last + pending` failed; try on only if the file declares more
            if pending >= MAX_CONSECUTIVE_FAILURES or last + pending + 1 >= info.frame_count:
                break
            continue
        index = last + 1 + pending
        stamp = _stamp_index(cap, info.fps)
        if base is None:
            base = 0 if pending or stamp is None else stamp
        if pending and stamp is not None and stamp - base > last:
            index = stamp - base  # the timestamp tells how many frames the failures cost
        for lost in range(last + 1, index):
            yield lost, None, "corrupt"
        if index >= start:
            ok, frame = cap.retrieve(frame)
            yield (index, frame, "ok") if ok else (index, None, "corrupt")
        last, pending = index, 0
    for lost in range(last + 1, info.frame_count):
        yield lost, None, "missing"


def _stamp_index(cap: cv2.VideoCapture, fps: float) -> int | None:
    if fps <= 0:
        return None
    ms = cap.get(cv2.CAP_PROP_POS_MSEC)
    return int(round(ms * fps / 1000.0)) if np.isfinite(ms) and ms >= 0 else None


@dataclass
class _Batch:
    start: int  # frame index of row 0
    tensor: np.ndarray  # a pool buffer (B, H, W, 3)
    valid: np.ndarray  # (B,) bool: the row holds a decoded frame
    count: int = 0


@dataclass
class DecodeStats:
    frames_read: int = 0
    corrupt: list[int] = field(default_factory=list)
    n_corrupt: int = 0
    missing: int = 0


_END = object()


class _Decoder(threading.Thread):
    """Decode + prepare batches ahead of inference into a bounded pool of reused tensors."""

    def __init__(self, cap: cv2.VideoCapture, info: VideoInfo, model: PoseModel, batch_size: int,
                 start: int, buffers: int = 3) -> None:
        super().__init__(name=f"posezoo-decode-{info.path.name}", daemon=True)
        self.cap, self.info, self.model, self.batch_size, self.first = cap, info, model, batch_size, start
        self.plan = model.plan_for(info.height, info.width)
        self.free: queue.Queue[np.ndarray] = queue.Queue()
        for _ in range(buffers):
            self.free.put(np.empty((batch_size, *self.plan.tensor, 3), np.uint8))
        self.full: queue.Queue[Any] = queue.Queue(maxsize=buffers)
        self.stop_event = threading.Event()
        self.stats = DecodeStats()

    def run(self) -> None:
        try:
            self._run()
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)

    def _run(self) -> None:
        batch: _Batch | None = None
        shape = (self.info.height, self.info.width)
        stats = self.stats
        for index, frame, kind in indexed_frames(self.cap, self.info, self.first):
            if self.stop_event.is_set():
                return
            if index < self.first:
                continue
            if batch is None:
                tensor = self._take()
                if tensor is None:
                    return
                batch = _Batch(index, tensor, np.zeros(self.batch_size, bool))
            row = batch.count
            if frame is not None and frame.shape[:2] == shape:
                self.model.prepare_batch((frame,), self.plan, "bgr", out=batch.tensor[row:row + 1])
                batch.valid[row] = True
                stats.frames_read += 1
            elif kind == "missing":
                stats.missing += 1
            else:
                stats.n_corrupt += 1
                if len(stats.corrupt) < _LIST_LIMIT:
                    stats.corrupt.append(index)
            batch.count += 1
            if batch.count == self.batch_size:
                self._put(batch)
                batch = None
        if batch is not None:
            self._put(batch)

    def _take(self) -> np.ndarray | None:
        while not self.stop_event.is_set():
            with contextlib.suppress(queue.Empty):
                return self.free.get(timeout=0.1)
        return None

    def _put(self, item: Any) -> None:
        while not self.stop_event.is_set():
            with contextlib.suppress(queue.Full):
                self.full.put(item, timeout=0.1)
                return

    def batches(self) -> Iterator[_Batch]:
        while True:
            item = self.full.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def release(self, tensor: np.ndarray) -> None:
        self.free.put(tensor)

    def close(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)


# -- analysis -------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What happened to one video in ``analyze_videos``."""

    video: Path
    status: str  # "done", "skipped" or "failed"
    path: Path | None = None
    error: str | None = None
    meta: dict[str, Any] | None = None


def analyze_video(model: PoseModel | str | os.PathLike[str], video: str | os.PathLike[str],
                  output_dir: str | os.PathLike[str] | None = None, *, batch_size: int = 8, csv: bool = False,
                  nwb: bool = False, overwrite: bool = False, resume: bool = True, device: str = "auto",
                  threads: int | None = None, progress: bool = True, static: bool = True) -> Path:
    """Analyse one video; returns the DeepLabCut-layout ``.h5`` (existing one kept unless ``overwrite``).

    ``model``: a loaded PoseModel, an .onnx path or ``zoo:NAME`` (then ``device``/``threads`` apply).
    ``csv`` adds the ``.csv`` table, ``nwb`` an NWB file (needs ``posezoo[nwb]``). An interrupted
    run leaves ``<name>.h5.partial``, which the next call continues unless ``resume=False``.
    ``static`` runs the video's one frame size through a session fixed to it (``runtime/static.py``).
    """
    if not isinstance(model, PoseModel):
        model = PoseModel.load(model, device=device, threads=threads)
    return _analyze(model, Path(video), output_dir, batch_size, csv, nwb, overwrite, resume, progress,
                    static).path  # type: ignore[return-value]


def analyze_videos(model: PoseModel | str | os.PathLike[str], videos: Sequence[str | os.PathLike[str]],
                   output_dir: str | os.PathLike[str] | None = None, *, batch_size: int = 8, csv: bool = False,
                   nwb: bool = False, overwrite: bool = False, resume: bool = True, device: str = "auto",
                   threads: int | None = None, progress: bool = True, static: bool = True) -> list[Outcome]:
    """Analyse several videos with one model; a video that fails is reported, the others still run."""
    if not isinstance(model, PoseModel):
        model = PoseModel.load(model, device=device, threads=threads)
    outcomes = []
    for video in videos:
        try:
            outcomes.append(_analyze(model, Path(video), output_dir, batch_size, csv, nwb, overwrite, resume,
                                     progress, static))
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            outcomes.append(Outcome(Path(video), "failed", error=str(exc)))
    return outcomes


def _analyze(model: PoseModel, video: Path, output_dir: str | os.PathLike[str] | None, batch_size: int,
             csv: bool, nwb: bool, overwrite: bool, resume: bool, progress: bool, static: bool) -> Outcome:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    scorer = scorer_name(model.name)
    h5 = result_path(video, scorer, output_dir)
    if h5.exists() and not overwrite:
        _complete_outputs(h5, video, model, csv, nwb)
        return Outcome(video, "skipped", h5)
    if nwb:
        from .nwb import require_nwb

        require_nwb()  # fail before hours of work, not after
    cap, info = open_video(video)
    try:
        sha = _model_sha256(model)
        state_path = h5.with_name(h5.name + ".partial.json")
        state = {"model_sha256": sha, "video": str(video.resolve()), "video_bytes": video.stat().st_size,
                 "video_mtime_ns": video.stat().st_mtime_ns, "declared_frames": info.frame_count}
        writer, prior = _open_writer(h5, state_path, state, model, scorer, csv, info.frame_count,
                                     resume and not overwrite)
        sized = info.height > 0 and info.width > 0
        fixed = model.static_session(batch_size, info.height, info.width) if static and sized else None
        with writer:  # an exception keeps the flushed .partial for the next run to resume
            stats, seconds = _run(model, cap, info, writer, batch_size, progress, fixed)
            if stats.frames_read + prior.decoded == 0:
                writer.abort()
                state_path.unlink(missing_ok=True)
                raise VideoError(f"{video}: no frame could be decoded (the file is damaged or its codec is "
                                 "not supported by this OpenCV build)")
        state_path.unlink(missing_ok=True)
    finally:
        cap.release()
    corrupt = prior.lost + stats.corrupt
    n_corrupt = len(prior.lost) + stats.n_corrupt
    new_frames = writer.frames_written - prior.frames
    meta = {
        "posezoo_version": _version(),
        "scorer": scorer,
        "model": {"name": model.name, "path": str(model.path), "sha256": sha,
                  "spec_schema_version": model.spec.schema_version, "keypoints": model.keypoints},
        "video": {"path": str(video.resolve()), "fps": info.fps, "frame_count": info.frame_count,
                  "width": info.width, "height": info.height, "codec": info.codec},
        "frames_written": writer.frames_written,
        "frames_read": stats.frames_read + prior.decoded,
        "corrupt_frames": n_corrupt,
        "corrupt_frame_indices": corrupt[:_LIST_LIMIT],
        "missing_frames": stats.missing,
        "resumed_from_frame": prior.frames,
        "timing": {"seconds": round(seconds, 3),
                   "frames_per_second": round(new_frames / seconds, 2) if seconds > 0 else None,
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "device": model.device,
        "batch_size": batch_size,
        "session": {**dataclasses.asdict(model.settings), "static": fixed is not None},
        "outputs": [h5.name] + ([h5.with_suffix(".csv").name] if csv else [])
                   + ([h5.with_suffix(".nwb").name] if nwb else []),
    }
    if nwb:
        from .nwb import results_to_nwb

        results_to_nwb(h5, h5.with_suffix(".nwb"), fps=info.fps, skeleton=model.spec.skeleton, video=video,
                       width=info.width, height=info.height)
    with atomic_output(meta_path(h5)) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    if n_corrupt or stats.missing:
        detail = []
        if n_corrupt:
            shown = ", ".join(map(str, corrupt[:10])) + (", ..." if n_corrupt > 10 else "")
            detail.append(f"{n_corrupt} corrupt frame(s) ({shown})")
        if stats.missing:
            detail.append(f"{stats.missing} missing frame(s) at the end (the file ends before its declared "
                          f"{info.frame_count} frames)")
        warnings.warn(f"{video}: {' and '.join(detail)}; their rows in {h5.name} are NaN",
                      FrameLossWarning, stacklevel=3)
    return Outcome(video, "done", h5, meta=meta)


def _complete_outputs(h5: Path, video: Path, model: PoseModel, csv: bool, nwb: bool) -> None:
    """Existing results: add a requested .csv / .nwb that an earlier run did not write."""
    if csv and not h5.with_suffix(".csv").exists():
        from .results import read_results

        with atomic_output(h5.with_suffix(".csv")) as tmp:
            read_results(h5).df.to_csv(tmp)
    if nwb and not h5.with_suffix(".nwb").exists():
        from .nwb import results_to_nwb

        cap, info = open_video(video)
        cap.release()
        results_to_nwb(h5, h5.with_suffix(".nwb"), fps=info.fps, skeleton=model.spec.skeleton, video=video,
                       width=info.width, height=info.height)


@dataclass
class _Prior:
    """What an interrupted run left in the partial table."""

    frames: int = 0  # rows already written
    lost: list[int] = field(default_factory=list)  # their all-NaN rows (frames that failed to decode)

    @property
    def decoded(self) -> int:
        return self.frames - len(self.lost)


def _open_writer(h5: Path, state_path: Path, state: dict[str, Any], model: PoseModel, scorer: str, csv: bool,
                 expected: int, resume: bool) -> tuple[ResultsWriter, _Prior]:
    """A fresh writer, or one that continues a partial left by the same model on the same video."""
    partial = h5.with_name(h5.name + ".partial")
    kwargs: dict[str, Any] = {"csv": csv, "keep_partial": True, "expected_frames": expected or None}
    if resume and partial.exists():
        try:
            previous = json.loads(state_path.read_text())
        except (OSError, ValueError):
            previous = None
        if previous == state:
            lost = _nan_rows(partial)
            writer = ResultsWriter.resume(h5, model.keypoints, scorer, **kwargs)
            done = writer.frames_written
            return writer, _Prior(done, [i for i in lost if i < done])
        warnings.warn(f"{partial}: left by an analysis with another model or another version of the video "
                      "(or without its state file); starting over", stacklevel=4)
    writer = ResultsWriter(h5, model.keypoints, scorer, **kwargs)
    with atomic_output(state_path) as tmp:
        tmp.write_text(json.dumps(state))
    return writer, _Prior()


def _nan_rows(partial: Path) -> list[int]:
    """Frame indices whose row is all NaN in a partial table (frames lost before an interruption)."""
    import pandas as pd

    lost: list[int] = []
    try:
        with pd.HDFStore(partial, mode="r") as store:
            n = int(store.get_storer("df_with_missing").nrows)
            for begin in range(0, n, 100_000):
                part = store.select("df_with_missing", start=begin, stop=begin + 100_000)
                lost.extend(int(i) for i in part.index[part.isna().all(axis=1).to_numpy()])
    except (OSError, KeyError, ValueError, AttributeError):
        return []  # unreadable: ResultsWriter.resume decides what to do with it
    return lost


def _run(model: PoseModel, cap: cv2.VideoCapture, info: VideoInfo, writer: ResultsWriter, batch_size: int,
         progress: bool, fixed: StaticSession | None) -> tuple[DecodeStats, float]:
    from tqdm import tqdm

    start = writer.frames_written
    decoder = _Decoder(cap, info, model, batch_size, start)
    k = len(model.keypoints)
    pending: list[np.ndarray] = []
    n_pending, last_flush = 0, time.monotonic()
    began = time.perf_counter()
    bar = tqdm(total=info.frame_count or None, initial=min(start, info.frame_count or start), unit="frame",
               desc=info.path.name, disable=not progress, mininterval=0.5, dynamic_ncols=True)
    decoder.start()
    try:
        for batch in decoder.batches():
            rows = np.full((batch.count, k, 3), np.nan, np.float32)
            valid = batch.valid[:batch.count]
            if fixed is not None:  # always the whole pooled buffer: rows past `count` are stale, dropped
                out = decoder.plan.to_frame(fixed.run(batch.tensor)[:batch.count])
                rows[valid] = out[valid]
            elif valid.all():
                rows[:] = decoder.plan.to_frame(model.run_tensor(batch.tensor[:batch.count]))
            elif valid.any():
                rows[valid] = decoder.plan.to_frame(model.run_tensor(batch.tensor[:batch.count][valid]))
            decoder.release(batch.tensor)
            pending.append(rows)
            n_pending += batch.count
            if n_pending >= FLUSH_FRAMES or time.monotonic() - last_flush > FLUSH_SECONDS:
                # `pending` is emptied before the write: a Ctrl-C that lands after it must not make
                # the handler below append the same rows a second time
                chunk, pending, n_pending, last_flush = np.concatenate(pending), [], 0, time.monotonic()
                writer.append(chunk)
            bar.update(batch.count)
        if pending:
            chunk, pending = np.concatenate(pending), []
            writer.append(chunk)
    except KeyboardInterrupt:
        if pending:  # keep what is done for the resume (best effort: the writer may be the problem)
            with contextlib.suppress(Exception):
                writer.append(np.concatenate(pending))
        raise
    finally:
        decoder.close()
        bar.close()
    return decoder.stats, time.perf_counter() - began


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _model_sha256(model: PoseModel) -> str:
    stat = Path(model.path).stat()
    key = (str(model.path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(model.path)
    return _SHA_CACHE[key]


def _version() -> str:
    from .cli import version

    return version()


def load_meta(h5: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of a results table written by ``analyze_video``."""
    path = meta_path(h5)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no analysis sidecar beside {Path(h5).name}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


__all__ = ["FrameLossWarning", "Outcome", "VideoError", "VideoInfo", "analyze_video", "analyze_videos",
           "expand_videos", "indexed_frames", "load_meta", "meta_path", "open_video",
           "result_path", "scorer_name"]
