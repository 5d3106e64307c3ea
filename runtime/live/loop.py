"""The live loop: capture thread -> one-frame mailbox -> inference thread -> results, view, record.

Three threads, so that no step waits on another that it does not need:

- **capture** reads the source at its own pace, stamps each frame (``time.perf_counter``, and
  unix time for the table), hands it to the recorder and puts it in the mailbox;
- the **mailbox** holds one frame: a frame that arrives while the previous one is still
  waiting replaces it, and the replaced one is counted as dropped (latest frame wins; frames
  are never queued, so latency cannot build up behind a slow step);
- **inference** takes the newest frame, runs `LivePipeline` (model, crop, processors) and
  passes the result on;
- the **main thread** writes results (every second, while the model waits for the next frame),
  shows the view, prints progress, and takes Ctrl-C: a stop at any moment leaves complete files.
"""
from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..model import PoseModel
from ..poses import Poses
from ..version import version
from ..video import meta_path, scorer_name
from .crop import DynamicCrop
from .display import OpenCVWindow, Viewer, display_problem, draw_overlay
from .pipeline import LivePipeline, LiveResult
from .processors import Processor
from .recorder import VideoRecorder
from .results import FrameRow, LiveResults, timestamps_path
from .sources import CallableSource, CameraSource, FrameSource, FramesSource, VideoSource

#: Results go to disk at least this often (seconds); what a kill -9 can lose.
FLUSH_SECONDS = 1.0
DISPLAY_FPS = 30.0
Report = Callable[[str], None]


class LiveError(RuntimeError):
    """The session could not run or stopped on a failure (the results so far are still saved)."""


@dataclass
class Capture:
    """A captured frame (``frame`` is None once it has been dropped)."""

    index: int
    clock: float  # time.perf_counter at capture
    time: float  # unix time at capture
    recorded: bool
    frame: np.ndarray | None = None


class LatestFrame:
    """A one-frame mailbox: ``put`` replaces an untaken frame (counted as dropped); ``take``
    waits for a frame and returns it with the records of the frames it replaced."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Capture | None = None
        self._dropped: list[Capture] = []
        self._closed = False
        self.dropped = 0

    def put(self, item: Capture) -> None:
        with self._cond:
            if self._item is not None:
                self._item.frame = None  # let the pixels go now
                self._dropped.append(self._item)
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self) -> tuple[Capture | None, list[Capture]]:
        """(newest frame, frames dropped before it); (None, [...]) once closed and empty."""
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait()
            item, self._item = self._item, None
            dropped, self._dropped = self._dropped, []
            return item, dropped

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass
class LiveReport:
    """How a session went; ``complete`` is False when the source ended before it should have
    or a processor failed (the files are complete either way)."""

    results: Path
    timestamps: Path
    meta: Path
    recording: Path | None
    captured: int
    analysed: int
    dropped: int
    not_recorded: int
    seconds: float
    latency_ms: dict[str, float]
    stop_reason: str
    message: str
    complete: bool
    processor_errors: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lat = self.latency_ms
        lines = [f"{self.message}",
                 f"frames: {self.captured} captured, {self.analysed} analysed, {self.dropped} dropped"
                 + (f", {self.not_recorded} not recorded" if self.not_recorded else "")
                 + f" in {self.seconds:.1f} s"]
        if lat:
            lines.append(f"capture-to-poses latency: p50 {lat['p50']:.2f} ms, p95 {lat['p95']:.2f} ms, "
                         f"p99 {lat['p99']:.2f} ms, max {lat['max']:.2f} ms")
        for name, count in self.processor_errors.items():
            lines.append(f"processor {name} raised on {count} frame(s)")
        lines.append(f"results: {self.results} (+ {self.timestamps.name}, {self.meta.name})")
        if self.recording is not None:
            lines.append(f"recording: {self.recording}")
        return "\n".join(lines)


def open_source(source: FrameSource | int | str | os.PathLike[str] | Callable[[], Any], *,
                fps: float | None = None) -> FrameSource:
    """A `FrameSource` from a camera index, a video path, a callable, or a source as it is."""
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        return CameraSource(int(source), fps=fps)
    if isinstance(source, (str, os.PathLike)):
        return VideoSource(source, fps=fps)
    if callable(source):
        return CallableSource(source, fps=fps)
    raise TypeError(f"a live source is a camera index, a video path, a callable or a FrameSource, "
                    f"got {type(source).__name__}")


def default_results_path(source: FrameSource, model_name: str, *, output_dir: str | os.PathLike[str] | None = None,
                         record: str | os.PathLike[str] | None = None) -> Path:
    """``<stem>DLC_posezoo_<model>.h5``: beside the recording, named after it (so tools that
    pair ``<video>DLC*.h5`` with a video find it), else ``<source>-<date-time>`` in ``output_dir``
    (default: the current folder). A session never overwrites earlier results."""
    scorer = scorer_name(model_name)
    if record is not None:
        rec = Path(record)
        return rec.with_name(f"{rec.stem}{scorer}.h5")
    stem = Path(source.name).stem if isinstance(source, VideoSource) else source.name.replace(" ", "")
    folder = Path(output_dir) if output_dir is not None else Path.cwd()
    return folder / f"{stem}-live-{time.strftime('%Y%m%d-%H%M%S')}{scorer}.h5"


def _frame_size(source: FrameSource) -> tuple[int, int] | None:
    """(height, width) of the source's frames when known before the first read."""
    if isinstance(source, VideoSource):
        return source.info.height, source.info.width
    if isinstance(source, CameraSource) and source._pending is not None:
        return source._pending.shape[:2]
    if isinstance(source, FramesSource):
        return source.frames[0].shape[:2]
    return None


