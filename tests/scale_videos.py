"""A folder of real videos for the cluster tests, a plain single-machine analysis of it to compare
against, and the comparison: every table equal bit for bit, every .csv byte for byte, and nothing
else left in the results folder (no partial table, temporary file, lock or chunk folder)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dot_videos import corrupt_avi_frame, write_dot_video
from posezoo.runtime.video import analyze_video, scorer_name

SCORER = scorer_name("brightest-pixel")
BATCH = 8


def make_videos(folder: Path, *, long: int = 300, extra: int = 0, extra_frames: int = 400) -> list[Path]:
    """Short videos, a long one to chunk, one with a corrupt frame just past a chunk boundary (24
    with chunks of 24) and one that ends before its declared 50 frames; ``extra`` more of
    ``extra_frames`` each (work for a driver to be killed in)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_dot_video(folder / "a_short.avi", n=37, seed=1)
    write_dot_video(folder / "b_long.avi", n=long, seed=2)
    clean = folder.parent / f"{folder.name}-clean.avi"
    write_dot_video(clean, n=40, codec="MJPG", block=8, seed=3)
    corrupt_avi_frame(clean, 25, folder / "c_damaged.avi")
    full = folder.parent / f"{folder.name}-full.avi"
    write_dot_video(full, n=50, seed=4)
    data = full.read_bytes()
    (folder / "d_truncated.avi").write_bytes(data[: len(data) // 2])  # the header still declares 50
    for i in range(extra):
        write_dot_video(folder / f"e_{i:02d}.avi", n=extra_frames, seed=10 + i)
    return sorted(folder.iterdir())


def reference(model: Path, videos: list[Path], out: Path) -> Path:
    """Plain `analyze`, one video after another in this process."""
    for video in videos:
        analyze_video(model, video, out, batch_size=BATCH, csv=True, progress=False)
    return out


def assert_same_results(ref: Path, out: Path) -> None:
    names = sorted(p.name for p in ref.iterdir())
    left = sorted(p.name for p in out.iterdir())
    assert left == names, f"{out} holds {sorted(set(left) - set(names))} besides the results and lacks {sorted(set(names) - set(left))}"
    for table in sorted(ref.glob("*.h5")):
        a, b = pd.read_hdf(table), pd.read_hdf(out / table.name)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert a.to_numpy().tobytes() == b.to_numpy().tobytes()  # NaN payloads and signed zeros too
        assert np.array_equal(a.index.to_numpy(), np.arange(len(a)))
        csv = table.with_suffix(".csv").name
        assert (ref / csv).read_bytes() == (out / csv).read_bytes(), csv


def cli(*args: object, **kwargs: object) -> list[str]:
    return [sys.executable, "-m", "posezoo.runtime.cli", *map(str, args)]


def wait_for_units(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> list[Path]:
    """Block until ``n`` unit tables (results or chunks) exist under ``out``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done = list(out.glob("*.h5")) + list(out.glob("*.chunks/*.h5")) if out.exists() else []
        if len(done) >= n:
            return done
        if proc.poll() is not None:
            raise AssertionError(f"the driver ended (code {proc.returncode}) before {n} units were done: "
                                 f"{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.02)
    raise AssertionError(f"fewer than {n} units done after {timeout} s")


def finished_tables(out: Path) -> dict[str, tuple[int, int]]:
    """Complete results tables (with their sidecar) -> (inode, mtime): what a rerun must not touch."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.h5")
            if p.with_name(p.stem + "_meta.json").exists()}


def wait_for_group(pgid: int, timeout: float = 120) -> None:
    """Wait until every process of a process group has ended (then kill any left: ours)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pgid, signal.SIGKILL)
    raise AssertionError(f"processes of group {pgid} still ran after {timeout} s")
