"""Live analysis (issue 19): real video files standing in for cameras, the brightest-pixel ONNX
model (keypoint i = the brightest pixel of channel i, so every result is known exactly), real
onnxruntime sessions, real threads and real signals. No timing targets here: those are in
benchmarks/live_latency.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from onnx_models import CHANNELS, make_pose_onnx, make_spec, paint_dots
from posezoo.runtime import PoseModel, load_poses
from posezoo.runtime.live import (AngleTrigger, CallableSource, DynamicCrop, FrameInfo, FramesSource, LatestFrame,
                                  LiveError, LivePipeline, LogOutput, OneEuroFilter, RegionTrigger,
                                  TIMESTAMP_COLUMNS, VideoSource, display_problem, draw_overlay, load_processor,
                                  open_output, run_live)
from posezoo.runtime.live.loop import Capture
from posezoo.runtime.poses import Poses
from posezoo.runtime.spec import PreprocessSpec

REPO = Path(__file__).resolve().parents[1]
POSEZOO = [sys.executable, "-m", "posezoo.runtime.cli"]
SIZE = (120, 160)  # frame height, width


# -- fixtures: a model whose answers are known, and frames/videos of a moving animal ----------------
@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return make_pose_onnx(tmp_path_factory.mktemp("live-model") / "brightest.onnx")


@pytest.fixture(scope="module")
def model(model_path) -> PoseModel:
    return PoseModel.load(model_path, threads=1)


def moving_dots(n: int, size: tuple[int, int] = SIZE, *, blank: tuple[int, ...] = (), jump: int | None = None,
                block: int = 1, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames of an "animal" (three dots within 12 px of its centre) walking slowly across the
    frame; frames in ``blank`` show no animal; at frame ``jump`` it reappears elsewhere."""
    h, w = size
    rng = np.random.default_rng(seed)
    frames, truth = [], np.full((n, 3, 2), np.nan)
    cx, cy = 40.0, 40.0
    offsets = np.array([[-10, -4], [8, 2], [0, 10]])
    for i in range(n):
        if jump is not None and i == jump:
            cx, cy = w - 30.0, h - 30.0
        cx = float(np.clip(cx + rng.uniform(-1, 3), 20, w - 20 - block))
        cy = float(np.clip(cy + rng.uniform(-1, 2), 20, h - 20 - block))
        frame = np.full((h, w, 3), 40, np.uint8)
        if i not in blank:
            pts = {c: (int(cx + dx), int(cy + dy)) for c, (dx, dy) in zip(CHANNELS, offsets)}
            if block > 1:
                pts = {c: (x - x % 2, y - y % 2) for c, (x, y) in pts.items()}
            paint_dots(frame, pts, block=block)
            truth[i] = list(pts.values())
        frames.append(frame)
    return frames, truth


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0, codec: str = "FFV1") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> tuple[Path, np.ndarray]:
    frames, truth = moving_dots(40)
    return write_video(tmp_path_factory.mktemp("walk") / "walk.avi", frames), truth


def check_results(h5: Path, truth: np.ndarray, n: int) -> pd.DataFrame:
    """The table has one row per captured frame; analysed rows are exact, dropped rows NaN."""
    poses = load_poses(h5)
    assert len(poses) == n and list(poses.frame_numbers()) == list(range(n))
    ts = pd.read_csv(h5.with_name(h5.stem + "_timestamps.csv"))
    assert tuple(ts.columns) == TIMESTAMP_COLUMNS and list(ts["frame"]) == list(range(n))
    analysed = ts["analysed"].to_numpy().astype(bool)
    np.testing.assert_array_equal(poses.xy[analysed, 0], truth[:n][analysed])
    assert np.isnan(poses.coords[~analysed]).all()
    assert (np.diff(ts["capture_time"]) >= 0).all()
    assert (ts.loc[analysed, "latency_ms"] > 0).all() and ts.loc[~analysed, "latency_ms"].isna().all()
    return ts


