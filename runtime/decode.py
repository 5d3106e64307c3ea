"""Reading video: OpenCV capture with honest frame accounting, and a background decoder that
prepares batches for a `PoseModel` while the previous batch runs.

Counting is by reads, like DeepLabCut. A frame that fails to decode (a corrupt packet) or that is
missing because the file ends before its declared frame count is still yielded (as None), so row
i of any result is always frame i. Frames are reached by sequential decoding, never by seeking
(OpenCV's seek is inexact on compressed video).
"""
from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .model import Batch, PoseModel

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".m4v", ".wmv", ".webm", ".h264")
#: Give up on a stream after this many failed reads in a row (the rest counts as missing).
MAX_CONSECUTIVE_FAILURES = 1000
_LIST_LIMIT = 1000  # at most this many corrupt-frame indices are kept


class VideoError(RuntimeError):
    """A video that cannot be analysed (cannot be opened, no decodable frame); names the file."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float
    frame_count: int  # as the container declares it (0 when unknown)
    width: int
    height: int
    codec: str


def expand_videos(items: list[str | os.PathLike[str]] | tuple[str | os.PathLike[str], ...]) -> list[Path]:
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
    file ended before its declared frame count). Frames before ``start`` are decoded but not
    converted (resume). Only after failed reads do the timestamps say how many frames were lost,
    so variable-frame-rate files keep their count. ``frame`` is an optional reused output buffer.
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
class DecodedBatch:
    """A prepared batch of consecutive video frames; ``valid[i]`` is False where frame
    ``start + i`` could not be decoded (its input row holds nothing meaningful)."""

    start: int
    batch: Batch
    valid: np.ndarray


@dataclass
class DecodeStats:
    frames_read: int = 0
    corrupt: list[int] = field(default_factory=list)
    n_corrupt: int = 0
    missing: int = 0


_END = object()


class Decoder(threading.Thread):
    """Decode + prepare batches ahead of inference into a bounded pool of reused tensors.

    Iterate ``batches()`` in the consumer and hand each tensor back with ``release`` when its
    batch has run; ``close`` stops the thread. Frames ``[start, stop)`` are prepared (``stop``
    None: to the end); earlier ones are decoded and dropped, since seeking is inexact.
    """

    def __init__(self, cap: cv2.VideoCapture, info: VideoInfo, model: PoseModel, batch_size: int, *,
                 start: int = 0, stop: int | None = None, buffers: int = 3) -> None:
        super().__init__(name=f"posezoo-decode-{info.path.name}", daemon=True)
        self.cap, self.info, self.model, self.batch_size, self.first = cap, info, model, batch_size, start
        self.stop = stop
        tensor = model.plan_for(info.height, info.width).tensor
        self.free: queue.Queue[np.ndarray] = queue.Queue()
        for _ in range(buffers):
            self.free.put(np.empty((batch_size, *tensor, 3), np.uint8))
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
        tensor: np.ndarray | None = None
        start, count = 0, 0
        valid = np.zeros(self.batch_size, bool)
        shape = (self.info.height, self.info.width)
        stats = self.stats
        for index, frame, kind in indexed_frames(self.cap, self.info, self.first):
            if self.stop_event.is_set():
                return
            if index < self.first:
                continue
            if self.stop is not None and index >= self.stop:
                break
            if tensor is None:
                tensor = self._take()
                if tensor is None:
                    return
                start, count, valid = index, 0, np.zeros(self.batch_size, bool)
            if frame is not None and frame.shape[:2] == shape:
                self.model.prepare((frame,), "bgr", out=tensor[count:count + 1])
                valid[count] = True
                stats.frames_read += 1
            elif kind == "missing":
                stats.missing += 1
            else:
                stats.n_corrupt += 1
                if len(stats.corrupt) < _LIST_LIMIT:
                    stats.corrupt.append(index)
            count += 1
            if count == self.batch_size:
                self._put(self._batch(start, tensor, count, valid))
                tensor = None
        if tensor is not None:
            self._put(self._batch(start, tensor, count, valid))

    def _batch(self, start: int, tensor: np.ndarray, count: int, valid: np.ndarray) -> DecodedBatch:
        plan = self.model.plan_for(self.info.height, self.info.width)
        return DecodedBatch(start, Batch(tensor, plan, count, pooled=True), valid[:count].copy())

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

    def batches(self) -> Iterator[DecodedBatch]:
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
