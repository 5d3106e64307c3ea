"""The catalogue of bad inputs and interruptions (issue 14's probe and the cases that already held).

Every case runs the command a user would run and checks the four things a careful user checks: the
exit code, a message that names the file (or the zoo reference), no traceback, and what is left on
disk. Commands run in-process through `main` (an uncaught exception would fail the test, which is
the no-traceback check) or, where a process must be killed or limited, as a real subprocess.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from dot_videos import write_dot_video
from onnx_models import make_pose_onnx
from posezoo.runtime.cli import main
from posezoo.runtime.io import load_poses
from posezoo.runtime.spec import METADATA_KEY, read_spec

BUILTIN = Path(__file__).parents[1] / "zoo" / "models" / "synthetic-mouse" / "1.0.0" / "synthetic-mouse.onnx"
SCORER = "DLC_posezoo_brightest-pixel"
TINY = ["--model", "lite", "--epochs", "1", "--batch-size", "8", "--set", "input.scale=0.5",
        "--set", "input.train_size=[64,64]", "--quiet"]


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return code, out.out, out.err


def subprocess_cli(*args: object, **kwargs: object) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "posezoo.runtime.cli", *map(str, args)], capture_output=True,
                          text=True, **kwargs)
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture()
def project(tmp_path: Path, synthetic_project: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(synthetic_project, copy)
    return copy


@pytest.fixture(scope="module")
def dots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    root = tmp_path_factory.mktemp("dots")
    truth = write_dot_video(root / "v.avi", n=40, size=(24, 32))
    return make_pose_onnx(root / "bp.onnx"), root / "v.avi", truth


# -- projects and training ---------------------------------------------------------------------------
def test_missing_image(project, tmp_path, capsys):
    image = next((project / "labeled-data").rglob("*.png"))
    image.unlink()
    code, _, err = run_cli(capsys, "train", project, *TINY, "--output", tmp_path / "run")
    assert code == 2 and image.name in err
    assert not (tmp_path / "run").exists()


def test_bad_yaml(project, tmp_path, capsys):
    (project / "config.yaml").write_text("bodyparts: [snout, leftear\n  - : : nope")
    code, _, err = run_cli(capsys, "train", project, *TINY, "--output", tmp_path / "run")
    assert code == 2 and "config.yaml" in err and "not valid YAML" in err
    assert not (tmp_path / "run").exists()


def test_wrong_bodypart_count(project, tmp_path, capsys):
    cfg = (project / "config.yaml").read_text().replace("- tailbase\n", "- tailbase\n- tailtip\n", 1)
    (project / "config.yaml").write_text(cfg)
    code, _, err = run_cli(capsys, "train", project, *TINY, "--output", tmp_path / "run")
    assert code == 2 and "CollectedData_synthetic" in err and "missing bodyparts ['tailtip']" in err
    assert not (tmp_path / "run").exists()


def test_unknown_config_key(project, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", project, "--set", "train.epochz=3", "--output", tmp_path / "run")
    assert code == 2 and "epochz" in err and not (tmp_path / "run").exists()


def test_labels_all_nan_are_refused_up_front(project, tmp_path, capsys):
    for table in (project / "labeled-data").rglob("CollectedData_*.h5"):
        df = pd.read_hdf(table)
        df.loc[:, :] = np.nan
        df.to_hdf(table, key="df_with_missing", mode="w")
    code, _, err = run_cli(capsys, "train", project, *TINY, "--output", tmp_path / "run")
    assert code == 2 and "CollectedData_synthetic.h5" in err and "no keypoint is labeled" in err
    assert not (tmp_path / "run").exists()


def test_truncated_png_leaves_no_run_and_the_corrected_rerun_proceeds(project, tmp_path, capsys):
    image = sorted((project / "labeled-data").rglob("*.png"))[3]
    good = image.read_bytes()
    image.write_bytes(good[: len(good) // 3])
    code, _, err = run_cli(capsys, "train", project, *TINY, "--output", tmp_path / "run")
    assert code == 2 and image.name in err
    assert not (tmp_path / "run").exists()
    image.write_bytes(good)
    code, out, _ = run_cli(capsys, "train", project, *TINY, "--output", tmp_path / "run")
    assert code == 0 and "run directory:" in out


def test_resume_errors_name_the_file_and_what_to_do(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    last = run / "snapshots" / "last.pt"
    last.write_bytes(last.read_bytes()[:5000])
    code, _, err = run_cli(capsys, "train", "--resume", "--output", run)
    assert code == 2 and "last.pt" in err and "copy snapshots/best.* over snapshots/last.*" in err
    (run / "run.json").write_text("{not json")
    code, _, err = run_cli(capsys, "train", "--resume", "--output", run)
    assert code == 2 and "run.json: not readable JSON" in err


def _log(run: Path) -> list[dict[str, str]]:
    import csv

    with open(run / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_kill_9_of_train_then_resume_matches_an_uninterrupted_run(tmp_path, synthetic_project):
    from posezoo.training.api import train

    opts = {"model": "lite", "epochs": 4, "batch_size": 8, "eval_every": 2, "scale": 0.5,
            "input.train_size": [64, 64], "split.test_indices": list(range(4, 48, 8))}
    straight = train(synthetic_project, output=tmp_path / "straight", progress=False, **opts)
    killed = tmp_path / "killed"
    code = ("from posezoo.training.api import train; "
            f"train({str(synthetic_project)!r}, output={str(killed)!r}, progress=False, **{opts!r})")
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while not (killed / "snapshots" / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL) if proc.poll() is None else None
    proc.wait()
    if len(_log(killed)) >= opts["epochs"]:
        pytest.skip("the subprocess finished before it could be killed")
    train(output=killed, resume=True, progress=False)
    a, b = _log(straight), _log(killed)
    assert [r["epoch"] for r in b] == [str(e) for e in range(opts["epochs"])]
    for ra, rb in zip(a, b):
        assert float(ra["loss"]) == pytest.approx(float(rb["loss"]), rel=1e-5), (ra, rb)


# -- model files ---------------------------------------------------------------------------------------
def _edited(source: Path, out: Path, edit, refingerprint: bool = False) -> Path:
    """``source`` with its embedded spec edited (and, like a file from another posezoo version,
    fingerprinted again when ``refingerprint``)."""
    from posezoo.runtime.onnxfile import text_sha256
    from posezoo.runtime.spec import SPEC_HASH_KEY

    model = onnx.load(source)
    props = {prop.key: prop for prop in model.metadata_props}
    spec = json.loads(props[METADATA_KEY].value)
    edit(spec)
    props[METADATA_KEY].value = json.dumps(spec, sort_keys=True)
    if refingerprint:
        props[SPEC_HASH_KEY].value = text_sha256(props[METADATA_KEY].value)
    onnx.save(model, out)
    return out


def test_files_that_are_not_posezoo_models(dots, tmp_path, capsys):
    model, _, _ = dots
    text = tmp_path / "notes.onnx"
    text.write_text("hello")
    code, _, err = run_cli(capsys, "inspect", text)
    assert code == 2 and "notes.onnx" in err and "cannot load this file as an ONNX model" in err
    bare = onnx.load(model)
    del bare.metadata_props[:]
    onnx.save(bare, tmp_path / "bare.onnx")
    code, _, err = run_cli(capsys, "inspect", tmp_path / "bare.onnx")
    assert code == 2 and "bare.onnx" in err and "carries no posezoo spec" in err
    future = _edited(BUILTIN, tmp_path / "future.onnx", lambda s: s.update(schema_version="9.0"), refingerprint=True)
    code, _, err = run_cli(capsys, "inspect", future)
    assert code == 2 and "future.onnx" in err and "schema_version 9.0" in err and "upgrade posezoo" in err
    missing = tmp_path / "absent.onnx"
    code, _, err = run_cli(capsys, "inspect", missing)
    assert code == 2 and "absent.onnx" in err


def test_tampered_weights_are_refused(tmp_path, capsys):
    model = onnx.load(BUILTIN)
    weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    raw = bytearray(weight.raw_data)
    raw[:4] = b"\x00\x00\x80\x7f"
    weight.raw_data = bytes(raw)
    onnx.save(model, tmp_path / "weights.onnx")
    code, _, err = run_cli(capsys, "inspect", tmp_path / "weights.onnx")
    assert code == 2 and "weights.onnx" in err and "graph was modified after export" in err


@pytest.mark.parametrize("edit", [lambda s: s.update(keypoints=s["keypoints"][::-1]),
                                  lambda s: s["preprocess"].update(scale=0.5)], ids=["reversed-names", "scale"])
def test_an_edited_spec_is_refused_by_analyze_inspect_and_the_zoo(edit, dots, tmp_path, capsys):
    _, video, _ = dots
    edited = _edited(BUILTIN, tmp_path / "edited.onnx", edit)
    for args in (("inspect", edited), ("analyze", edited, video, "--output-dir", tmp_path / "out", "-q"),
                 ("zoo", "pack", edited, "-o", tmp_path / "entry", "--no-speed")):
        code, out, err = run_cli(capsys, *args)
        assert code in (1, 2) and "edited.onnx" in err + out and "edited after export" in err + out, args
    assert not (tmp_path / "entry").exists() and not list((tmp_path / "out").glob("*.h5"))
    # A packed entry whose model is edited afterwards is refused by publish.
    assert run_cli(capsys, "zoo", "pack", BUILTIN, "-o", tmp_path / "good", "--no-speed")[0] == 0
    _edited(BUILTIN, tmp_path / "good" / "synthetic-mouse-lite.onnx", edit)
    entry = json.loads((tmp_path / "good" / "entry.json").read_text())
    from posezoo.runtime.files import sha256_file

    for f in entry["files"]:  # re-record the hashes, as someone covering their tracks would
        f["sha256"] = sha256_file(tmp_path / "good" / f["name"])
        f["size"] = (tmp_path / "good" / f["name"]).stat().st_size
    (tmp_path / "good" / "entry.json").write_text(json.dumps(entry))
    code, _, err = run_cli(capsys, "zoo", "publish", tmp_path / "good", tmp_path / "zoo")
    assert code == 2 and "edited after export" in err and not (tmp_path / "zoo" / "index.json").exists()


# -- videos --------------------------------------------------------------------------------------------
def test_garbage_truncated_and_zero_frame_videos(dots, tmp_path, capsys):
    model, video, truth = dots
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4000))
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.avi"
    data = video.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    code, text, _ = run_cli(capsys, "analyze", model, garbage, empty, truncated, "--output-dir", out, "-q")
    assert code == 1 and f"FAILED  {garbage}" in text and f"FAILED  {empty}" in text
    assert "2 of 3 video(s) failed" in text
    res = load_poses(out / f"truncated{SCORER}.h5")  # the readable half, the rest NaN and reported
    assert len(res) == len(truth) and "missing frame(s)" in text
    assert sorted(p.name for p in out.iterdir()) == [f"truncated{SCORER}.h5", f"truncated{SCORER}_meta.json"]


def test_full_disk_fails_clearly_and_keeps_nothing_half_written(dots, tmp_path):
    model, _, _ = dots
    long = tmp_path / "long.avi"
    write_dot_video(long, n=3000, size=(24, 32))

    def small_disk() -> None:  # writes beyond 150 kB fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))

    out = tmp_path / "out"
    done = subprocess_cli("analyze", model, long, "--output-dir", out, "-q", preexec_fn=small_disk)
    assert done.returncode == 1 and "long" in done.stdout and "disk full" in done.stdout
    assert not list(out.glob("*.h5")) and not list(out.glob(".*tmp"))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(dots, tmp_path, capsys):
    model, video, _ = dots
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, text, _ = run_cli(capsys, "analyze", model, video, "--output-dir", out, "-q")
        assert code == 1 and str(out) in text and not list(out.iterdir())
    finally:
        out.chmod(0o755)


_KILL_BEFORE_FIRST_WRITE = r"""
import os, signal, sys
from posezoo.runtime import decode
def die(self):  # the results file exists, nothing is written yet: a kill -9 lands here
    os.kill(os.getpid(), signal.SIGKILL)
    yield