# -- the pipeline and dynamic cropping ------------------------------------------------------------
def test_dynamic_crop_follows_the_animal_and_keypoints_land_in_frame_pixels(model):
    frames, truth = moving_dots(30, blank=(12, 13), jump=14)
    crop = DynamicCrop(margin=8)
    pipe = LivePipeline(model, crop=crop)
    pipe.warmup(*SIZE)
    results = [pipe(f, i) for i, f in enumerate(frames)]
    boxes = [r.crop for r in results]
    assert boxes[0] is None  # the first frame is searched whole
    assert all(b is not None for b in boxes[1:13])  # then the window follows the animal
    assert boxes[13] is None and boxes[14] is None  # lost at 12 (blank): whole frames until found again
    assert all(b is not None for b in boxes[15:])  # found far away at 14, followed from 15
    x1, x2, y1, y2 = boxes[5]
    assert (x2 - x1) == (y2 - y1) == crop.window[0] and (x2 - x1) % pipe.crop_step() == 0
    assert (x2 - x1) < SIZE[1]  # smaller than the frame: that is the point
    seen = [i for i in range(30) if i not in (12, 13)]
    got = np.stack([results[i].poses.xy[0, 0] for i in seen])
    np.testing.assert_array_equal(got, truth[seen])  # exact, in frame pixels, crop offset included
    assert all(r.poses.frame_numbers()[0] == i for i, r in enumerate(results))


def test_crop_through_the_spec_geometry_resize_and_a_fixed_window(tmp_path):
    spec = make_spec(preprocess=PreprocessSpec(resize="scale", scale=0.5, interpolation="area"))
    model = PoseModel.load(make_pose_onnx(tmp_path / "half.onnx", spec), threads=1)
    frames, truth = moving_dots(12, size=(240, 320), block=2)
    pipe = LivePipeline(model, crop=DynamicCrop(margin=10, size=(96, 80)))
    assert pipe.crop_step() == 64  # size multiple 32 at half resolution
    pipe.warmup(240, 320)  # a fixed window is warmed up before capture
    assert {(1, 128, 160, 3), (1, 64, 64, 3)} <= set(model.static_shapes())
    results = [pipe(f, i) for i, f in enumerate(frames)]
    assert all(r.crop is not None and (r.crop[1] - r.crop[0], r.crop[3] - r.crop[2]) == (96, 80) for r in results[1:])
    got = np.stack([r.poses.xy[0, 0] for r in results])
    # a 2x2 block halves to one pixel: it maps back to the block's centre (x + 0.5)
    np.testing.assert_allclose(got, truth + 0.5, atol=1e-4)


def test_dynamic_crop_is_refused_for_a_model_that_crops_in_its_spec(tmp_path):
    spec = make_spec(preprocess=PreprocessSpec(resize="none", crop=[0, 100, 0, 80]))
    model = PoseModel.load(make_pose_onnx(tmp_path / "cropped.onnx", spec), threads=1)
    with pytest.raises(ValueError, match="crop twice"):
        LivePipeline(model, crop=DynamicCrop())
    LivePipeline(model)  # without dynamic cropping it is fine


def test_latest_frame_mailbox_keeps_only_the_newest():
    box = LatestFrame()
    for i in range(3):
        box.put(Capture(i, float(i), float(i), False, np.zeros((2, 2, 3), np.uint8)))
    item, dropped = box.take()
    assert item.index == 2 and [d.index for d in dropped] == [0, 1] and box.dropped == 2
    assert all(d.frame is None for d in dropped)  # dropped frames release their pixels
    box.close()
    assert box.take() == (None, [])


