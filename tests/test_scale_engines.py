"""The Ray and SLURM engines on this machine (issue 18): one local Ray cluster for the whole test
session, bound to 127.0.0.1 with its own temporary folder, and submitit's local executor. Each
engine analyses a set of videos plus a long one in chunks and must equal a plain `analyze` bit for
bit; a driver killed with SIGKILL mid-run, then run again, must finish, redo only what was
missing, and leave nothing but the results. Skipped with the reason when an engine is absent."""
from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from onnx_models import make_pose_onnx
from scale_videos import (BATCH, assert_same_results, cli, finished_tables, make_videos, reference, wait_for_group,
                          wait_for_units)

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason='Ray is not installed (pip install "posezoo[ray]")')
needs_submitit = pytest.mark.skipif(importlib.util.find_spec("submitit") is None,
                                    reason='submitit is not installed (pip install "posezoo[slurm]")')


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pose_onnx(tmp_path_factory.mktemp("model") / "bp.onnx")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_videos(tmp_path_factory.mktemp("engines") / "videos")


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory, model: Path, videos: list[Path]) -> Path:
    with pytest.warns(UserWarning):
        return reference(model, videos, tmp_path_factory.mktemp("ref") / "out")


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory, model: Path) -> tuple[list[Path], Path]:
    """More work, for a driver to be killed in the middle of."""
    videos = make_videos(tmp_path_factory.mktemp("big") / "videos", long=1200, extra=6, extra_frames=400)
    with pytest.warns(UserWarning):
        return videos, reference(model, videos, tmp_path_factory.mktemp("bigref") / "out")


