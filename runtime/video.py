"""Video analysis: hours of video -> DeepLabCut-layout results, with flat memory and resume.

A frame's road: the background `decode.Decoder` reads it and `PoseModel.prepare`s it into a pooled
input buffer; the main thread runs each batch through `PoseModel.infer` and `postprocess` while the
next one decodes (both release the GIL); the `Poses` go to `io.writer.ResultsWriter`, which streams
them to ``<video stem><scorer>.h5.partial`` and renames it onto ``<video stem><scorer>.h5`` when
the video is complete, so a crash leaves no half-written table and the next run resumes after the
last flushed frame.

Frame accounting: every row of the table is one frame of the video. A frame that fails to decode
or is missing at the end gets a NaN row (row i is always frame i); both are counted in the
``_meta.json`` sidecar and reported, never silently dropped.

Each sidecar records a fingerprint (`fingerprint`): the model's sha256, the options that shape
the numbers, the video's size and modification time and the posezoo version. Existing results
with the same fingerprint are skipped; others are analysed again. A unit of work can also be a
frame range of a video (`analyze_unit`, used by `posezoo.runtime.scale`): it is reached by
sequential decoding and starts on a batch boundary, so its rows equal those of a whole-video run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from .appearance import describe
from .decode import Decoder, DecodeStats, VideoError, VideoInfo, open_video
from .files import sha256_file, write_json_atomic
from .io.appearance import AppearanceWriter, read_appearance_blocks
from .io.dlc import read_dlc, read_dlc_blocks
from .io.writer import ResultsWriter, nan_rows, set_aside_unreadable
from .lock import file_lock
from .model import PoseModel
from .poses import Poses
from .track import TrackerSettings, track
from .version import version

#: Results are appended to the .partial file at least this often (frames / seconds): bounds
#: both the memory held and the work lost to a kill.
FLUSH_FRAMES, FLUSH_SECONDS = 512, 10.0
_LIST_LIMIT = 1000  # at most this many corrupt-frame indices are listed in the sidecar


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


# -- analysis -------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What happened to one video in ``analyze_videos``."""

    video: Path
    status: str  # "done", "skipped" or "failed"
    path: Path | None = None
    error: str | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Options:
    output_dir: Path | None
    batch_size: int
    csv: bool
    nwb: bool
    overwrite: bool
    resume: bool
    progress: bool
    tracking: TrackerSettings | None = TrackerSettings()


def analyze_video(model: PoseModel | str | os.PathLike[str], video: str | os.PathLike[str],
                  output_dir: str | os.PathLike[str] | None = None, *, batch_size: int = 8, csv: bool = False,
                  nwb: bool = False, overwrite: bool = False, resume: bool = True, device: str = "auto",
                  threads: int | None = None, progress: bool = True,
                  tracking: TrackerSettings | None = TrackerSettings()) -> Path:
    """Analyse one video; returns the DeepLabCut-layout ``.h5`` (existing one kept unless ``overwrite``).

    ``model``: a loaded PoseModel, an .onnx path or ``zoo:NAME`` (then ``device``/``threads`` apply).
    ``csv`` adds the ``.csv`` table, ``nwb`` an NWB file (needs ``posezoo[nwb]``). An interrupted
    run leaves ``<name>.h5.partial``, which the next call continues unless ``resume=False``. A
    multi-animal model's animals are tracked (``tracking``; None keeps each frame's animals in the
    order the assembler found them), see `track_results`.
    """
    if not isinstance(model, PoseModel):
        model = PoseModel.load(model, device=device, threads=threads)
    options = _Options(None if output_dir is None else Path(output_dir), batch_size, csv, nwb, overwrite, resume,
                       progress, tracking)
    return _analyze(model, Path(video), options).path  # type: ignore[return-value]


def analyze_videos(model: PoseModel | str | os.PathLike[str], videos: Sequence[str | os.PathLike[str]],
                   output_dir: str | os.PathLike[str] | None = None, *, batch_size: int = 8, csv: bool = False,
                   nwb: bool = False, overwrite: bool = False, resume: bool = True, device: str = "auto",
                   threads: int | None = None, progress: bool = True,
                   tracking: TrackerSettings | None = TrackerSettings()) -> list[Outcome]:
    """Analyse several videos with one model; a video that fails is reported, the others still run."""
    if not isinstance(model, PoseModel):
        model = PoseModel.load(model, device=device, threads=threads)
    options = _Options(None if output_dir is None else Path(output_dir), batch_size, csv, nwb, overwrite, resume,
                       progress, tracking)
    outcomes = []
    for video in videos:
        try:
            outcomes.append(_analyze(model, Path(video), options))
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            outcomes.append(Outcome(Path(video), "failed", error=str(exc)))
    return outcomes