# -- the live loop on video files standing in for cameras -----------------------------------------
def test_run_live_on_a_video_stand_in_writes_complete_results(model, walk, tmp_path):
    video, truth = walk
    rep = run_live(model, VideoSource(video, fps=200), tmp_path / "walk.h5", crop=DynamicCrop(margin=8),
                   progress=False, csv=True)
    assert rep.complete and rep.stop_reason == "source ended" and rep.captured == 40
    assert rep.analysed + rep.dropped == 40
    ts = check_results(rep.results, truth, 40)
    assert ts["crop_x1"].notna().sum() >= rep.analysed - 2
    meta = json.loads(rep.meta.read_text())
    assert meta["frames_captured"] == 40 and meta["complete"] and meta["latency_ms"]["p99"] > 0
    assert meta["source"]["kind"] == "video" and meta["crop"]["margin"] == 8
    assert (tmp_path / "walk.csv").exists() and not list(tmp_path.glob("*.partial"))
    # DeepLabCut's own reader: one table, the key it expects
    df = pd.read_hdf(rep.results)
    assert df.columns.names == ["scorer", "bodyparts", "coords"] and len(df) == 40


def test_frames_arriving_while_the_model_is_busy_are_dropped_never_queued(model, tmp_path):
    frames, truth = moving_dots(60)

    def slow(poses: Poses, info: FrameInfo) -> None:
        time.sleep(0.02)  # a 20 ms processor at 250 frames/s: most frames must be dropped

    rep = run_live(model, FramesSource(frames, fps=250), tmp_path / "busy.h5", processors=[slow], progress=False)
    assert rep.captured == 60 and rep.dropped > 20 and rep.analysed + rep.dropped == 60
    ts = check_results(rep.results, truth, 60)
    # latest frame wins: each analysed frame waited for at most one busy step, whereas a queue
    # would have made the last ones wait ~60 x 20 ms - 0.24 s ~ 1 s
    assert ts["latency_ms"].max() < 300
    assert ts.loc[ts["analysed"] == 1, "frame"].iloc[-1] >= 55  # the newest frames were the ones analysed


def test_a_processor_that_raises_is_reported_and_the_capture_goes_on(model, walk, tmp_path):
    video, truth = walk
    calls = []

    def flaky(poses: Poses, info: FrameInfo) -> str:
        calls.append(info.index)
        if info.index % 3 == 0:
            raise ZeroDivisionError("the lab's processor failed")
        return "ok"

    messages: list[str] = []
    trigger = RegionTrigger("red", rectangle=(0, 0, 60, 60), output="log")
    rep = run_live(model, VideoSource(video, fps=200), tmp_path / "flaky.h5", processors=[flaky, trigger],
                   progress=False, report=messages.append)
    assert not rep.complete and rep.processor_errors == {"flaky": len([i for i in calls if i % 3 == 0])}
    assert "processor error" in rep.message and rep.captured == 40
    assert sum("ZeroDivisionError" in m and "Traceback" in m for m in messages) == 1  # once, with the traceback
    ts = check_results(rep.results, truth, 40)
    assert set(ts.loc[ts["frame"] % 3 == 1, "actions"].fillna("").str.split(";").sum()) >= {"ok"}
    assert trigger.output.state is False  # closed at the end: the line is left off
    meta = json.loads(rep.meta.read_text())
    assert meta["processors"][0] == {"name": "flaky", "errors": rep.processor_errors["flaky"],
                                     "first_error": "ZeroDivisionError: the lab's processor failed"}


