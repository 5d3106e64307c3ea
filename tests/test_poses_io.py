"""`Poses` and its files: every DeepLabCut table layout, video results, the streaming writer, NWB."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import posezoo.runtime.io.writer as writer_module
from posezoo.runtime.io import load_poses, save_poses
from posezoo.runtime.io.dlc import DLC_KEY, read_dlc, write_dlc
from posezoo.runtime.io.writer import ResultsWriter
from posezoo.runtime.poses import Poses, PosesError

KEYPOINTS = ["nose", "ear", "tail"]
IMAGES = ["labeled-data/a/img001.png", "labeled-data/a/img010.png", "labeled-data/b-2/img002.png"]


def _xy(n_ind: int = 1) -> np.ndarray:
    rng = np.random.default_rng(3)
    c = rng.uniform(0, 500, size=(len(IMAGES), n_ind, len(KEYPOINTS), 2))
    c[1, 0, 2] = np.nan  # an unlabeled keypoint
    return c


def _dlc_frame(xy: np.ndarray, index_style: str, individuals: list[str] | None) -> pd.DataFrame:
    """A CollectedData DataFrame built by hand the way DLC builds it (independent of our writer)."""
    if individuals is None:
        cols = pd.MultiIndex.from_product([["Jane"], KEYPOINTS, ["x", "y"]], names=["scorer", "bodyparts", "coords"])
    else:
        cols = pd.MultiIndex.from_product([["Jane"], individuals, KEYPOINTS, ["x", "y"]],
                                          names=["scorer", "individuals", "bodyparts", "coords"])
    if index_style == "legacy":
        index = pd.Index(IMAGES)
    elif index_style == "windows":
        index = pd.Index([p.replace("/", "\\") for p in IMAGES])
    else:
        index = pd.MultiIndex.from_tuples([tuple(p.split("/")) for p in IMAGES])
    return pd.DataFrame(xy.reshape(len(IMAGES), -1), index=index, columns=cols)


def _labels(xy: np.ndarray, individuals: list[str] | None = None) -> Poses:
    score = np.where(np.isfinite(xy[..., :1]), 1.0, np.nan)
    return Poses(np.concatenate([xy, score], -1), KEYPOINTS, individuals or [""], images=IMAGES, scorer="Jane",
                 kind="labels")


# (file name, index style, writer): every storage/index combination DLC tools produced
VARIANTS = [
    ("legacy_table.h5", "legacy", lambda df, p: df.to_hdf(p, key=DLC_KEY, format="table", mode="w")),
    ("legacy_fixed.h5", "legacy", lambda df, p: df.to_hdf(p, key=DLC_KEY, mode="w")),
    ("multi_fixed.h5", "multi", lambda df, p: df.to_hdf(p, key=DLC_KEY, mode="w")),
    ("napari.h5", "multi", lambda df, p: df.to_hdf(p, key="keypoints", mode="w")),
    ("windows_table.h5", "windows", lambda df, p: df.to_hdf(p, key=DLC_KEY, format="table", mode="w")),
    ("legacy.csv", "legacy", lambda df, p: df.to_csv(p)),
    ("multi.csv", "multi", lambda df, p: df.to_csv(p)),
]


@pytest.mark.parametrize("individuals", [None, ["mouse1", "mouse2"]], ids=["single", "multi_animal"])
def test_every_dlc_layout_reads_identically(tmp_path: Path, individuals: list[str] | None) -> None:
    xy = _xy(1 if individuals is None else 2)
    for name, style, write in VARIANTS:
        path = tmp_path / name
        write(_dlc_frame(xy, style, individuals), path)
        p = load_poses(path)
        assert p.images == IMAGES and p.keypoints == KEYPOINTS and p.scorer == "Jane", name
        assert p.kind == "labels" and p.single_animal is (individuals is None), name
        assert p.individuals == (individuals or [""]), name
        assert p.coords.dtype == np.float64
        np.testing.assert_array_equal(p.xy, xy, err_msg=name)  # NaN == NaN here
        np.testing.assert_array_equal(np.isnan(p.scores), np.isnan(xy[..., 0]))  # score 1 where labeled
        assert np.all(p.scores[np.isfinite(p.scores)] == 1)


def test_write_labels_matches_dlc_layout(tmp_path: Path) -> None:
    xy = _xy()
    for style in ("legacy", "multi"):
        out = write_dlc(_labels(xy), tmp_path / style / "CollectedData_Jane.h5", index_style=style, csv=True)
        pd.testing.assert_frame_equal(pd.read_hdf(out, DLC_KEY), _dlc_frame(xy, style, None))
        with pd.HDFStore(out, "r") as store:
            assert store.keys() == [f"/{DLC_KEY}"]
            assert store.get_storer(DLC_KEY).is_table is (style == "legacy")
        back = load_poses(out.with_suffix(".csv"))
        np.testing.assert_array_equal(back.xy, xy)
        assert back.images == IMAGES
    assert not [p for p in tmp_path.rglob(".*tmp")], "temporary files left behind"


def test_multi_animal_labels_with_unique_keypoints_roundtrip(tmp_path: Path) -> None:
    """DeepLabCut's multi-animal CollectedData: unique bodyparts live under the individual
    'single'; napari-deeplabcut writes the key 'keypoints'; animals can be partly labelled."""
    xy = _xy(2)
    xy[2, 1] = np.nan  # a frame with one animal fewer
    cols = [("Jane", ind, k, c) for ind in ("m1", "m2") for k in KEYPOINTS for c in ("x", "y")]
    cols += [("Jane", "single", "led", c) for c in ("x", "y")]
    values = np.concatenate([xy.reshape(3, -1), [[10, 20], [np.nan, np.nan], [30, 40]]], axis=1)
    df = pd.DataFrame(values, index=pd.MultiIndex.from_tuples([tuple(p.split("/")) for p in IMAGES]),
                      columns=pd.MultiIndex.from_tuples(cols, names=["scorer", "individuals", "bodyparts", "coords"]))
    df.to_hdf(tmp_path / "CollectedData_Jane.h5", key="keypoints", mode="w")
    p = load_poses(tmp_path / "CollectedData_Jane.h5")
    assert p.individuals == ["m1", "m2"] and p.keypoints == KEYPOINTS and p.unique_keypoints == ["led"]
    np.testing.assert_array_equal(p.xy, xy)
    np.testing.assert_array_equal(p.unique[:, 0, :2], [[10, 20], [np.nan, np.nan], [30, 40]])
    out = save_poses(p, tmp_path / "back.h5", index_style="multi")
    pd.testing.assert_frame_equal(pd.read_hdf(out), df, check_exact=True)
    sub = p.select(keypoints=["tail", "led"], individuals=["m2"])
    assert sub.keypoints == ["tail"] and sub.unique_keypoints == ["led"] and sub.individuals == ["m2"]
    np.testing.assert_array_equal(sub.xy[:, 0, 0], xy[:, 1, 2])


def test_poses_slicing_selection_and_checks() -> None:
    p = _labels(_xy(2), ["a", "b"])
    assert len(p[1:]) == 2 and p[1:].images == IMAGES[1:]
    assert p[2].images == [IMAGES[2]] and p[[2, 0]].images == [IMAGES[2], IMAGES[0]]
    np.testing.assert_array_equal(p[np.array([False, True, True])].coords, p.coords[1:])
    both = Poses.concat([p[:1], p[1:]])
    np.testing.assert_array_equal(both.coords, p.coords)
    assert both.images == IMAGES
    video = Poses.empty(5, KEYPOINTS)
    assert list(video[3:].frame_numbers()) == [3, 4]
    with pytest.raises(PosesError, match=r"expected \(frames, individuals, keypoints, 3\)"):
        Poses(np.zeros((2, 1, 2, 3)), KEYPOINTS)
    with pytest.raises(PosesError, match="duplicate keypoints"):
        Poses(np.zeros((2, 1, 2, 3)), ["a", "a"])
    with pytest.raises(PosesError, match=r"keypoints \['paw'\] are not among"):
        Poses(np.zeros((2, 1, 3, 3)), KEYPOINTS, skeleton=[("nose", "paw")])
    with pytest.raises(PosesError, match=r"individuals \['c'\]"):
        p.select(individuals=["c"])


def test_openfield_h5_and_csv_agree(openfield_dir: Path) -> None:
    folder = openfield_dir / "labeled-data" / "m4s1"
    h5 = read_dlc(folder / "CollectedData_Pranav.h5")
    csv = read_dlc(folder / "CollectedData_Pranav.csv")
    assert h5.images == csv.images and len(h5) == 116
    assert h5.keypoints == ["snout", "leftear", "rightear", "tailbase"]
    np.testing.assert_array_equal(h5.coords, csv.coords)
    np.testing.assert_allclose(h5.xy[0, 0, 0], [21.521, 265.428])


# --------------------------------------------------------------------------- results


def _dlc_results_frame(pred: np.ndarray, scorer: str, individuals: list[str] | None) -> pd.DataFrame:
    """What DLC's analyze_videos (create_df_from_prediction) builds before df.to_hdf."""
    levels = [[scorer], KEYPOINTS, ["x", "y", "likelihood"]]
    names = ["scorer", "bodyparts", "coords"]
    if individuals is not None:
        levels.insert(1, individuals)
        names.insert(1, "individuals")
    cols = pd.MultiIndex.from_product(levels, names=names)
    return pd.DataFrame(pred.reshape(len(pred), -1), columns=cols, index=range(len(pred)))