decode.Decoder.batches = die
from posezoo.runtime.cli import main
sys.exit(main(sys.argv[1:]))
"""

_TERM_AFTER_TWO_FLUSHES = r"""
import os, signal, sys
from posezoo.runtime.io import writer
append = writer.ResultsWriter.append
def append_then_term(self, chunk):  # a scheduler's SIGTERM once two chunks are on disk
    append(self, chunk)
    if self.frames_written >= 1024 and not getattr(writer, "_sent", False):
        writer._sent = True
        os.kill(os.getpid(), signal.SIGTERM)
writer.ResultsWriter.append = append_then_term
from posezoo.runtime.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    video = tmp_path_factory.mktemp("long") / "long.avi"
    return video, write_dot_video(video, n=3000, size=(24, 32))


def test_kill_9_before_the_first_write_does_not_wedge_later_runs(dots, long_video, tmp_path):
    model, _, _ = dots
    video, truth = long_video
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", _KILL_BEFORE_FIRST_WRITE, "analyze", str(model), str(video),
                             "--output-dir", str(out), "-q"], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    partial = out / f"long{SCORER}.h5.partial"
    assert partial.exists()
    done = subprocess_cli("analyze", model, video, "--output-dir", out, "-q")
    assert done.returncode == 0 and "cannot be resumed" in done.stdout and "set aside" in done.stdout
    np.testing.assert_array_equal(load_poses(out / f"long{SCORER}.h5").xy[:, 0], truth)
    assert (out / f"long{SCORER}.h5.partial.unreadable").exists() and not partial.exists()