def test_a_source_that_ends_early_leaves_complete_results_and_says_so(model, walk, tmp_path):
    video, truth = walk
    data = video.read_bytes()
    cut = tmp_path / "unplugged.avi"
    cut.write_bytes(data[: len(data) // 2])  # a camera unplugged half way: the file lies about its length
    rep = run_live(model, VideoSource(cut, fps=200), tmp_path / "cut.h5", progress=False)
    assert not rep.complete and rep.stop_reason == "source ended early"
    assert "ended early" in rep.message and 0 < rep.captured < 40
    check_results(rep.results, truth, rep.captured)

    rep = run_live(model, VideoSource(video, fps=200), tmp_path / "short.h5", frames=100, progress=False)
    assert not rep.complete and "before the requested 100 frames" in rep.message and rep.captured == 40

    rep = run_live(model, VideoSource(video, fps=200), tmp_path / "limit.h5", frames=10, progress=False)
    assert rep.complete and rep.stop_reason == "limit" and rep.captured == 10
    check_results(rep.results, truth, 10)


def test_ctrl_c_stops_cleanly_with_complete_results(model, tmp_path):
    frames, truth = moving_dots(50)
    endless = iter(range(10**9))

    def camera() -> np.ndarray:  # a callable camera that never ends
        return frames[next(endless) % len(frames)]

    def press_ctrl_c() -> None:  # once the session runs (its files exist), as a user would
        deadline = time.monotonic() + 30
        while not (tmp_path / "ctrlc_timestamps.csv.partial").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    rep = run_live(model, CallableSource(camera, fps=100), tmp_path / "ctrlc.h5", progress=False)
    presser.join()
    assert rep.stop_reason == "interrupted" and rep.message == "stopped by Ctrl-C" and rep.complete
    assert rep.captured > 5
    check_results(rep.results, np.concatenate([truth] * (rep.captured // 50 + 1)), rep.captured)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's handler is back


def test_model_or_source_failures_save_what_was_done(tmp_path):
    small = PoseModel.load(make_pose_onnx(tmp_path / "fixed.onnx", size=(48, 64)), threads=1)
    frames = [np.zeros((48, 64, 3), np.uint8)] * 5 + [np.zeros((96, 128, 3), np.uint8)] * 5
    with pytest.raises(LiveError, match="the model failed.*larger than the model's fixed input.*saved in"):
        run_live(small, FramesSource(frames, fps=200), tmp_path / "fail.h5", progress=False)
    assert len(load_poses(tmp_path / "fail.h5")) >= 5

    count = iter(range(100))
    bad = lambda: np.zeros((48, 64, 3), np.uint8) if next(count) < 4 else np.zeros((48, 64), np.float32)  # noqa: E731
    with pytest.raises(LiveError, match="source .* failed.*uint8"):
        run_live(small, CallableSource(bad, fps=200), tmp_path / "badsource.h5", progress=False)
    assert len(load_poses(tmp_path / "badsource.h5")) == 4


def test_no_overwrite_and_a_missing_camera_is_a_clear_error(model, walk, tmp_path, capsys):
    from posezoo.runtime.cli import main

    video, _ = walk
    (tmp_path / "taken.h5").write_bytes(b"")
    with pytest.raises(FileExistsError, match="never overwrites"):
        run_live(model, VideoSource(video), tmp_path / "taken.h5", progress=False)
    assert main(["live", str(model.path), "--camera", "97", "-o", str(tmp_path / "c.h5")]) == 2
    assert "camera 97 could not be opened" in capsys.readouterr().err
    assert not list(tmp_path.glob("c*"))


# -- recording and display ------------------------------------------------------------------------
def test_record_keeps_every_captured_frame_in_step_with_the_table(model, walk, tmp_path):
    video, truth = walk
    rep = run_live(model, VideoSource(video, fps=200), record=tmp_path / "session.avi", progress=False)
    assert rep.results == tmp_path / f"session{'DLC_posezoo_brightest-pixel'}.h5"  # named after the recording
    cap = cv2.VideoCapture(str(rep.recording))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert n == rep.captured == 40 and rep.not_recorded == 0
    ts = check_results(rep.results, truth, 40)
    assert ts["recorded"].all()


class Viewer:
    """A stand-in window: keeps what it is shown, asks to stop after ``stop_after`` images."""

    def __init__(self, stop_after: int = 10**9) -> None:
        self.images: list[np.ndarray] = []
        self.stop_after = stop_after
        self.closed = False

    def show(self, image: np.ndarray) -> bool:
        self.images.append(image)
        return len(self.images) < self.stop_after

    def close(self) -> None:
        self.closed = True


def test_display_headless_here_and_a_viewer_gets_the_overlay(model, walk, tmp_path, monkeypatch):
    video, truth = walk
    assert "no GUI" in display_problem({"DISPLAY": ":0"}, "  GUI:   NONE\n")
    if sys.platform.startswith("linux"):
        assert "DISPLAY is not set" in display_problem({}, "  GUI:   GTK3\n")
    assert display_problem({"DISPLAY": ":0"}, "  GUI:   GTK3\n") is None
    monkeypatch.delenv("DISPLAY", raising=False)
    messages: list[str] = []
    rep = run_live(model, VideoSource(video, fps=200), tmp_path / "headless.h5", display=True, progress=False,
                   report=messages.append, frames=5)
    assert rep.complete and any("running headless" in m for m in messages)

    viewer = Viewer(stop_after=3)
    rep = run_live(model, VideoSource(video, fps=50), tmp_path / "viewed.h5", display=viewer, progress=False)
    assert rep.stop_reason == "window closed" and viewer.closed and len(viewer.images) == 3
    assert rep.captured < 40 and "display window" in rep.message
    image = viewer.images[0]
    assert image.shape == (*SIZE, 3) and (image != 40).sum() > 100  # keypoints and text were drawn

    frame = np.full((*SIZE, 3), 40, np.uint8)
    drawn = draw_overlay(frame, np.array([[[30.0, 30.0, 1.0], [50.0, 50.0, 0.1], [np.nan, np.nan, np.nan]]]),
                         skeleton=[(0, 1)], pcutoff=0.5, crop=(10, 90, 5, 85), lines=["3.1 ms"])
    assert (frame == 40).all() and (drawn != 40).any()  # a copy is drawn on


# -- processors and outputs -----------------------------------------------------------------------
def one(coords: list[list[float]], index: int = 0, t: float = 0.0) -> tuple[Poses, FrameInfo]:
    poses = Poses(np.array([[coords]], np.float32), list(CHANNELS))
    return poses, FrameInfo(index, t, t, t, 0.5, None)


def test_region_and_angle_triggers_toggle_a_logged_ttl_line():
    out = LogOutput("laser")
    trig = RegionTrigger("red", rectangle=(0, 0, 50, 50), output=out, name="corner")
    seq = [[[10, 10, 0.9]] * 3, [[20, 20, 0.9]] * 3, [[80, 10, 0.9]] * 3, [[10, 10, 0.9]] * 3, [[10, 10, 0.1]] * 3]
    actions = [trig(*one(c, i)) for i, c in enumerate(seq)]
    assert actions == ["corner:on", None, "corner:off", "corner:on", "corner:off"]  # lost -> off
    assert [on for _, on in out.events] == [True, False, True, False]
    held = RegionTrigger("red", circle=(10, 10, 5), output="log", when_lost="hold")
    assert held(*one([[10, 10, 0.9]] * 3)) == "RegionTrigger:on" and held(*one([[10, 10, 0.0]] * 3)) is None
    poly = RegionTrigger("green", polygon=[(0, 0), (100, 0), (0, 100)], output="log", inside=False)
    assert poly(*one([[0, 0, 1], [90, 90, 1], [0, 0, 1]])) == "RegionTrigger:on"
    with pytest.raises(ValueError, match="exactly one"):
        RegionTrigger("red", rectangle=(0, 0, 1, 1), circle=(0, 0, 1))
    with pytest.raises(ValueError, match="not among"):
        RegionTrigger("tail", rectangle=(0, 0, 1, 1), output="log")(*one([[0, 0, 1]] * 3))

    heading = AngleTrigger(["red", "green"], 80, 100, output="log")
    assert heading(*one([[10, 50, 1], [10, 20, 1], [0, 0, 1]])) is not None and heading.angle == pytest.approx(90)
    wrap = AngleTrigger(["red", "green"], 170, -170, output="log")
    assert wrap(*one([[50, 50, 1], [10, 51, 1], [0, 0, 1]])) == "AngleTrigger:on"
    bend = AngleTrigger(["red", "green", "blue"], 0, 100, output="log")
    assert bend(*one([[10, 0, 1], [0, 0, 1], [0, 10, 1]])) == "AngleTrigger:on" and bend.angle == pytest.approx(90)
    bend.close()
    assert bend.output.state is False


def test_one_euro_filter_smooths_jitter_and_passes_what_it_cannot_trust():
    rng = np.random.default_rng(0)
    filt = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    raw, smooth = [], []
    for i in range(120):
        xy = 100 + rng.normal(0, 2, size=(3, 2))
        poses, info = one([[x, y, 0.9] for x, y in xy], i, i / 60)
        out = filt(poses, info)
        assert out is not poses and out.keypoints == poses.keypoints and out.coords.dtype == poses.coords.dtype
        raw.append(xy)
        smooth.append(out.xy[0, 0])
    assert np.std(np.array(smooth)[30:]) < 0.5 * np.std(np.array(raw)[30:])
    # under pcutoff: passed through unchanged, the filter keeps its state
    poses, info = one([[500, 500, 0.1]] * 3, 121, 121 / 60)
    np.testing.assert_array_equal(filt(poses, info).coords, poses.coords)
    # a constant keypoint is left where it is
    still = OneEuroFilter()
    for i in range(5):
        out = still(*one([[7, 9, 1]] * 3, i, i / 30))
    np.testing.assert_allclose(out.xy[0, 0], [[7, 9]] * 3)


def test_filters_feed_later_processors_and_write_raw_poses(model, walk, tmp_path):
    video, truth = walk
    seen = []
    shift = lambda poses, info: Poses(poses.coords + np.array([1, 0, 0], np.float32), poses.keypoints)  # noqa: E731
    rep = run_live(model, VideoSource(video, fps=200), tmp_path / "chain.h5", frames=8, progress=False,
                   processors=[shift, lambda poses, info: seen.append((info.index, poses.xy[0, 0, 0, 0]))])
    assert rep.complete
    ts = check_results(rep.results, truth, 8)  # the table keeps the model's own poses
    for index, x in seen:
        assert x == truth[index, 0, 0] + 1  # the processor after the filter saw the filtered ones
    assert len(seen) == int(ts["analysed"].sum())


def test_outputs_and_loading_processors_by_name(tmp_path):
    assert isinstance(open_output("log:reward"), LogOutput) and open_output("log:reward").name == "reward"
    with pytest.raises(ValueError, match="unknown output"):
        open_output("gpio:17")
    with pytest.raises(ValueError, match="unknown serial options"):
        open_output("serial:/dev/ttyUSB0?speed=9600")
    import importlib.util

    if importlib.util.find_spec("serial") is None:
        with pytest.warns(UserWarning, match="pyserial is not installed.*NOT driven"):
            stand_in = open_output("serial:/dev/ttyACM0")
        assert isinstance(stand_in, LogOutput) and stand_in.name == "/dev/ttyACM0"

    trig = load_processor("RegionTrigger", ["keypoint=snout", "rectangle=(0, 0, 10, 10)", "output=log"])
    assert isinstance(trig, RegionTrigger) and trig.rectangle == (0, 0, 10, 10) and trig.keypoint == "snout"
    mine = tmp_path / "laser.py"
    mine.write_text("class Laser:\n    def __init__(self, port, gain=1):\n        self.port, self.gain = port, gain\n"
                    "    def __call__(self, poses, info):\n        return 'pulse'\n")
    laser = load_processor(f"{mine}:Laser", ["port=/dev/ttyUSB0", "gain=2.5"])
    assert (laser.port, laser.gain) == ("/dev/ttyUSB0", 2.5)
    assert load_processor("posezoo.runtime.live.processors:OneEuroFilter", ["beta=0.1"]).beta == 0.1
    with pytest.raises(ValueError, match="no 'Nope'"):
        load_processor(f"{mine}:Nope")
    with pytest.raises(ValueError, match="key=value"):
        load_processor("OneEuroFilter", ["0.1"])
    with pytest.raises(ValueError, match="unexpected keyword"):
        load_processor("OneEuroFilter", ["speed=2"])
    with pytest.raises(FileNotFoundError):
        load_processor("missing/file.py:Laser")


def test_serial_output_through_a_pty():
    pytest.importorskip("serial", reason="pyserial is optional")
    import pty

    from posezoo.runtime.live import SerialOutput

    controller, device = pty.openpty()
    try:
        out = open_output(f"serial:{os.ttyname(device)}?on=O&off=X")
        assert isinstance(out, SerialOutput)
        out.set(True)
        out.set(True)  # no change, nothing sent
        out.set(False)
        out.close()
        time.sleep(0.05)
        assert os.read(controller, 100) == b"XOX"  # off at open, on, off (close sends nothing more)
    finally:
        os.close(controller)
        os.close(device)


# -- the command line -----------------------------------------------------------------------------
def test_cli_live_on_a_video_with_a_processor_then_ctrl_c(model_path, tmp_path):
    frames, truth = moving_dots(40)
    video = write_video(tmp_path / "long.avi", frames * 10)  # 400 frames: 13 s at 30 frames/s
    cmd = POSEZOO + ["live", str(model_path), "--video", str(video), "--fps", "30", "--crop", "--threads", "1",
                     "-o", str(tmp_path / "cli.h5"), "--processor", "RegionTrigger", "keypoint=red",
                     "rectangle=(0, 0, 60, 60)", "output=log", "--display"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "DISPLAY": ""})
    deadline = time.monotonic() + 60
    while not (tmp_path / "cli_timestamps.csv.partial").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stopped by Ctrl-C" in stdout and "running headless" in stderr
    poses = load_poses(tmp_path / "cli.h5")
    ts = pd.read_csv(tmp_path / "cli_timestamps.csv")
    assert 0 < len(poses) == len(ts) < 400
    analysed = ts["analysed"].to_numpy().astype(bool)
    np.testing.assert_array_equal(poses.xy[analysed, 0], np.concatenate([truth] * 10)[: len(ts)][analysed])
    assert json.loads((tmp_path / "cli_meta.json").read_text())["stop_reason"] == "interrupted"


def test_cli_live_with_your_own_source_and_a_frame_limit(model_path, tmp_path, capsys):
    from posezoo.runtime.cli import main

    cam = tmp_path / "mycam.py"
    cam.write_text("import numpy as np\n"
                   "class Camera:\n"
                   "    def __call__(self):\n"
                   "        frame = np.full((60, 80, 3), 40, np.uint8)\n"
                   "        frame[10, 20, 2] = frame[30, 40, 1] = frame[50, 60, 0] = 255\n"
                   "        return frame\n")
    assert main(["live", str(model_path), "--source", f"{cam}:Camera", "--fps", "100", "--frames", "6", "-q",
                 "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "stopped after 6 frames as asked" in out
    (h5,) = tmp_path.glob("Camera-live-*DLC_posezoo_brightest-pixel.h5")
    poses = load_poses(h5)
    assert len(poses) == 6
    analysed = np.isfinite(poses.coords[:, 0, 0, 0])
    np.testing.assert_array_equal(poses.xy[analysed, 0], [[[20, 10], [40, 30], [60, 50]]] * int(analysed.sum()))


def test_the_runtime_live_package_imports_no_framework():
    code = ("import sys, posezoo.runtime.live; "
            "bad = {m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras', 'serial')}; "
            "assert not bad, sorted(bad)")
    subprocess.run([sys.executable, "-c", code], check=True)