def analyze_unit(model: PoseModel, video: str | os.PathLike[str], *, output: str | os.PathLike[str] | None = None,
                 frames: tuple[int, int | None] = (0, None), output_dir: str | os.PathLike[str] | None = None,
                 batch_size: int = 8, csv: bool = False, nwb: bool = False, overwrite: bool = False,
                 resume: bool = True, progress: bool = True) -> Outcome:
    """One unit of work: the whole video, or its frames ``[start, stop)`` (``stop`` None: to the
    end) into ``output`` (a table whose rows are those frames). ``start`` must be a multiple of
    ``batch_size``, so every batch holds the frames a whole-video run would give it. Another
    process writing the same output raises `lock.LockedError` naming it. A unit holds each
    frame's animals as found: multi-animal tracking runs once a video is whole (`track_results`)."""
    start, stop = int(frames[0]), None if frames[1] is None else int(frames[1])
    if start < 0 or start % batch_size or (stop is not None and stop <= start):
        raise ValueError(f"frames {frames}: a range must start on a multiple of the batch size ({batch_size}) "
                         "and end after it starts")
    options = _Options(None if output_dir is None else Path(output_dir), batch_size, csv, nwb, overwrite, resume,
                       progress, tracking=None)
    return _analyze(model, Path(video), options, h5=None if output is None else Path(output), span=(start, stop))


def fingerprint(model: PoseModel, video: str | os.PathLike[str], *, batch_size: int,
                frames: tuple[int, int | None] | None = None) -> dict[str, Any]:
    """What results depend on: equal fingerprints mean the same numbers, so results are reused.

    The batch size and graph optimisation level are in it because they can change float
    rounding; the device and thread count are not (they say where, not what, was analysed).
    """
    stat = Path(video).stat()
    out: dict[str, Any] = {"posezoo_version": version(), "model_sha256": _model_sha256(model),
                           "video_bytes": stat.st_size, "video_mtime_ns": stat.st_mtime_ns,
                           "options": {"batch_size": batch_size, "optimization": model.settings.optimization,
                                       "body_check": model.body_check}}
    if frames is not None and tuple(frames) != (0, None):
        out["frames"] = [frames[0], frames[1]]
    return out