def _print(message: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        print(message, file=sys.stderr)


class LiveSession:
    """One live session: build it, ``run()`` it (blocking; Ctrl-C stops it cleanly), or call
    ``stop()`` from another thread or a processor."""

    def __init__(self, model: PoseModel, source: FrameSource, output: str | os.PathLike[str], *,
                 crop: DynamicCrop | None = None, processors: Sequence[Processor] = (),
                 display: bool | Viewer = False, record: str | os.PathLike[str] | None = None,
                 duration: float | None = None, frames: int | None = None, csv: bool = False,
                 overwrite: bool = False, progress: bool = True, warmup: bool = True,
                 report: Report | None = None) -> None:
        self.model, self.source = model, source
        self.output = Path(output)
        self.report = report or _print
        if duration is not None and duration <= 0:
            raise ValueError(f"duration must be > 0 seconds, got {duration}")
        if frames is not None and frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.duration, self.max_frames = duration, frames
        self.progress, self.do_warmup = progress, warmup
        for path in [self.output, *([Path(record)] if record is not None else [])]:
            if path.exists() and not overwrite:
                raise FileExistsError(f"{path} exists; a live session never overwrites earlier results: choose "
                                      "another name (or pass overwrite=True / --overwrite)")
        self.pipeline = LivePipeline(model, crop=crop, processors=processors, color=source.color,
                                     on_error=self._processor_error)
        self.viewer: Viewer | None = None
        if display is True:
            problem = display_problem()
            if problem is None:
                self.viewer = OpenCVWindow(f"posezoo live: {model.name} on {source.name}")
            else:
                self.report(f"--display: {problem}; running headless (results are still written"
                            + ("" if record is None else ", and recorded") + ")")
        elif display is not False and display is not None:
            self.viewer = display
        self.record_path = None if record is None else Path(record)
        self.recorder: VideoRecorder | None = None
        self.csv = csv
        self.mailbox = LatestFrame()
        self.results: queue.Queue[Any] = queue.Queue()
        self.stop_event = threading.Event()  # capture stops
        self.stop_now = threading.Event()  # and the frame waiting is not analysed
        self.stop_reason: str | None = None
        self.limit_reached: str | None = None
        self.captured = 0
        self.capture_error: BaseException | None = None
        self.inference_error: BaseException | None = None
        self._epoch = (time.time(), time.perf_counter())

    # -- control --------------------------------------------------------------------------------
    def stop(self, reason: str = "stopped") -> None:
        """Stop now (thread-safe): capture ends, the waiting frame is not analysed."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop_now.set()
        self.stop_event.set()

    def _processor_error(self, name: str, exc: BaseException, count: int) -> None:
        if count == 1:
            import traceback

            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
            self.report(f"processor {name} raised an error; the capture goes on, and further errors from it are "
                        f"only counted:\n{tb}")

    # -- threads --------------------------------------------------------------------------------
    def _capture(self) -> None:
        index = 0
        try:
            began = time.perf_counter()
            while not self.stop_event.is_set():
                if self.max_frames is not None and index >= self.max_frames:
                    self.limit_reached = f"{self.max_frames} frames"
                    break
                if self.duration is not None and time.perf_counter() - began >= self.duration:
                    self.limit_reached = f"{self.duration:g} s"
                    break
                frame = self.source.read()
                clock = time.perf_counter()
                if frame is None:
                    break
                if self.record_path is not None and self.recorder is None:
                    self.recorder = VideoRecorder(self.record_path, self.source.fps, (frame.shape[1], frame.shape[0]))
                recorded = self.recorder.put(frame) if self.recorder is not None else False
                stamp = self._epoch[0] + (clock - self._epoch[1])  # one clock for the session: no NTP steps
                self.mailbox.put(Capture(index, clock, stamp, recorded, frame))
                index += 1
        except BaseException as exc:  # reported by the main thread after a clean stop
            self.capture_error = exc
        finally:
            self.captured = index
            self.mailbox.close()

    def _infer(self) -> None:
        try:
            warmed = False
            while True:
                item, dropped = self.mailbox.take()
                if item is None:
                    break
                if self.stop_now.is_set():  # stopping: this frame is not analysed (still gets its row)
                    item.frame = None
                    self.results.put((dropped + [item], None, None))
                    continue
                frame = item.frame
                assert frame is not None
                try:
                    if not warmed and self.do_warmup and self.pipeline._frame_shape != frame.shape[:2]:
                        self.pipeline.warmup(*frame.shape[:2])  # a source whose size was not known up front
                    warmed = True
                    result = self.pipeline(frame, item.index, item.clock, item.time)
                except Exception as exc:  # the model failed: stop, and give every captured frame its row
                    self.inference_error = exc
                    self.stop("error")
                    item.frame = None
                    self.results.put((dropped + [item], None, None))
                    continue
                self.results.put((dropped, item, result))
        except BaseException as exc:
            self.inference_error = exc
            self.stop("error")
        finally:
            self.results.put(None)

    # -- the main thread ------------------------------------------------------------------------
    def run(self) -> LiveReport:
        """Run until the source ends, a limit is reached, ``stop()``, the window is closed or
        Ctrl-C; then close everything and return the report. Raises `LiveError` when the model
        or the source failed (after saving what was done)."""
        from tqdm import tqdm

        model = self.model
        layout = model.layout()
        layout.scorer = scorer_name(model.name)
        size = _frame_size(self.source)
        try:
            if self.do_warmup and size is not None:
                self.pipeline.warmup(*size)
            if self.record_path is not None and size is not None:
                self.recorder = VideoRecorder(self.record_path, self.source.fps, (size[1], size[0]))
            sink = LiveResults(self.output, layout, csv_table=self.csv)
        except BaseException:  # nothing started: release the camera, the recording and the window
            if self.recorder is not None:
                self.recorder._discard()
            self.source.close()
            if self.viewer is not None:
                self.viewer.close()
            raise
        latencies: list[float] = []
        processed: list[float] = []
        recent: deque[tuple[float, float]] = deque(maxlen=240)  # (done clock, latency ms) for the status
        shown = {"latest": None, "at": 0.0}
        edges = [(a, b) for a, b in self.pipeline.model.spec.skeleton if a in model.keypoints and b in model.keypoints]
        skeleton = [(model.keypoints.index(a), model.keypoints.index(b)) for a, b in edges]
        bar = tqdm(total=self.max_frames, unit="frame", desc=f"live {self.source.name}", disable=not self.progress,
                   mininterval=0.5, dynamic_ncols=True, file=sys.stderr)
        started = time.perf_counter()
        capture = threading.Thread(target=self._capture, name="posezoo-live-capture", daemon=True)
        infer = threading.Thread(target=self._infer, name="posezoo-live-infer", daemon=True)
        infer.start()
        capture.start()

        def handle(message: tuple[list[Capture], Capture | None, LiveResult | None]) -> None:
            dropped, item, result = message
            for d in dropped:
                sink.add(FrameRow(d.index, d.time, d.recorded))
            if item is None or result is None:
                return
            lat, proc = result.latency * 1e3, result.processed_latency * 1e3
            latencies.append(lat)
            processed.append(proc)
            recent.append((result.done, lat))
            unique = None if result.poses.unique is None else result.poses.unique[0]
            sink.add(FrameRow(item.index, item.time, item.recorded, result.poses.coords[0], lat, proc, result.crop,
                              ";".join(result.actions), unique))
            shown["latest"] = (item, result)

        def consume() -> None:
            last_flush = last_status = time.perf_counter()
            while True:
                try:
                    message = self.results.get(timeout=0.05)
                except queue.Empty:
                    message = ()
                if message is None:
                    return
                if message:
                    handle(message)
                now = time.perf_counter()
                if self.viewer is not None and shown["latest"] is not None and now - shown["at"] >= 1 / DISPLAY_FPS:
                    self._show(shown["latest"], recent, skeleton)
                    shown["latest"], shown["at"] = None, now
                if now - last_flush >= FLUSH_SECONDS:
                    sink.flush()
                    last_flush = now
                if now - last_status >= 0.5:
                    bar.n = self.mailbox.dropped + len(latencies)
                    bar.set_postfix_str(_status(recent, self.mailbox.dropped), refresh=True)
                    last_status = now

        # The main thread's once-a-second HDF5 append holds the GIL for a few ms; Python lets a
        # waiting thread take it only every switch interval (5 ms by default), which would land on
        # the latency of the frame in flight. 0.5 ms bounds that; restored at the end.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, 0.0005))
        try:
            with _stop_on_signals(self):
                consume()
        except BaseException:  # the consumer itself failed (a full disk, a viewer): stop the threads
            self.stop("error")
            raise
        finally:
            with _stop_on_signals(self):  # a Ctrl-C now only says to wait
                self.stop_event.set()
                infer.join()
                capture.join(timeout=5.0)
                bar.n = self.captured
                bar.close()
                sys.setswitchinterval(interval)
                report = self._finish(sink, layout, latencies, processed, time.perf_counter() - started,
                                      capture.is_alive())
        return report

    def _show(self, latest: tuple[Capture, LiveResult], recent: deque[tuple[float, float]],
              skeleton: list[tuple[int, int]]) -> None:
        item, result = latest
        if item.frame is None or self.viewer is None:
            return
        lines = [_status(recent, self.mailbox.dropped), f"frame {item.index}" + ("  crop" if result.crop else "")]
        image = draw_overlay(item.frame, result.processed.coords[0], skeleton=skeleton,
                             pcutoff=self.model.spec.pcutoff, crop=result.crop, lines=lines)
        if not self.viewer.show(image):
            self.stop("window closed")

    def _finish(self, sink: LiveResults, layout: Poses, latencies: list[float], processed: list[float],
                seconds: float, capture_stuck: bool) -> LiveReport:
        problems = self.pipeline.close()  # triggers switch their lines off first
        recording = None
        if self.recorder is not None:
            recording = self.recorder.close()
        not_recorded = self.recorder.left_out if self.recorder is not None else 0
        if not capture_stuck:
            self.source.close()
        if self.viewer is not None:
            with contextlib.suppress(Exception):
                self.viewer.close()
        error = self.inference_error or self.capture_error
        if sink.rows + len(sink._pending) == 0 and self.captured == 0:
            sink.abort()
            detail = f": {error}" if error is not None else \
                f" ({self.source.end_reason})" if self.source.end_reason else ""
            raise LiveError(f"{self.source.name}: no frame was captured{detail}") from error
        reason, message, complete = self._outcome(error, capture_stuck)
        lat = _percentiles(latencies)
        meta = {
            "posezoo_version": version(),
            "scorer": layout.scorer,
            "model": {"name": self.model.name, "path": str(self.model.path), "keypoints": self.model.keypoints,
                      "device": self.model.device, "threads": self.model.settings.threads,
                      "spin": self.model.settings.spin},
            "source": self.source.describe(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self._epoch[0])),
            "seconds": round(seconds, 3),
            "frames_captured": self.captured,
            "frames_analysed": len(latencies),
            "frames_dropped": self.captured - len(latencies),
            "frames_not_recorded": not_recorded,
            "latency_ms": lat,
            "processed_latency_ms": _percentiles(processed),
            "crop": None if self.pipeline.crop is None else self.pipeline.crop.describe(),
            "processors": [{"name": n, "errors": self.pipeline.error_counts.get(n, 0),
                            "first_error": self.pipeline.first_errors.get(n)} for n in self.pipeline._names],
            "stop_reason": reason,
            "message": message,
            "complete": complete,
            "recording": None if recording is None else str(recording),
            "outputs": [self.output.name, timestamps_path(self.output).name]
                       + ([self.output.with_suffix(".csv").name] if self.csv else []),
        }
        sink.close(meta)
        for problem in problems:
            self.report(problem)
        report = LiveReport(self.output, timestamps_path(self.output), meta_path(self.output), recording,
                            self.captured, len(latencies), self.captured - len(latencies), not_recorded, seconds, lat,
                            reason, message, complete, dict(self.pipeline.error_counts))
        if error is not None:
            raise LiveError(f"{message}; the results of the {self.captured} frame(s) captured are saved in "
                            f"{self.output}") from error
        return report

    def _outcome(self, error: BaseException | None, capture_stuck: bool) -> tuple[str, str, bool]:
        """(stop reason, message, complete) for the report."""
        errors = sum(self.pipeline.error_counts.values())
        if error is not None:
            where = "the model" if error is self.inference_error else f"the source {self.source.name}"
            return "error", f"stopped: {where} failed ({type(error).__name__}: {error})", False
        source = self.source
        if self.stop_reason == "interrupted":
            reason, message = "interrupted", "stopped by Ctrl-C"
        elif self.stop_reason is not None:
            reason, message = self.stop_reason, {"window closed": "stopped from the display window",
                                                 "terminated": "stopped by SIGTERM"}.get(self.stop_reason, "stopped")
        elif self.limit_reached is not None:
            reason, message = "limit", f"stopped after {self.limit_reached} as asked"
        else:
            reason = "source ended"
            message = source.end_reason or f"{source.name} ended"
            wanted = [f"{self.max_frames} frames"] if self.max_frames is not None else []
            wanted += [f"{self.duration:g} s"] if self.duration is not None else []
            if wanted and not source.ended_early:
                message += f", before the requested {' / '.join(wanted)}"
            if wanted or source.ended_early:
                reason = "source ended early"
        if capture_stuck:
            message += f" ({source.name} did not return from read(); it was left open)"
        complete = reason != "source ended early" and not errors
        if errors:
            message += f"; {errors} processor error(s)"
        return reason, message, complete


def _status(recent: deque[tuple[float, float]], dropped: int) -> str:
    if not recent:
        return f"waiting for frames, dropped {dropped}"
    now = recent[-1][0]
    last = [lat for t, lat in recent if now - t <= 1.0]
    fps = (len(last) - 1) / (now - next(t for t, _ in recent if now - t <= 1.0)) if len(last) > 1 else 0.0
    return f"{np.median(last):.1f} ms (max {max(last):.1f})  {fps:.1f} fps  dropped {dropped}"


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3),
            "max": round(float(arr.max()), 3), "mean": round(float(arr.mean()), 3)}


@contextlib.contextmanager
def _stop_on_signals(session: LiveSession) -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM stop the session instead of raising wherever the main thread
    happens to be (in the middle of an HDF5 append, say); a second one says to wait. Signal
    handlers can only be set from the main thread; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        if session.stop_now.is_set():
            session.report("finishing the results files, one moment...")
        else:
            session.stop("interrupted" if signum == signal.SIGINT else "terminated")

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_live(model: PoseModel | str | os.PathLike[str],
             source: FrameSource | int | str | os.PathLike[str] | Callable[[], Any],
             output: str | os.PathLike[str] | None = None, *, output_dir: str | os.PathLike[str] | None = None,
             crop: DynamicCrop | bool | None = None, processors: Sequence[Processor] = (),
             display: bool | Viewer = False, record: str | os.PathLike[str] | None = None,
             duration: float | None = None, frames: int | None = None, fps: float | None = None, csv: bool = False,
             overwrite: bool = False, progress: bool = True, warmup: bool = True, report: Report | None = None,
             device: str = "auto", threads: int | None = None, spin: bool = False) -> LiveReport:
    """Analyse a live source until it ends, ``duration`` seconds or ``frames`` frames pass, or Ctrl-C.

    ``model``: a `PoseModel`, an .onnx path or ``zoo:NAME`` (then ``device``, ``threads`` and
    ``spin`` apply; threads sleep between frames unless ``spin``, leaving the cores to acquisition). ``source``: a camera index, a video file (a stand-in camera, paced at
    ``fps`` or its own rate), a callable returning frames, or a `FrameSource`. ``crop``: True or
    a `DynamicCrop` for dynamic cropping. ``processors``: callables run on every result (see
    `posezoo.runtime.live.processors`). ``display``: True for a window when the machine has a
    display (else a message, and the session runs headless), or your own viewer. ``record``: a
    video file that receives every captured frame. ``output``: the results .h5 (default: see
    `default_results_path`). Returns a `LiveReport`.
    """
    if not isinstance(model, PoseModel):
        model = PoseModel.load(model, device=device, threads=threads, spin=spin)
    src = open_source(source, fps=fps)
    try:
        path = Path(output) if output is not None else default_results_path(src, model.name, output_dir=output_dir,
                                                                            record=record)
        if crop is True:
            crop = DynamicCrop()
        session = LiveSession(model, src, path, crop=crop or None, processors=processors, display=display,
                              record=record, duration=duration, frames=frames, csv=csv, overwrite=overwrite,
                              progress=progress, warmup=warmup, report=report)
    except BaseException:
        src.close()
        raise
    return session.run()