def test_sigterm_flushes_and_the_rerun_equals_an_uninterrupted_run(dots, long_video, tmp_path):
    model, _, _ = dots
    video, _ = long_video
    stopped = subprocess.run([sys.executable, "-c", _TERM_AFTER_TWO_FLUSHES, "analyze", str(model), str(video),
                              "--output-dir", str(tmp_path / "a"), "-q", "--batch-size", "16"],
                             capture_output=True, text=True)
    assert stopped.returncode == 143 and "terminated (SIGTERM)" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    h5 = tmp_path / "a" / f"long{SCORER}.h5"
    assert not h5.exists() and h5.with_name(h5.name + ".partial").exists()
    assert subprocess_cli("analyze", model, video, "--output-dir", tmp_path / "a", "-q").returncode == 0
    assert subprocess_cli("analyze", model, video, "--output-dir", tmp_path / "b", "-q").returncode == 0
    pd.testing.assert_frame_equal(pd.read_hdf(h5), pd.read_hdf(tmp_path / "b" / h5.name), check_exact=True)
    assert sorted(p.name for p in h5.parent.iterdir()) == [h5.name, f"long{SCORER}_meta.json"]


def test_a_second_analysis_of_the_same_output_is_refused_naming_the_first(dots, tmp_path, capsys):
    model, video, _ = dots
    out = tmp_path / "out"
    lock = out / f".v{SCORER}.h5.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from posezoo.runtime.lock import file_lock\n"
        f"with file_lock(Path({str(lock)!r}), 'x', wait=False):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, text, _ = run_cli(capsys, "analyze", model, video, "--output-dir", out, "-q")
        assert code == 1 and f"process {holder.pid}" in text and "in use" in text
        assert not list(out.glob("*.h5")) and not list(out.glob("*.partial"))
    finally:
        holder.kill()
        holder.wait()
    assert run_cli(capsys, "analyze", model, video, "--output-dir", out, "-q")[0] == 0
    assert not lock.exists()


