"""Frame sources for live analysis: a camera, a video file standing in for one, or your callable.

A source hands out one frame per `read()` call, as a camera does: BGR uint8 (H, W, 3), or None
once it has ended (``end_reason`` then says why, ``ended_early`` whether that was a failure).
Sources that are not cameras are paced to a frame rate, so the live loop meets their frames as a
camera would deliver them: on time, whether or not the model is ready for them.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..decode import open_video


class SourceError(RuntimeError):
    """A source that cannot deliver frames (no camera, an unreadable file, a bad frame)."""


class FrameSource:
    """What the live loop reads. Subclasses implement `_grab`; pacing and checks live here."""

    name: str = "source"
    kind: str = "source"
    color: str = "bgr"

    def __init__(self, fps: float = 0.0, paced: bool = False) -> None:
        self.fps = float(fps or 0.0)  # nominal frames/s (0: unknown)
        self.paced = paced and self.fps > 0
        self.frames_read = 0
        self.end_reason: str | None = None
        self.ended_early = False  # ended by a failure (a camera gone, a truncated file), not by design
        self._next: float | None = None

    def read(self) -> np.ndarray | None:
        """The next frame (blocks until it is due), or None when the source has ended."""
        if self.end_reason is not None:
            return None
        if self.paced:
            self._wait()
        frame = self._grab()
        if frame is None:
            if self.end_reason is None:
                self.end_reason = f"{self.name} ended after {self.frames_read} frames"
            return None
        self.frames_read += 1
        return as_bgr(frame, self.name)

    def _wait(self) -> None:
        # Sleep to the next tick; a late reader is not given a burst of catch-up frames (a camera
        # does not store them either): the schedule restarts from now.
        interval = 1.0 / self.fps
        now = time.perf_counter()
        if self._next is None or now - self._next > interval:
            self._next = now
        elif self._next > now:
            time.sleep(self._next - now)
        self._next += interval

    def _grab(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file."""

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "fps": self.fps, "paced": self.paced}

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def as_bgr(frame: object, where: str) -> np.ndarray:
    """A frame as (H, W, 3) uint8: mono cameras (H, W) / (H, W, 1) and BGRA are converted."""
    if not isinstance(frame, np.ndarray):
        raise SourceError(f"{where}: a frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise SourceError(f"{where}: frames must be uint8 (0..255), got {frame.dtype}; convert them in your "
                          "source (e.g. cv2.convertScaleAbs for 12-bit cameras)")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim != 3 or frame.shape[2] != 3 or not frame.shape[0] or not frame.shape[1]:
        raise SourceError(f"{where}: a frame must be (height, width, 3), got shape {frame.shape}")
    return frame


class CameraSource(FrameSource):
    """An OpenCV camera (``cv2.VideoCapture(index)``); frames come at the camera's own rate.

    The driver's queue is set to one frame where the backend allows it, so a read returns the
    newest image rather than one that waited in a buffer. A camera that stops delivering frames
    for ``timeout`` seconds is treated as disconnected: the source ends, ``ended_early`` is set.
    """

    kind = "camera"

    def __init__(self, index: int = 0, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, timeout: float = 2.0, backend: int = cv2.CAP_ANY) -> None:
        self.index = index
        self.name = f"camera {index}"
        self.timeout = timeout
        cap = cv2.VideoCapture(index, backend)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"camera {index} could not be opened: no camera at that index, or another program "
                              "is using it (try --camera 1, or close the other program)")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        self.cap = cap
        super().__init__(float(cap.get(cv2.CAP_PROP_FPS) or fps or 0.0), paced=False)
        first = self._first_frame()
        self._pending: np.ndarray | None = first
        h, w = first.shape[:2]
        if (width and width != w) or (height and height != h):
            import warnings

            warnings.warn(f"camera {index} delivers {w}x{h} frames, not the {width or w}x{height or h} asked for",
                          stacklevel=2)

    def _first_frame(self) -> np.ndarray:
        deadline = time.monotonic() + max(self.timeout, 5.0)  # some cameras take a while to start
        while time.monotonic() < deadline:
            ok, frame = self.cap.read()
            if ok and frame is not None:
                return frame
            time.sleep(0.01)
        self.cap.release()
        raise SourceError(f"camera {self.index} opened but delivered no frame within {max(self.timeout, 5.0):.0f} s")

    def _grab(self) -> np.ndarray | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        deadline = time.monotonic() + self.timeout
        while True:
            ok, frame = self.cap.read()
            if ok and frame is not None:
                return frame
            if time.monotonic() > deadline:
                self.end_reason = (f"camera {self.index} delivered no frame for {self.timeout:g} s after "
                                   f"{self.frames_read} frames (disconnected?)")
                self.ended_early = True
                return None
            time.sleep(0.002)

    def close(self) -> None:
        self.cap.release()

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "index": self.index}