def _results(pred: np.ndarray, scorer: str = "S", individuals: list[str] | None = None) -> Poses:
    return Poses(pred if pred.ndim == 4 else pred[:, None], KEYPOINTS, individuals or [""], scorer=scorer)


@pytest.mark.parametrize("individuals", [None, ["m1", "m2"]], ids=["single", "multi_animal"])
def test_write_results_reads_like_dlc_output(tmp_path: Path, individuals: list[str] | None) -> None:
    shape = (7, len(KEYPOINTS), 3) if individuals is None else (7, 2, len(KEYPOINTS), 3)
    pred = np.random.default_rng(0).random(shape).astype(np.float32)  # float32 in, float64 out
    pred[2, ..., 0, :2] = np.nan
    scorer = "DLC_resnet50_testJan1shuffle1_1000"
    dlc_file = tmp_path / "dlc.h5"
    _dlc_results_frame(pred.astype(np.float64), scorer, individuals).to_hdf(dlc_file, key=DLC_KEY, format="table",
                                                                          mode="w")
    ours = save_poses(_results(pred, scorer, individuals), tmp_path / "ours.h5", csv=True)
    theirs_df, ours_df = pd.read_hdf(dlc_file), pd.read_hdf(ours)
    pd.testing.assert_frame_equal(ours_df, theirs_df, check_exact=True)
    assert ours_df.index.name is None and (ours_df.dtypes == np.float64).all()
    with pd.HDFStore(ours, "r") as store:
        assert store.keys() == ["/df_with_missing"] and store.get_storer(DLC_KEY).is_table
    res = load_poses(ours)
    assert res.kind == "predictions" and res.scorer == scorer and res.keypoints == KEYPOINTS
    assert res.individuals == (individuals or [""]) and list(res.frame_numbers()) == list(range(7))
    np.testing.assert_array_equal(res.coords.reshape(shape), pred.astype(np.float64))
    res_csv = load_poses(ours.with_suffix(".csv"))
    np.testing.assert_array_equal(res_csv.coords, res.coords)
    first = [line.split(",")[0] for line in ours.with_suffix(".csv").read_text().splitlines()[:5]]
    assert first == (["scorer", "bodyparts", "coords", "0", "1"] if individuals is None
                     else ["scorer", "individuals", "bodyparts", "coords", "0"])