# -- the zoo ---------------------------------------------------------------------------------------------
@pytest.fixture()
def zoo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POSEZOO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("POSEZOO_ZOO", raising=False)
    monkeypatch.delenv("POSEZOO_OFFLINE", raising=False)
    return tmp_path / "home"


@pytest.mark.parametrize("command", ["analyze", "inspect", "evaluate", "predict", "label-video"])
def test_unresolvable_zoo_names(command, dots, tmp_path, capsys, zoo_home, monkeypatch):
    _, video, _ = dots
    rest = {"analyze": [video], "inspect": [], "evaluate": [tmp_path], "predict": [tmp_path / "x.png", "-o",
            tmp_path / "p.csv"], "label-video": [video]}[command]
    code, _, err = run_cli(capsys, command, "zoo:synthetic-mous", *rest)  # a typo
    assert code == 2 and "zoo:synthetic-mous" in err and "tried:" in err and "zoo/index.json" in err
    with socket_closed() as url:
        monkeypatch.setenv("POSEZOO_ZOO", url)
        code, _, err = run_cli(capsys, command, "zoo:mouse", *rest)
        assert code == 2 and "zoo:mouse" in err and url in err and "Connection refused" in err
    monkeypatch.setenv("POSEZOO_OFFLINE", "1")
    code, _, err = run_cli(capsys, command, "zoo:mouse", *rest)
    assert code == 2 and "zoo:mouse" in err and "POSEZOO_OFFLINE" in err
    assert not list(tmp_path.glob("*.h5")) and not (tmp_path / "p.csv").exists()


