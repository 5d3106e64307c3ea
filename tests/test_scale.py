"""Units, plans, shards, fingerprints and merging (issue 18), without a cluster engine: N real
processes with --shard, real videos (a corrupt frame, a file shorter than it declares), and
results compared bit for bit with a plain `posezoo analyze`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from onnx_models import make_pose_onnx
from posezoo.runtime import PoseModel
from posezoo.runtime.cli import main
from posezoo.runtime.scale import Job, Shard, Unit, make_plan, parse_shard
from posezoo.runtime.scale.merge import chunk_dir, chunk_path, list_chunks, tiling
from posezoo.runtime.scale.plan import chunk_length
from posezoo.runtime.scale.shard import run_local
from posezoo.runtime.scale.units import finish, tidy
from posezoo.runtime.video import analyze_unit, analyze_video, fingerprint, load_meta, meta_path, result_path
from scale_videos import BATCH, SCORER, assert_same_results, cli, make_videos, reference


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pose_onnx(tmp_path_factory.mktemp("model") / "bp.onnx")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_videos(tmp_path_factory.mktemp("scale") / "videos")


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory, model: Path, videos: list[Path]) -> Path:
    with pytest.warns(UserWarning):  # the damaged and the truncated video report their lost frames
        return reference(model, videos, tmp_path_factory.mktemp("ref") / "out")


# -- the plan ---------------------------------------------------------------------------------------
def test_plan_is_deterministic_aligned_and_shards_partition_it(videos: list[Path]):
    plan = make_plan(list(reversed(videos)), chunk_frames=20, batch_size=BATCH)
    assert plan == make_plan(videos + videos[:1], chunk_frames=20, batch_size=BATCH)  # order and repeats do not matter
    assert [u.video.name for u in plan[:2]] == ["a_short.avi"] * 2
    long = [u for u in plan if u.video.name == "b_long.avi"]
    assert [(u.start, u.stop) for u in long] == [(s, s + 24) for s in range(0, 288, 24)] + [(288, None)]
    assert all(u.start % BATCH == 0 for u in plan) and long[3].siblings() == long
    shares = [Shard(i, 3).take(plan) for i in range(3)]
    assert sorted(u for share in shares for u in share) == sorted(plan)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert make_plan(videos, batch_size=BATCH) == [Unit(v) for v in videos]
    assert chunk_length(20, 8) == 24 and chunk_length(24, 8) == 24 and chunk_length(1, 16) == 16


def test_shard_from_the_command_line_or_the_scheduler():
    assert parse_shard("2/8") == Shard(2, 8)
    env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "16"}
    assert parse_shard("auto", env) == Shard(4, 16)  # an array numbered 1-16
    assert parse_shard("auto/4", {"JOB_COMPLETION_INDEX": "3"}) == Shard(3, 4)
    for bad, match in (("8/8", "0 <= I < N"), ("3", "expected I/N"), ("auto/4", "no array task index")):
        with pytest.raises(ValueError, match=match):
            parse_shard(bad, {})


# -- one unit ---------------------------------------------------------------------------------------
def test_a_frame_range_equals_those_rows_of_a_whole_video_run(model: Path, videos: list[Path], ref: Path,
                                                              tmp_path: Path):
    pose_model = PoseModel.load(model, device="cpu")
    video = videos[1]
    out = analyze_unit(pose_model, video, output=tmp_path / "part.h5", frames=(48, 96), batch_size=BATCH,
                       progress=False)
    part, whole = pd.read_hdf(out.path), pd.read_hdf(ref / f"b_long{SCORER}.h5")
    pd.testing.assert_frame_equal(part, whole.iloc[48:96], check_exact=True)
    meta = load_meta(out.path)
    assert meta["frames"] == {"start": 48, "stop": 96} and meta["fingerprint"]["frames"] == [48, 96]
    with pytest.raises(ValueError, match="multiple of the batch size"):
        analyze_unit(pose_model, video, output=tmp_path / "bad.h5", frames=(12, 40), batch_size=BATCH)


def test_fingerprint_skips_what_is_current_and_redoes_what_is_not(model: Path, videos: list[Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]):
    video = tmp_path / "v.avi"
    video.write_bytes(videos[0].read_bytes())
    args = ["analyze", str(model), str(video), "-q", "--batch-size", "8"]
    assert main(args) == 0
    out = result_path(video, SCORER)
    fp = load_meta(out)["fingerprint"]
    assert set(fp) == {"posezoo_version", "model_sha256", "video_bytes", "video_mtime_ns", "options"}
    assert fp["options"] == {"batch_size": 8, "optimization": "all", "body_check": False}  # the model has no body
    stamp = out.stat().st_mtime_ns

    def rerun(*extra: str) -> str:
        capsys.readouterr()
        assert main(args + list(extra)) == 0
        return capsys.readouterr().out

    assert "skipped" in rerun() and out.stat().st_mtime_ns == stamp
    assert "other options" in rerun("--batch-size", "4") and load_meta(out)["fingerprint"]["options"]["batch_size"] == 4
    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 10**9))  # "the video changed"
    assert "the video changed" in rerun("--batch-size", "4")
    meta = json.loads(meta_path(out).read_text())
    meta["fingerprint"]["model_sha256"] = "0" * 64
    meta_path(out).write_text(json.dumps(meta))
    assert "another model" in rerun("--batch-size", "4")
    stamp = out.stat().st_mtime_ns
    assert "done" in rerun("--batch-size", "4", "--overwrite") and out.stat().st_mtime_ns > stamp


# -- shards in N processes ----------------------------------------------------------------------------
def test_n_shard_processes_equal_a_plain_analysis(model: Path, videos: list[Path], ref: Path, tmp_path: Path):
    """Three copies of one command, as a job array starts them, each with its share."""
    out = tmp_path / "out"
    base = cli("analyze", model, videos[0].parent, "--output-dir", out, "--chunk-frames", 20, "--batch-size",
               BATCH, "--csv", "-q", "--threads", 1)
    procs = [subprocess.Popen(base + ["--shard", f"{i}/3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "Traceback" not in stderr, stdout + stderr
    assert_same_results(ref, out)
    metas = {p.name: json.loads(p.read_text()) for p in out.glob("*_meta.json")}
    long = metas[f"b_long{SCORER}_meta.json"]
    assert long["chunks"]["count"] == 13 and long["frames_written"] == 300
    assert metas[f"c_damaged{SCORER}_meta.json"]["corrupt_frame_indices"] == [25]
    assert metas[f"d_truncated{SCORER}_meta.json"]["missing_frames"] == 37
    assert long["fingerprint"] == load_meta(ref / f"b_long{SCORER}.h5")["fingerprint"]  # the split is not in it
    again = subprocess.run(base + ["--shard", "1/3"], capture_output=True, text=True)
    assert again.returncode == 0 and "0 unit(s) analysed" in again.stdout


def test_chunks_in_one_process_equal_a_plain_analysis(model: Path, videos: list[Path], ref: Path, tmp_path: Path):
    job = Job(str(model), str(tmp_path / "out"), batch_size=BATCH, csv=True, threads=1)
    plan = make_plan(videos, chunk_frames=20, batch_size=BATCH)
    report = run_local(job, plan, progress=False, echo=lambda _line: None)
    assert report.ok and report.count("done") == len(plan) == 20
    assert_same_results(ref, tmp_path / "out")


# -- merge ---------------------------------------------------------------------------------------
def test_posezoo_merge_joins_chunks_and_names_what_is_missing(model: Path, videos: list[Path], ref: Path,
                                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "out"
    pose_model = PoseModel.load(model, device="cpu")
    video = videos[1]
    final = result_path(video, SCORER, out)
    plan = make_plan([video], chunk_frames=100, batch_size=BATCH)
    for unit in plan:  # chunks as shards leave them before any of them merged
        analyze_unit(pose_model, video, output=chunk_path(final, unit.start, unit.stop), frames=unit.frames,
                     batch_size=BATCH, progress=False)
    held = list_chunks(chunk_dir(final))
    assert [(c.start, c.stop) for c in held] == [(0, 104), (104, 208), (208, None)]
    aside = held[1].path.with_name("aside.h5")
    held[1].path.rename(aside)
    code = main(["merge", str(out)])
    assert code == 1 and "no chunk starts at frame 104" in capsys.readouterr().out and not final.exists()
    aside.rename(held[1].path)
    assert tiling(held)[0] == held
    assert main(["merge", str(out), "--csv"]) == 0
    assert not chunk_dir(final).exists()
    pd.testing.assert_frame_equal(pd.read_hdf(final), pd.read_hdf(ref / final.name), check_exact=True)
    assert final.with_suffix(".csv").read_bytes() == (ref / final.with_suffix(".csv").name).read_bytes()
    assert load_meta(final)["fingerprint"] == load_meta(ref / final.name)["fingerprint"]
    assert main(["analyze", str(model), str(video), "--output-dir", str(out), "-q"]) == 0  # a plain run skips it
    assert "skipped" in capsys.readouterr().out
    assert main(["merge", str(tmp_path / "absent")]) == 2


def test_finished_chunks_are_tidied_only_once_merged(model: Path, videos: list[Path], ref: Path, tmp_path: Path):
    """A worker whose finish pass comes between another's last chunk and that one's merge must
    leave the chunks alone (it once deleted them, and the video was never merged)."""
    job = Job(str(model), str(tmp_path / "out"), batch_size=BATCH, csv=True, threads=1)
    pose_model = job.load_model()
    video = videos[0]
    final = job.final(pose_model, video)
    plan = make_plan([video], chunk_frames=20, batch_size=BATCH)
    for unit in plan:  # every chunk finished, none merged: the other worker is just about to
        analyze_unit(pose_model, video, output=chunk_path(final, unit.start, unit.stop), frames=unit.frames,
                     batch_size=BATCH, progress=False)
    tidy(final, fingerprint(pose_model, video, batch_size=BATCH))
    assert len(list_chunks(chunk_dir(final))) == len(plan) == 2
    [state] = finish(job, plan)
    assert state.complete and not chunk_dir(final).exists()
    pd.testing.assert_frame_equal(pd.read_hdf(final), pd.read_hdf(ref / final.name), check_exact=True)


def test_command_line_errors_name_the_fix(model: Path, videos: list[Path], capsys: pytest.CaptureFixture[str]):
    assert main(["analyze", str(model), str(videos[0]), "--shard", "3/3"]) == 2
    assert "0 <= I < N" in capsys.readouterr().err
    assert main(["analyze", str(model), str(videos[0]), "--shard", "0/2", "--engine", "ray"]) == 2
    assert "leave out --shard" in capsys.readouterr().err


def test_the_light_install_imports_no_engine():
    code = ("import sys; import posezoo.runtime.scale, posezoo.runtime.scale.shard, posezoo.runtime.scale.rounds, "
            "posezoo.runtime.cli.scale; posezoo.runtime.cli.build_parser(); "
            "bad = {m.split('.')[0] for m in sys.modules} & {'ray', 'submitit', 'torch', 'tensorflow'}; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_results_analyzed_before_fingerprints_are_redone(model: Path, videos: list[Path], tmp_path: Path):
    out = analyze_video(model, videos[0], tmp_path, batch_size=BATCH, progress=False)
    meta = json.loads(meta_path(out).read_text())
    del meta["fingerprint"]
    meta_path(out).write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="no fingerprint is recorded"):
        analyze_video(model, videos[0], tmp_path, batch_size=BATCH, progress=False)
    assert "fingerprint" in load_meta(out)


def test_a_real_network_gives_the_same_bits_in_chunks(tmp_path: Path):
    """The built-in zoo model (a trained network, static-shape sessions, a last batch of 6 in a
    buffer of 8 that held other frames before) on a compressed video, in 4 chunks."""
    from posezoo.training.synthetic import make_project

    builtin = Path(__file__).parents[1] / "zoo" / "models" / "synthetic-mouse" / "1.0.0" / "synthetic-mouse.onnx"
    project = make_project(tmp_path / "project", n_frames=4, video_frames=150, image_size=(160, 128))
    video = project / "videos" / "mouse1.mp4"
    plain = analyze_video(builtin, video, tmp_path / "plain", batch_size=BATCH, csv=True, progress=False)
    job = Job(str(builtin), str(tmp_path / "chunks"), batch_size=BATCH, csv=True)
    report = run_local(job, make_plan([video], chunk_frames=40, batch_size=BATCH), progress=False,
                       echo=lambda _line: None)
    assert report.ok and report.count("done") == 4
    assert_same_results(plain.parent, tmp_path / "chunks")