def test_results_load_in_movement_like_dlc(tmp_path: Path) -> None:
    movement = pytest.importorskip("movement.io.load_poses")
    pred = np.random.default_rng(1).random((5, len(KEYPOINTS), 3))
    _dlc_results_frame(pred, "DLC_x", None).to_hdf(tmp_path / "dlc.h5", key=DLC_KEY, format="table", mode="w")
    ours = save_poses(_results(pred, "DLC_x"), tmp_path / "ours.h5", csv=True)
    ref = movement.from_dlc_file(tmp_path / "dlc.h5", fps=30)
    for f in (ours, ours.with_suffix(".csv")):
        ds = movement.from_dlc_file(f, fps=30)
        np.testing.assert_allclose(ds.position.values, ref.position.values)
        assert list(ds.keypoints.values) == KEYPOINTS


def test_results_writer_streams_same_file(tmp_path: Path) -> None:
    pred = np.random.default_rng(2).random((23, 2, len(KEYPOINTS), 3))
    poses = _results(pred, individuals=["m1", "m2"])
    whole = save_poses(poses, tmp_path / "whole.h5", csv=True)
    out = tmp_path / "stream.h5"
    with ResultsWriter(out, poses, csv=True) as w:
        for start in range(0, 23, 5):
            w.append(poses[start:start + 5])
        w.append(poses[:0])  # empty chunks are harmless
        assert w.frames_written == 23 and w.partial_path.exists() and not out.exists()
    assert out.exists() and not w.partial_path.exists()
    pd.testing.assert_frame_equal(pd.read_hdf(out), pd.read_hdf(whole), check_exact=True)
    assert out.with_suffix(".csv").read_text() == whole.with_suffix(".csv").read_text()