class socket_closed:
    """The URL of a zoo index on a 127.0.0.1 port nothing listens on."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return f"http://127.0.0.1:{port}/index.json"

    def __exit__(self, *exc: object) -> None:
        return None


def _published_zoo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert run_cli(capsys, "zoo", "pack", BUILTIN, "-o", tmp_path / "entry", "--name", "mouse", "--no-speed")[0] == 0
    assert run_cli(capsys, "zoo", "publish", tmp_path / "entry", tmp_path / "zoo")[0] == 0
    return tmp_path / "zoo"


def test_sha256_mismatch_and_a_failed_forced_pull_keeps_the_good_copy(tmp_path, capsys, zoo_home, monkeypatch):
    zoo = _published_zoo(tmp_path, capsys)
    monkeypatch.setenv("POSEZOO_ZOO", str(zoo))
    code, out, _ = run_cli(capsys, "zoo", "pull", "mouse")
    assert code == 0
    good = Path(out.strip())
    before = good.read_bytes()
    served = zoo / "models" / "mouse" / "1.0.0" / "mouse.onnx"
    served.write_bytes(served.read_bytes()[:-10] + b"0123456789")  # the zoo's copy goes bad
    code, _, err = run_cli(capsys, "zoo", "pull", "mouse", "--force")
    assert code == 2 and "mouse.onnx" in err and "sha256" in err
    assert good.read_bytes() == before  # still cached, still verified
    assert run_cli(capsys, "inspect", "zoo:mouse@1.0.0")[0] == 0
    shutil.rmtree(zoo_home)
    code, _, err = run_cli(capsys, "analyze", "zoo:mouse", tmp_path / "none.avi")
    assert code == 2 and "sha256" in err and not zoo_home.joinpath("models", "mouse", "1.0.0", "mouse.onnx").exists()


def test_path_traversal_names_are_refused(tmp_path, capsys):
    code, _, err = run_cli(capsys, "zoo", "pack", BUILTIN, "-o", tmp_path / "entry", "--name", "../evil", "--no-speed")
    assert code == 2 and "../evil" in err and not (tmp_path / "entry").exists()


# -- outputs ---------------------------------------------------------------------------------------------
def test_export_over_an_existing_model_needs_overwrite(trained_run, tmp_path, capsys):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"an earlier model")
    code, _, err = run_cli(capsys, "export", trained_run, "--output", target)
    assert code == 2 and "m.onnx" in err and "--overwrite" in err
    assert target.read_bytes() == b"an earlier model"
    stale = tmp_path / ".posezoo-export-999999999-abc"  # left by an export killed mid-way
    stale.mkdir()
    (stale / "int8-raw.onnx").write_bytes(b"x")
    code, _, _ = run_cli(capsys, "export", trained_run, "--output", target, "--overwrite")
    assert code == 0 and read_spec(target).keypoints and not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_json_outputs_are_standard_json(trained_run, tmp_path, capsys):
    """NaN metrics (a keypoint never above pcutoff) are written as null: every language reads them."""
    def strict(path: Path) -> object:
        return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path}: {c} in JSON"))

    strict(Path(trained_run) / "metrics.json")
    model = tmp_path / "m.onnx"
    assert run_cli(capsys, "export", trained_run, "--output", model)[0] == 0
    assert run_cli(capsys, "zoo", "pack", model, "-o", tmp_path / "entry", "--no-speed")[0] == 0
    strict(tmp_path / "entry" / "entry.json")
    assert run_cli(capsys, "zoo", "publish", tmp_path / "entry", tmp_path / "zoo")[0] == 0
    strict(tmp_path / "zoo" / "index.json")
    spec = onnx.load(model).metadata_props
    json.loads(next(p.value for p in spec if p.key == METADATA_KEY),
               parse_constant=lambda c: pytest.fail(f"{c} in the embedded spec"))