class VideoSource(FrameSource):
    """A video file standing in for a camera: frames are handed out at ``fps`` (default the
    file's own rate), in real time, so the live loop sees what it would see from a camera.

    The source ends when the file does; ``ended_early`` is set when that happens before the
    file's declared frame count (a truncated recording, like a camera unplugged mid-session).
    """

    kind = "video"

    def __init__(self, path: str | os.PathLike[str], *, fps: float | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.cap, self.info = open_video(self.path)
        rate = fps if fps else (self.info.fps if self.info.fps > 0 else 30.0)
        super().__init__(rate, paced=True)

    def _grab(self) -> np.ndarray | None:
        ok, frame = self.cap.read()
        if ok and frame is not None:
            return frame
        declared = self.info.frame_count
        if declared and self.frames_read < declared:
            self.end_reason = (f"{self.path} ended early: {self.frames_read} of its {declared} declared frames "
                               "could be read (truncated or damaged file)")
            self.ended_early = True
        else:
            self.end_reason = f"{self.path} ended after {self.frames_read} frames"
        return None

    def close(self) -> None:
        self.cap.release()

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "path": str(self.path.resolve()), "declared_frames": self.info.frame_count,
                "width": self.info.width, "height": self.info.height}


class CallableSource(FrameSource):
    """Your own camera code: ``read()`` returns a frame (or None when done) on each call.

    With ``fps`` the calls are paced to that rate (for a function that returns at once); without
    it, ``read`` is expected to block until the next frame is there, as camera SDKs do.
    ``color`` is the channel order of the frames it returns ("bgr" or "rgb").
    """

    kind = "callable"

    def __init__(self, read: Callable[[], np.ndarray | None], *, fps: float | None = None, name: str | None = None,
                 color: str = "bgr") -> None:
        if not callable(read):
            raise TypeError(f"CallableSource needs a callable, got {type(read).__name__}")
        self._read = read
        self.name = name or getattr(read, "__name__", "callable")
        if color.lower() not in ("bgr", "rgb"):
            raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
        self.color = color.lower()
        super().__init__(fps or 0.0, paced=bool(fps))

    def _grab(self) -> np.ndarray | None:
        return self._read()

    def close(self) -> None:
        close = getattr(self._read, "close", None)
        if callable(close):
            close()


class FramesSource(FrameSource):
    """Frames held in memory replayed at ``fps`` (``repeat`` times over): paced input for
    benchmarks and tests, with no decoding cost in the way."""

    kind = "frames"

    def __init__(self, frames: Sequence[np.ndarray], fps: float, *, repeat: int = 1, name: str = "frames",
                 color: str = "bgr") -> None:
        if not len(frames):
            raise ValueError("FramesSource needs at least one frame")
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.frames = frames
        self.repeat = repeat
        self.name = name
        self.color = color
        super().__init__(fps, paced=True)

    def _grab(self) -> np.ndarray | None:
        i = self.frames_read
        if i >= len(self.frames) * self.repeat:
            self.end_reason = f"{self.name}: all {i} frames replayed"
            return None
        return self.frames[i % len(self.frames)]