def test_results_writer_csv_streams_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "_CSV_CHUNK_ROWS", 4)  # force several CSV chunks
    poses = _results(np.random.default_rng(5).random((11, len(KEYPOINTS), 3)))
    whole = save_poses(poses, tmp_path / "whole.h5", csv=True)
    with ResultsWriter(tmp_path / "s.h5", poses, csv=True) as w:
        w.append(poses)
    assert (tmp_path / "s.csv").read_text() == whole.with_suffix(".csv").read_text()


def test_results_writer_abort_and_exception(tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    layout = Poses.empty(0, KEYPOINTS)
    w = ResultsWriter(out, layout)
    w.append(Poses.empty(3, KEYPOINTS))
    w.abort()
    assert not out.exists() and not w.partial_path.exists()
    with pytest.raises(RuntimeError, match="boom"):
        with ResultsWriter(out, layout, csv=True) as w:
            w.append(Poses.empty(3, KEYPOINTS))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(PosesError, match="differ from the table's"):
        with ResultsWriter(out, layout) as w:
            w.append(Poses.empty(3, KEYPOINTS[:2]))
    assert list(tmp_path.iterdir()) == []


def test_results_writer_resume(tmp_path: Path) -> None:
    poses = _results(np.random.default_rng(4).random((30, len(KEYPOINTS), 3)))
    out = tmp_path / "r.h5"
    with pytest.raises(KeyboardInterrupt):
        with ResultsWriter(out, poses, keep_partial=True) as w:
            w.append(poses[:10])
            w.append(poses[10:17])
            raise KeyboardInterrupt
    assert not out.exists() and w.partial_path.exists()
    with pytest.raises(PosesError, match="different columns"):
        ResultsWriter(out, Poses.empty(0, ["other"], scorer="S"), resume=True)
    w2 = ResultsWriter(out, poses, resume=True, csv=True)
    assert w2.frames_written == 17
    w2.append(poses[w2.frames_written:])
    w2.close()
    got = load_poses(out)
    np.testing.assert_array_equal(got.coords, poses.coords)
    assert list(got.frame_numbers()) == list(range(30))
    assert len(load_poses(out.with_suffix(".csv"))) == 30
    fresh = ResultsWriter(tmp_path / "new.h5", poses, resume=True)  # nothing to resume: fresh
    assert fresh.frames_written == 0
    fresh.abort()


def test_results_writer_zero_frames(tmp_path: Path) -> None:
    with ResultsWriter(tmp_path / "e.h5", Poses.empty(0, KEYPOINTS, scorer="S"), csv=True):
        pass
    res = load_poses(tmp_path / "e.h5")
    assert res.coords.shape == (0, 1, 3, 3) and res.keypoints == KEYPOINTS
    assert len(load_poses(tmp_path / "e.csv")) == 0


def test_results_writer_memory_stays_flat(tmp_path: Path) -> None:
    chunk = _results(np.random.default_rng(0).random((200, len(KEYPOINTS), 3)))  # 57.6 kB per chunk
    tracemalloc.start()
    try:
        with ResultsWriter(tmp_path / "big.h5", chunk, expected_frames=70_000) as w:
            for _ in range(30):
                w.append(chunk)
            warm = tracemalloc.get_traced_memory()[0]
            for _ in range(300):  # 17 MB more data; holding it would show up here
                w.append(chunk)
            grown = tracemalloc.get_traced_memory()[0] - warm
    finally:
        tracemalloc.stop()
    assert grown < 2_000_000, f"memory grew by {grown} bytes over 60000 frames"
    assert len(load_poses(tmp_path / "big.h5")) == 66_000


def test_nwb_roundtrip_single_and_multi_animal(tmp_path: Path) -> None:
    pytest.importorskip("pynwb")
    pytest.importorskip("ndx_pose")
    pred = np.random.default_rng(6).random((9, 2, len(KEYPOINTS), 3))
    multi = Poses(pred, KEYPOINTS, ["m1", "m2"], unique=np.random.default_rng(7).random((9, 1, 3)),
                  unique_keypoints=["led"], skeleton=[("nose", "ear"), ("ear", "tail")], scorer="S")
    back = load_poses(save_poses(multi, tmp_path / "m.nwb", fps=30.0))
    assert back.individuals == ["m1", "m2"] and back.keypoints == KEYPOINTS and back.unique_keypoints == ["led"]
    np.testing.assert_array_equal(back.coords, multi.coords)
    np.testing.assert_array_equal(back.unique, multi.unique)
    assert back.skeleton == multi.skeleton and back.scorer == "S"
    single = multi.select(individuals=["m2"], keypoints=KEYPOINTS)
    single.individuals = [""]
    back = load_poses(save_poses(single, tmp_path / "s.nwb", fps=30.0))
    assert back.single_animal
    np.testing.assert_array_equal(back.coords, single.coords)


# --------------------------------------------------------------------------- errors


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.h5.*not found"):
        load_poses(tmp_path / "nope.h5")
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        load_poses(tmp_path / "nope.csv")

    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not hdf5")
    with pytest.raises(PosesError, match=r"garbage\.h5: not a readable HDF5"):
        load_poses(garbage)

    flat = tmp_path / "flat.h5"
    pd.DataFrame({"x": [1.0], "y": [2.0]}).to_hdf(flat, key=DLC_KEY, mode="w")
    with pytest.raises(PosesError, match=r"flat\.h5: not a DeepLabCut table"):
        load_poses(flat)

    two = tmp_path / "two.h5"
    pd.DataFrame({"x": [1.0]}).to_hdf(two, key="a", mode="w")
    pd.DataFrame({"x": [1.0]}).to_hdf(two, key="b")
    with pytest.raises(PosesError, match=r"two\.h5: no DeepLabCut table.*a, b"):
        load_poses(two)

    wrong_levels = tmp_path / "levels.h5"
    df = _dlc_frame(_xy(), "legacy", None)
    df.columns = df.columns.set_names(["scorer", "parts", "coords"])
    df.to_hdf(wrong_levels, key=DLC_KEY, mode="w")
    with pytest.raises(PosesError, match=r"levels\.h5: wrong column levels"):
        load_poses(wrong_levels)

    dup = tmp_path / "dup.h5"
    twice = _dlc_frame(_xy(), "legacy", None)
    twice.index = pd.Index([IMAGES[0]] * 3)
    twice.to_hdf(dup, key=DLC_KEY, mode="w")
    with pytest.raises(PosesError, match=r"dup\.h5: duplicate images"):
        load_poses(dup)

    not_dlc_csv = tmp_path / "plain.csv"
    not_dlc_csv.write_text("frame,x,y\n0,1,2\n")
    with pytest.raises(PosesError, match=r"plain\.csv: not a DeepLabCut CSV"):
        load_poses(not_dlc_csv)

    bad_values = tmp_path / "bad.csv"
    df.columns = df.columns.set_names(["scorer", "bodyparts", "coords"])
    df.astype(object).map(lambda v: "oops" if v == df.iloc[0, 0] else v).to_csv(bad_values)
    with pytest.raises(PosesError, match=r"bad\.csv: non-numeric"):
        load_poses(bad_values)

    with pytest.raises(PosesError, match=r"\.txt"):
        (tmp_path / "t.txt").write_text("x")
        load_poses(tmp_path / "t.txt")