def recorded_fingerprint(h5: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The fingerprint in a results table's sidecar (None when it has none or cannot be read)."""
    try:
        value = load_meta(h5).get("fingerprint")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def stale_reason(recorded: dict[str, Any] | None, expected: dict[str, Any]) -> str | None:
    """Why results with fingerprint ``recorded`` cannot stand for ``expected`` (None: they can)."""
    if recorded == expected:
        return None
    if recorded is None:
        return "no fingerprint is recorded beside it (no or an older _meta.json)"
    reasons = {"model_sha256": "another model", "options": "other options (batch size or optimisation level)",
               "posezoo_version": f"posezoo {recorded.get('posezoo_version')}", "frames": "another frame range"}
    for key in ("model_sha256", "options", "frames", "posezoo_version"):
        if recorded.get(key) != expected.get(key):
            return f"it was made by {reasons[key]}"
    return "the video changed since (its size or modification time differs)"


def _analyze(model: PoseModel, video: Path, opt: _Options, *, h5: Path | None = None,
             span: tuple[int, int | None] = (0, None)) -> Outcome:
    if opt.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {opt.batch_size}")
    scorer = scorer_name(model.name)
    h5 = h5 or result_path(video, scorer, opt.output_dir)
    if not video.exists():
        raise FileNotFoundError(f"video not found: {video}")
    expected = fingerprint(model, video, batch_size=opt.batch_size, frames=span)
    if opt.tracking is not None and model.spec.multi is not None and span == (0, None):
        return _analyze_and_track(model, video, opt, h5, expected)
    if h5.exists() and not opt.overwrite:
        reason = stale_reason(recorded_fingerprint(h5), expected)
        if reason is None:
            _complete_outputs(h5, video, model, opt)
            return Outcome(video, "skipped", h5)
        warnings.warn(f"{h5}: {reason}; analysing the video again (the old table stays until the new one "
                      "is complete)", stacklevel=3)
    if opt.nwb:
        from .io.nwb import require_nwb

        require_nwb()  # fail before hours of work, not after
    with file_lock(h5.with_name(f".{h5.name}.lock"), f"{h5}", wait=False):
        return _analyze_locked(model, video, h5, scorer, opt, expected, span)


def _analyze_locked(model: PoseModel, video: Path, h5: Path, scorer: str, opt: _Options, fp: dict[str, Any],
                    span: tuple[int, int | None]) -> Outcome:
    cap, info = open_video(video)
    first, stop = span
    try:
        sha = fp["model_sha256"]
        state_path = h5.with_name(h5.name + ".partial.json")
        state = {**fp, "video": str(video.resolve()), "declared_frames": info.frame_count}
        layout = model.layout()
        layout.scorer = scorer
        end = stop if stop is not None else info.frame_count
        writer, prior = _open_writer(h5, state_path, state, layout, csv=opt.csv, expected=max(0, end - first),
                                     resume=opt.resume and not opt.overwrite, first=first)
        # A multi-animal model's animals are tracked afterwards: keep what they look like too
        looks = AppearanceWriter(h5, fp, resume_frames=prior.frames or None) if model.spec.multi else None
        with writer:  # an exception keeps the flushed .partial for the next run to resume
            with looks if looks is not None else contextlib.nullcontext():
                stats, seconds = _run(model, cap, info, writer, opt, span, looks)
            # A later frame range may lie wholly past the end of a short file: NaN rows, as a
            # whole-video run gives them, not an error.
            if stats.frames_read + prior.decoded == 0 and first == 0:
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
    shape = (opt.batch_size, *model.plan_for(info.height, info.width).tensor, 3) if info.height > 0 else None
    meta = {
        "posezoo_version": version(),
        "scorer": scorer,
        "model": {"name": model.name, "path": str(model.path), "sha256": sha,
                  "spec_schema_version": model.spec.schema_version, "keypoints": model.keypoints,
                  "skeleton": [list(edge) for edge in model.spec.skeleton]},
        "video": {"path": str(video.resolve()), "fps": info.fps, "frame_count": info.frame_count,
                  "width": info.width, "height": info.height, "codec": info.codec},
        "fingerprint": fp,
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
        "batch_size": opt.batch_size,
        "session": {**dataclasses.asdict(model.settings), "static": shape in model.static_shapes()},
        "outputs": [h5.name] + ([h5.with_suffix(".csv").name] if opt.csv else [])
                   + ([h5.with_suffix(".nwb").name] if opt.nwb else []),
    }
    if first or stop is not None:
        meta["frames"] = {"start": first, "stop": first + writer.frames_written}
    if opt.nwb:
        _write_nwb(h5, video, info.fps, model, (info.width, info.height))
    write_json_atomic(meta_path(h5), meta)
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


def detections_path(h5: str | os.PathLike[str]) -> Path:
    """Where a multi-animal analysis keeps each frame's animals before tracking names them."""
    h5 = Path(h5)
    return h5.with_name(f"{h5.stem}_detections.h5")


def unique_path(h5: str | os.PathLike[str]) -> Path:
    """Where tracked results keep the unique keypoints: apart, so that the main table is the
    rectangle of individuals x keypoints that movement's loader needs."""
    h5 = Path(h5)
    return h5.with_name(f"{h5.stem}_unique.h5")


def _analyze_and_track(model: PoseModel, video: Path, opt: _Options, final: Path,
                       expected: dict[str, Any]) -> Outcome:
    """A whole multi-animal video: each frame's animals into the detections table (resumable,
    reused while current), then the tracked table named by the model's individuals."""
    assert opt.tracking is not None
    wanted = {**expected, "tracking": opt.tracking.to_dict()}
    if final.exists() and not opt.overwrite and recorded_fingerprint(final) == wanted:
        return Outcome(video, "skipped", final)
    detections = _analyze(model, video, dataclasses.replace(opt, csv=False, nwb=False, tracking=None),
                          h5=detections_path(final))
    if detections.status == "skipped" and not opt.overwrite:
        warnings.warn(f"{detections.path}: current detections reused; tracking them again", stacklevel=3)
    with file_lock(final.with_name(f".{final.name}.lock"), f"{final}", wait=False):
        return track_results(model, detections_path(final), final, settings=opt.tracking, csv=opt.csv, nwb=opt.nwb,
                             video=video)


def track_results(model: PoseModel, detections: Path, final: Path, *, settings: TrackerSettings,
                  csv: bool = False, nwb: bool = False, video: Path | None = None) -> Outcome:
    """Track a complete detections table into ``final``, streaming, and write its sidecar (the
    detections' with the tracker settings added to the fingerprint and the record)."""
    meta = load_meta(detections)
    individuals = list(model.spec.multi.individuals) if model.spec.multi else list(model.spec.individuals)
    identity = bool(model.spec.multi and model.spec.multi.identity)
    began = time.perf_counter()
    layout: Poses | None = None
    main_writer: ResultsWriter | None = None
    unique_writer: ResultsWriter | None = None
    frames = int(meta.get("frames_written", 0))
    try:
        looks = read_appearance_blocks(detections, meta.get("fingerprint") or {}, frames)
        for chunk in track(lambda: read_dlc_blocks(detections), individuals, settings, identity=identity,
                           looks=looks):
            if main_writer is None:
                layout = chunk[:0]
                main = replace(layout, unique=None, unique_keypoints=[],
                               skeleton=[e for e in layout.skeleton if set(e) <= set(layout.keypoints)])
                main_writer = ResultsWriter(final, main, csv=csv, expected_frames=frames or None)
                if layout.unique_keypoints:
                    unique = Poses.empty(0, layout.unique_keypoints, scorer=layout.scorer)
                    unique_writer = ResultsWriter(unique_path(final), unique, csv=csv, expected_frames=frames or None)
            main_writer.append(replace(chunk, unique=None, unique_keypoints=[], skeleton=[]))
            if unique_writer is not None and chunk.unique is not None:
                unique_writer.append(Poses(chunk.unique[:, None], chunk.unique_keypoints, scorer=chunk.scorer))
        if main_writer is None:  # an empty video: an empty table, as for one animal
            main_writer = ResultsWriter(final, model.layout(0), csv=csv)
        for writer in (unique_writer, main_writer):  # the main table last: its presence means done
            if writer is not None:
                writer.close()
    except BaseException:
        for writer in (main_writer, unique_writer):
            if writer is not None:
                writer.abort()
        raise
    seconds = time.perf_counter() - began
    meta["fingerprint"] = {**meta["fingerprint"], "tracking": settings.to_dict()}
    meta["tracking"] = {"settings": settings.to_dict(), "individuals": individuals, "identity_votes": identity,
                        "detections": detections.name, "colours": looks is not None, "seconds": round(seconds, 3),
                        "frames_per_second": round(frames / seconds, 1) if seconds > 0 and frames else None}
    meta["outputs"] = [final.name] + ([final.with_suffix(".csv").name] if csv else []) + (
        [unique_path(final).name] if unique_writer is not None else []) + ([final.with_suffix(".nwb").name] if nwb else [])
    if nwb:
        info = meta.get("video") or {}
        _write_nwb(final, video or Path(info.get("path", "")), float(info.get("fps") or 0), model,
                   (info.get("width"), info.get("height")))
    write_json_atomic(meta_path(final), meta)
    return Outcome(video or Path(meta.get("video", {}).get("path", "")), "done", final, meta=meta)


def _write_nwb(h5: Path, video: Path, fps: float, model: PoseModel, size: tuple[int | None, int | None]) -> None:
    from .io.nwb import write_nwb

    poses = read_dlc(h5)
    poses.skeleton = [(a, b) for a, b in model.spec.skeleton if a in poses.keypoints and b in poses.keypoints]
    write_nwb(poses, h5.with_suffix(".nwb"), fps=fps, video=video, width=size[0], height=size[1])


def _complete_outputs(h5: Path, video: Path, model: PoseModel, opt: _Options) -> None:
    """Existing results: add a requested .csv / .nwb that an earlier run did not write."""
    if opt.csv and not h5.with_suffix(".csv").exists():
        from .io.dlc import write_dlc

        write_dlc(read_dlc(h5), h5.with_suffix(".csv"))
    if opt.nwb and not h5.with_suffix(".nwb").exists():
        cap, info = open_video(video)
        cap.release()
        _write_nwb(h5, video, info.fps, model, (info.width, info.height))


@dataclass
class _Prior:
    """What an interrupted run left in the partial table."""

    frames: int = 0  # rows already written
    lost: list[int] = field(default_factory=list)  # their all-NaN rows (frames that failed to decode)

    @property
    def decoded(self) -> int:
        return self.frames - len(self.lost)


def _open_writer(h5: Path, state_path: Path, state: dict[str, Any], layout: Poses, *, csv: bool, expected: int,
                 resume: bool, first: int = 0) -> tuple[ResultsWriter, _Prior]:
    """A fresh writer, or one that continues a partial left by the same model on the same video."""
    partial = h5.with_name(h5.name + ".partial")
    kwargs: dict[str, Any] = {"csv": csv, "keep_partial": True, "expected_frames": expected or None,
                              "first_frame": first}
    aside = set_aside_unreadable(partial) if resume else None
    if aside is not None:
        warnings.warn(f"{partial}: cannot be resumed (the analysis stopped before its first write); set aside as "
                      f"{aside.name}, starting the video over", stacklevel=4)
    if resume and partial.exists():
        try:
            previous = json.loads(state_path.read_text())
        except (OSError, ValueError):
            previous = None
        if previous == state:
            lost = nan_rows(partial)
            writer = ResultsWriter(h5, layout, resume=True, **kwargs)
            done = writer.frames_written
            return writer, _Prior(done, [i for i in lost if i < first + done])
        warnings.warn(f"{partial}: left by an analysis with another model or another version of the video "
                      "(or without its state file); starting over", stacklevel=4)
    writer = ResultsWriter(h5, layout, **kwargs)
    write_json_atomic(state_path, state)
    return writer, _Prior()


def _run(model: PoseModel, cap: cv2.VideoCapture, info: VideoInfo, writer: ResultsWriter,
         opt: _Options, span: tuple[int, int | None] = (0, None),
         looks: AppearanceWriter | None = None) -> tuple[DecodeStats, float]:
    from tqdm import tqdm

    first, stop = span
    start = first + writer.frames_written
    decoder = Decoder(cap, info, model, opt.batch_size, start=start, stop=stop)
    pending: list[Poses] = []
    pending_looks: list[np.ndarray] = []
    n_pending, last_flush = 0, time.monotonic()
    began = time.perf_counter()
    total = (stop if stop is not None else info.frame_count) - first
    desc = info.path.name if span == (0, None) else f"{info.path.name} [{first}:{'' if stop is None else stop}]"
    bar = tqdm(total=total if total > 0 else None, initial=min(writer.frames_written, max(total, 0)), unit="frame",
               desc=desc, disable=not opt.progress, mininterval=0.5, dynamic_ncols=True)
    decoder.start()
    try:
        for decoded in decoder.batches():
            batch = decoded.batch
            poses = model.postprocess(model.infer(batch), batch)
            poses.coords[~decoded.valid] = np.nan  # rows of frames that did not decode
            if looks is not None:
                pending_looks.append(describe(batch.tensor[:batch.count], batch.plan, poses.coords))
            decoder.release(batch.tensor)
            pending.append(poses)
            n_pending += batch.count
            if n_pending >= FLUSH_FRAMES or time.monotonic() - last_flush > FLUSH_SECONDS:
                # `pending` is emptied before the write: a Ctrl-C that lands after it must not make
                # the handler below append the same rows a second time
                chunk, pending, n_pending, last_flush = Poses.concat(pending), [], 0, time.monotonic()
                _append(writer, chunk, looks, pending_looks)
                pending_looks = []
            bar.update(batch.count)
        if pending:
            chunk, pending = Poses.concat(pending), []
            _append(writer, chunk, looks, pending_looks)
    except KeyboardInterrupt:
        if pending:  # keep what is done for the resume (best effort: the writer may be the problem)
            with contextlib.suppress(Exception):
                _append(writer, Poses.concat(pending), looks, pending_looks)
        raise
    finally:
        decoder.close()
        bar.close()
    return decoder.stats, time.perf_counter() - began


def _append(writer: ResultsWriter, chunk: Poses, looks: AppearanceWriter | None, pending: list[np.ndarray]) -> None:
    """The descriptors first: a kill between the two writes leaves them ahead, which a resume cuts."""
    if looks is not None and pending:
        looks.append(np.concatenate(pending))
    writer.append(chunk)


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _model_sha256(model: PoseModel) -> str:
    stat = Path(model.path).stat()
    key = (str(model.path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(model.path)
    return _SHA_CACHE[key]


def load_meta(h5: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of a results table written by ``analyze_video``."""
    path = meta_path(h5)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no analysis sidecar beside {Path(h5).name}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


__all__ = ["FrameLossWarning", "Outcome", "analyze_unit", "analyze_video", "analyze_videos", "fingerprint",
           "load_meta", "meta_path", "recorded_fingerprint", "result_path", "scorer_name", "stale_reason"]
