"""``--record``: every captured frame to a video file, encoded in its own thread.

The capture thread only hands frames over; encoding (several ms a frame) happens here so it
never delays a capture timestamp or the model. If the encoder falls behind by more than
``backlog`` frames, frames are left out of the recording and counted (the timestamps table marks
them), rather than stalling the camera. The file is written under a temporary name and renamed
when the session ends.
"""
from __future__ import annotations

import contextlib
import os
import queue
import threading
from pathlib import Path

import cv2
import numpy as np

from ..files import atomic_output

CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".mov": "mp4v"}
_END = None


class VideoRecorder:
    """Write frames of one size to ``path`` at ``fps`` (the codec follows the extension)."""

    def __init__(self, path: str | os.PathLike[str], fps: float, size: tuple[int, int], *, codec: str | None = None,
                 backlog: int = 120) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        codec = codec or CODECS.get(suffix)
        if codec is None:
            raise ValueError(f"{self.path}: record to .mp4, .avi, .mkv or .mov (or give a codec)")
        self.size = size  # (width, height)
        self.fps = fps if fps > 0 else 30.0
        self._output = atomic_output(self.path, suffix=suffix)
        self._tmp = self._output.__enter__()
        self.writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*codec), self.fps, size)
        if not self.writer.isOpened():
            self._discard()
            raise RuntimeError(f"{self.path}: OpenCV cannot write {suffix} video with codec {codec!r}; record to .avi "
                               "(MJPG) instead")
        self.written = 0
        self.left_out = 0
        self.error: BaseException | None = None
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=backlog)
        self._thread = threading.Thread(target=self._run, name="posezoo-live-record", daemon=True)
        self._thread.start()

    def put(self, frame: np.ndarray) -> bool:
        """Queue a frame; False when it is left out (a backlog, a frame of another size)."""
        if self.error is not None or frame.shape[1::-1] != self.size:
            self.left_out += 1
            return False
        try:
            self._queue.put_nowait(frame)
        except queue.Full:
            self.left_out += 1
            return False
        return True

    def _run(self) -> None:
        while True:
            frame = self._queue.get()
            if frame is _END:
                return
            if self.error is not None:
                continue
            try:
                self.writer.write(frame)
                self.written += 1
            except cv2.error as exc:  # a full disk, say: stop recording, keep the session going
                self.error = exc

    def close(self) -> Path | None:
        """Write what is queued, then rename the file into place; None if nothing was written."""
        self._queue.put(_END)
        self._thread.join()
        self.writer.release()
        if not self.written:
            self._discard()
            return None
        self._output.__exit__(None, None, None)
        return self.path

    def _discard(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.release()
        with contextlib.suppress(RuntimeError):
            self._output.__exit__(RuntimeError, RuntimeError("discarded"), None)