# -- Ray ------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listeners(session: int) -> list[tuple[str, str]]:
    """(local address, process) of every listening TCP socket of the processes in a session."""
    pids = set(subprocess.run(["ps", "-o", "pid=", "-s", str(session)], capture_output=True, text=True)
               .stdout.split())
    out = []
    for line in subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines():
        found = re.findall(r'\("([^"]+)",pid=(\d+)', line)
        if any(pid in pids for _, pid in found):
            out.append((line.split()[3], found[0][0]))
    return out


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[dict[str, str]]:
    """One Ray head node for the session: 127.0.0.1 only, a private temporary folder, a token."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip('Ray is not installed (pip install "posezoo[ray]")')
    if shutil.which("ss") is None:
        pytest.skip("`ss` (iproute2) is needed to check that the test cluster listens on loopback only")
    temp = Path(tempfile.mkdtemp(prefix="pzray", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = _free_port()
    env = dict(os.environ, RAY_ADDRESS="", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=secrets.token_hex(32),  # in the environment, not ~/.ray
               # Ray rewrites a 127.0.0.1 node address to a routable one unless it thinks it has no cluster support
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    ray = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen([ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--temp-dir", str(temp), "--include-dashboard", "false", "--num-cpus", "2",
                             "--disable-usage-stats"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        address = f"127.0.0.1:{port}"
        check = [sys.executable, "-c", f"import ray; ray.init(address='{address}', log_to_driver=False)"]
        end = time.monotonic() + 120
        while subprocess.run(check, env=env, capture_output=True).returncode:
            assert head.poll() is None and time.monotonic() < end, "the Ray head node did not start"
            time.sleep(1)
        yield {"address": address, "session": str(head.pid), **{k: env[k] for k in env if k.startswith("RAY_")}}
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # anything of ours still there
        except ProcessLookupError:
            pass
        shutil.rmtree(temp, ignore_errors=True)


def _ray_env(cluster: dict[str, str]) -> dict[str, str]:
    return dict(os.environ, **{k: v for k, v in cluster.items() if k.startswith("RAY_")})


@needs_ray
def test_ray_cluster_listens_on_loopback_only(ray_cluster: dict[str, str], model: Path, videos: list[Path],
                                              tmp_path: Path):
    done = subprocess.run(cli("analyze", model, videos[0], "--output-dir", tmp_path, "--engine", "ray",
                              "--address", ray_cluster["address"], "-q"),
                          env=_ray_env(ray_cluster), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    listening = _listeners(int(ray_cluster["session"]))  # head, raylet, agents and the idle workers
    assert listening and all(re.match(r"(\[::ffff:)?127\.0\.0\.1\]?:\d+$", a) for a, _ in listening), listening


@needs_ray
def test_ray_engine_equals_a_plain_analysis(ray_cluster: dict[str, str], model: Path, videos: list[Path], ref: Path,
                                            tmp_path: Path):
    out = tmp_path / "out"
    args = cli("analyze", model, videos[0].parent, "--output-dir", out, "--engine", "ray", "--address",
               ray_cluster["address"], "--chunk-frames", 20, "--batch-size", BATCH, "--csv", "-q")
    done = subprocess.run(args, env=_ray_env(ray_cluster), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert "20 unit(s) analysed, 0 up to date, 0 failed; 4 of 4 video(s) complete" in done.stdout
    assert_same_results(ref, out)
    again = subprocess.run(args, env=_ray_env(ray_cluster), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 unit(s) analysed, 20 up to date" in again.stdout


@needs_ray
def test_ray_driver_killed_mid_run_then_rerun(ray_cluster: dict[str, str], model: Path,
                                             big: tuple[list[Path], Path], tmp_path: Path):
    videos, ref = big
    out = tmp_path / "out"
    args = cli("analyze", model, videos[0].parent, "--output-dir", out, "--engine", "ray", "--address",
               ray_cluster["address"], "--chunk-frames", 100, "--batch-size", BATCH, "--csv", "-q")
    _kill_then_rerun(args, out, ref, _ray_env(ray_cluster))


@needs_ray
def test_a_lost_ray_task_says_why():
    """A task that raised reports its exception, not only the task's name (Ray's first line)."""
    import ray

    from posezoo.runtime.scale.ray_engine import _cause

    raised = ray.exceptions.RayTaskError("run_unit", "Traceback (most recent call last):\n  File \"units.py\", "
                                         "line 1\nKeyError: 'df_with_missing'", KeyError("df_with_missing"), pid=5,
                                         ip="127.0.0.1")
    assert _cause(raised) == "KeyError: 'df_with_missing'"
    assert _cause(ray.exceptions.WorkerCrashedError()).startswith("The worker died unexpectedly")


# -- SLURM through submitit's local executor ----------------------------------------------------------
@needs_submitit
def test_slurm_engine_equals_a_plain_analysis(model: Path, videos: list[Path], ref: Path, tmp_path: Path):
    out = tmp_path / "out"
    args = cli("analyze", model, videos[0].parent, "--output-dir", out, "--engine", "slurm", "--slurm-cluster",
               "local", "--slurm-folder", tmp_path / "jobs", "--max-tasks", 2, "--cpus-per-task", 1, "--time", 10,
               "--chunk-frames", 20, "--batch-size", BATCH, "--csv", "-q")
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert "20 unit(s) analysed" in done.stdout and "submitted array" in done.stdout
    assert_same_results(ref, out)


@needs_submitit
@pytest.mark.parametrize("tasks_too", [False, True], ids=["driver", "driver-and-array"])
def test_slurm_driver_killed_mid_run_then_rerun(model: Path, big: tuple[list[Path], Path], tmp_path: Path,
                                                tasks_too: bool):
    """Killed alone, the driver's array tasks go on (as they would on a cluster): the rerun submits
    what is missing and waits for the units those tasks are still writing. Killed with its array
    (a cancelled job, lost nodes), the rerun resubmits what is missing and resumes what was
    half written. Either way it ends complete and clean."""
    videos, ref = big
    out = tmp_path / "out"
    args = cli("analyze", model, videos[0].parent, "--output-dir", out, "--engine", "slurm", "--slurm-cluster",
               "local", "--slurm-folder", tmp_path / "jobs", "--max-tasks", 2, "--cpus-per-task", 1, "--time", 10,
               "--chunk-frames", 100, "--batch-size", BATCH, "--csv", "-q")
    rerun = _kill_then_rerun(args, out, ref, dict(os.environ), clean_jobs=tmp_path / "jobs", group=tasks_too)
    if tasks_too:
        assert int(re.search(r"(\d+) unit\(s\) analysed", rerun)[1]) > 0, rerun


def _kill_then_rerun(args: list[str], out: Path, ref: Path, env: dict[str, str], clean_jobs: Path | None = None,
                     group: bool = False) -> str:
    """SIGKILL the driver (``group``: and every process it started) after a few units, rerun the
    same command, check it; returns the rerun's output."""
    driver = subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        wait_for_units(out, 4, driver)
        if group:
            os.killpg(driver.pid, signal.SIGKILL)
        else:
            driver.send_signal(signal.SIGKILL)
        driver.wait(30)
        before = finished_tables(out)
        rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, rerun.stdout + rerun.stderr
        up_to_date = int(re.search(r"(\d+) up to date", rerun.stdout)[1])
        assert up_to_date >= sum(1 for name in before if not name.startswith("b_long")), rerun.stdout
        assert "0 failed" in rerun.stdout and "video(s) complete" in rerun.stdout
        for name, stamp in before.items():  # nothing finished before the rerun was done again
            assert finished_tables(out)[name] == stamp, name
    finally:
        wait_for_group(driver.pid)  # the killed driver's own workers or array tasks, if any
    if clean_jobs is not None:
        shutil.rmtree(clean_jobs)  # submitit's job files are the engine's, not results
    assert_same_results(ref, out)
    return rerun.stdout
