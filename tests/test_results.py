"""DLC table I/O: labeled-data tables in every layout DLC produced, and video results."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from posezoo.runtime.results import (
    DLC_KEY,
    DLCTableError,
    LabeledTable,
    ResultsWriter,
    read_labeled_table,
    read_results,
    write_labeled_table,
    write_results,
)

BODYPARTS = ["nose", "ear", "tail"]
IMAGES = [
    "labeled-data/a/img001.png",
    "labeled-data/a/img010.png",
    "labeled-data/b-2/img002.png",
]


def _coords(n_ind: int = 1) -> np.ndarray:
    rng = np.random.default_rng(3)
    c = rng.uniform(0, 500, size=(len(IMAGES), n_ind, len(BODYPARTS), 2))
    c[1, 0, 2] = np.nan  # an unlabeled keypoint
    return c


def _dlc_frame(coords: np.ndarray, index_style: str, individuals: list[str] | None) -> pd.DataFrame:
    """A CollectedData DataFrame built by hand the way DLC builds it (independent of our writer)."""
    if individuals is None:
        cols = pd.MultiIndex.from_product([["Jane"], BODYPARTS, ["x", "y"]],
                                          names=["scorer", "bodyparts", "coords"])
    else:
        cols = pd.MultiIndex.from_product([["Jane"], individuals, BODYPARTS, ["x", "y"]],
                                          names=["scorer", "individuals", "bodyparts", "coords"])
    if index_style == "legacy":
        index = pd.Index(IMAGES)
    elif index_style == "windows":
        index = pd.Index([p.replace("/", "\\") for p in IMAGES])
    else:
        index = pd.MultiIndex.from_tuples([tuple(p.split("/")) for p in IMAGES])
    return pd.DataFrame(coords.reshape(len(IMAGES), -1), index=index, columns=cols)


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
    coords = _coords(1 if individuals is None else 2)
    for name, style, write in VARIANTS:
        path = tmp_path / name
        write(_dlc_frame(coords, style, individuals), path)
        t = read_labeled_table(path)
        assert t.images == IMAGES, name
        assert t.bodyparts == BODYPARTS, name
        assert t.scorer == "Jane", name
        assert t.multi_animal is (individuals is not None), name
        assert t.individuals == (individuals or ["single"]), name
        assert t.coords.dtype == np.float64
        np.testing.assert_array_equal(t.coords, coords, err_msg=name)  # NaN == NaN here


def test_write_labeled_table_matches_dlc_layout(tmp_path: Path) -> None:
    coords = _coords()
    table = LabeledTable(images=IMAGES, bodyparts=BODYPARTS, individuals=["single"],
                         scorer="Jane", coords=coords)
    for style in ("legacy", "multi"):
        out = write_labeled_table(tmp_path / style / "CollectedData_Jane.h5", table, index_style=style)
        expected = _dlc_frame(coords, style, None)
        pd.testing.assert_frame_equal(pd.read_hdf(out, DLC_KEY), expected)
        with pd.HDFStore(out, "r") as store:
            assert store.keys() == [f"/{DLC_KEY}"]
            assert store.get_storer(DLC_KEY).is_table is (style == "legacy")
        back = read_labeled_table(out.with_suffix(".csv"))
        np.testing.assert_array_equal(back.coords, coords)
        assert back.images == IMAGES
    assert not [p for p in tmp_path.rglob(".*tmp")], "temporary files left behind"


def test_write_labeled_multi_animal_roundtrip(tmp_path: Path) -> None:
    coords = _coords(2)
    table = LabeledTable(images=IMAGES, bodyparts=BODYPARTS, individuals=["m1", "m2"],
                         scorer="Jane", coords=coords)
    out = write_labeled_table(tmp_path / "CollectedData_Jane.h5", table, index_style="multi")
    assert list(pd.read_hdf(out).columns.names) == ["scorer", "individuals", "bodyparts", "coords"]
    back = read_labeled_table(out)
    assert back.individuals == ["m1", "m2"] and back.multi_animal
    np.testing.assert_array_equal(back.coords, coords)


def test_reorder_to_config_order(tmp_path: Path) -> None:
    coords = _coords()
    path = tmp_path / "t.h5"
    _dlc_frame(coords, "legacy", None).to_hdf(path, key=DLC_KEY, mode="w")
    t = read_labeled_table(path, bodyparts=["tail", "nose", "ear"])
    assert t.bodyparts == ["tail", "nose", "ear"]
    np.testing.assert_array_equal(t.coords[:, :, 0], coords[:, :, 2])
    np.testing.assert_array_equal(t.coords[:, :, 1], coords[:, :, 0])
    with pytest.raises(DLCTableError, match=r"t\.h5.*missing bodyparts \['paw'\]"):
        read_labeled_table(path, bodyparts=["tail", "nose", "ear", "paw"])
    with pytest.raises(DLCTableError, match=r"not in the requested list \['ear'\]"):
        read_labeled_table(path, bodyparts=["tail", "nose"])
    assert read_labeled_table(path).reorder(["nose"], allow_extra=True).coords.shape == (3, 1, 1, 2)


def test_openfield_h5_and_csv_agree(openfield_dir: Path) -> None:
    folder = openfield_dir / "labeled-data" / "m4s1"
    h5 = read_labeled_table(folder / "CollectedData_Pranav.h5")
    csv = read_labeled_table(folder / "CollectedData_Pranav.csv")
    assert h5.images == csv.images and len(h5.images) == 116
    assert h5.bodyparts == ["snout", "leftear", "rightear", "tailbase"]
    np.testing.assert_array_equal(h5.coords, csv.coords)
    np.testing.assert_allclose(h5.coords[0, 0, 0], [21.521, 265.428])


# --------------------------------------------------------------------------- results


def _dlc_results_frame(pred: np.ndarray, scorer: str, individuals: list[str] | None) -> pd.DataFrame:
    """What DLC's analyze_videos (create_df_from_prediction) builds before df.to_hdf."""
    levels = [[scorer], BODYPARTS, ["x", "y", "likelihood"]]
    names = ["scorer", "bodyparts", "coords"]
    if individuals is not None:
        levels.insert(1, individuals)
        names.insert(1, "individuals")
    cols = pd.MultiIndex.from_product(levels, names=names)
    return pd.DataFrame(pred.reshape(len(pred), -1), columns=cols, index=range(len(pred)))


@pytest.mark.parametrize("individuals", [None, ["m1", "m2"]], ids=["single", "multi_animal"])
def test_write_results_reads_like_dlc_output(tmp_path: Path, individuals: list[str] | None) -> None:
    shape = (7, len(BODYPARTS), 3) if individuals is None else (7, 2, len(BODYPARTS), 3)
    pred = np.random.default_rng(0).random(shape).astype(np.float32)  # float32 in, float64 out
    pred[2, ..., 0, :2] = np.nan
    scorer = "DLC_resnet50_testJan1shuffle1_1000"
    dlc_file = tmp_path / "dlc.h5"
    _dlc_results_frame(pred.astype(np.float64), scorer, individuals).to_hdf(
        dlc_file, key="df_with_missing", format="table", mode="w")
    ours = write_results(tmp_path / "ours.h5", pred, BODYPARTS, scorer, individuals, csv=True)
    theirs_df, ours_df = pd.read_hdf(dlc_file), pd.read_hdf(ours)
    pd.testing.assert_frame_equal(ours_df, theirs_df)  # columns, levels, names, index, dtypes
    assert ours_df.index.name is None and (ours_df.dtypes == np.float64).all()
    with pd.HDFStore(ours, "r") as store:
        assert store.keys() == ["/df_with_missing"] and store.get_storer(DLC_KEY).is_table

    res = read_results(ours)
    assert res.coords.shape == shape and res.individuals == individuals
    assert res.scorer == scorer and res.bodyparts == BODYPARTS
    np.testing.assert_array_equal(res.coords, pred.astype(np.float64))
    res_csv = read_results(ours.with_suffix(".csv"))
    np.testing.assert_allclose(res_csv.coords, res.coords, rtol=0, atol=0)
    first = [line.split(",")[0] for line in ours.with_suffix(".csv").read_text().splitlines()[:5]]
    assert first == (["scorer", "bodyparts", "coords", "0", "1"] if individuals is None
                     else ["scorer", "individuals", "bodyparts", "coords", "0"])


def test_results_load_in_movement_like_dlc(tmp_path: Path) -> None:
    load_poses = pytest.importorskip("movement.io.load_poses")
    pred = np.random.default_rng(1).random((5, len(BODYPARTS), 3))
    scorer = "DLC_x"
    _dlc_results_frame(pred, scorer, None).to_hdf(tmp_path / "dlc.h5", key="df_with_missing",
                                                  format="table", mode="w")
    ours = write_results(tmp_path / "ours.h5", pred, BODYPARTS, scorer, csv=True)
    ref = load_poses.from_dlc_file(tmp_path / "dlc.h5", fps=30)
    for f in (ours, ours.with_suffix(".csv")):
        ds = load_poses.from_dlc_file(f, fps=30)
        np.testing.assert_allclose(ds.position.values, ref.position.values)
        assert list(ds.keypoints.values) == BODYPARTS


def test_results_writer_streams_same_file(tmp_path: Path) -> None:
    pred = np.random.default_rng(2).random((23, 2, len(BODYPARTS), 3))
    whole = write_results(tmp_path / "whole.h5", pred, BODYPARTS, "S", ["m1", "m2"], csv=True)
    out = tmp_path / "stream.h5"
    with ResultsWriter(out, BODYPARTS, "S", ["m1", "m2"], csv=True) as w:
        for start in range(0, 23, 5):
            w.append(pred[start:start + 5])
        w.append(pred[:0])  # empty chunks are harmless
        assert w.frames_written == 23 and w.partial_path.exists() and not out.exists()
    assert out.exists() and not w.partial_path.exists()
    pd.testing.assert_frame_equal(pd.read_hdf(out), pd.read_hdf(whole))
    assert out.with_suffix(".csv").read_text() == whole.with_suffix(".csv").read_text()


def test_results_writer_csv_streams_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import posezoo.runtime.results as results

    monkeypatch.setattr(results, "_CSV_CHUNK_ROWS", 4)  # force several CSV chunks
    pred = np.random.default_rng(5).random((11, len(BODYPARTS), 3))
    whole = write_results(tmp_path / "whole.h5", pred, BODYPARTS, "S", csv=True)
    with ResultsWriter(tmp_path / "s.h5", BODYPARTS, "S", csv=True) as w:
        w.append(pred)
    assert (tmp_path / "s.csv").read_text() == whole.with_suffix(".csv").read_text()


def test_results_writer_abort_and_exception(tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    w = ResultsWriter(out, BODYPARTS, "S")
    w.append(np.zeros((3, 3, 3)))
    w.abort()
    assert not out.exists() and not w.partial_path.exists()
    with pytest.raises(RuntimeError, match="boom"):
        with ResultsWriter(out, BODYPARTS, "S", csv=True) as w:
            w.append(np.zeros((3, 3, 3)))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"coords shape \(3, 2, 3\)"):
        with ResultsWriter(out, BODYPARTS, "S") as w:
            w.append(np.zeros((3, 2, 3)))
    assert list(tmp_path.iterdir()) == []


def test_results_writer_resume(tmp_path: Path) -> None:
    pred = np.random.default_rng(4).random((30, len(BODYPARTS), 3))
    out = tmp_path / "r.h5"
    with pytest.raises(KeyboardInterrupt):
        with ResultsWriter(out, BODYPARTS, "S", keep_partial=True) as w:
            w.append(pred[:10])
            w.append(pred[10:17])
            raise KeyboardInterrupt
    assert not out.exists() and w.partial_path.exists()
    with pytest.raises(DLCTableError, match="different columns"):
        ResultsWriter.resume(out, ["other"], "S")
    w2 = ResultsWriter.resume(out, BODYPARTS, "S", csv=True)
    assert w2.frames_written == 17
    w2.append(pred[w2.frames_written:])
    w2.close()
    got = read_results(out)
    np.testing.assert_array_equal(got.coords, pred)
    assert list(got.df.index) == list(range(30))
    assert read_results(out.with_suffix(".csv")).n_frames == 30
    # resume with nothing to resume starts fresh; without resume a stale partial is discarded
    fresh = ResultsWriter.resume(tmp_path / "new.h5", BODYPARTS, "S")
    assert fresh.frames_written == 0
    fresh.abort()


def test_results_writer_zero_frames(tmp_path: Path) -> None:
    with ResultsWriter(tmp_path / "e.h5", BODYPARTS, "S", csv=True):
        pass
    res = read_results(tmp_path / "e.h5")
    assert res.coords.shape == (0, 3, 3) and res.bodyparts == BODYPARTS
    assert read_results(tmp_path / "e.csv").n_frames == 0


def test_results_writer_memory_stays_flat(tmp_path: Path) -> None:
    chunk = np.random.default_rng(0).random((200, len(BODYPARTS), 3))  # 57.6 kB per chunk
    tracemalloc.start()
    try:
        with ResultsWriter(tmp_path / "big.h5", BODYPARTS, "S", expected_frames=70_000) as w:
            for _ in range(30):
                w.append(chunk)
            warm = tracemalloc.get_traced_memory()[0]
            for _ in range(300):  # 17 MB more data; holding it would show up here
                w.append(chunk)
            grown = tracemalloc.get_traced_memory()[0] - warm
    finally:
        tracemalloc.stop()
    assert grown < 2_000_000, f"memory grew by {grown} bytes over 60000 frames"
    assert read_results(tmp_path / "big.h5").n_frames == 66_000


# --------------------------------------------------------------------------- errors


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.h5.*not found"):
        read_labeled_table(tmp_path / "nope.h5")
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        read_results(tmp_path / "nope.csv")

    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not hdf5")
    with pytest.raises(DLCTableError, match=r"garbage\.h5: not a readable HDF5"):
        read_labeled_table(garbage)

    flat = tmp_path / "flat.h5"
    pd.DataFrame({"x": [1.0], "y": [2.0]}).to_hdf(flat, key=DLC_KEY, mode="w")
    with pytest.raises(DLCTableError, match=r"flat\.h5: not a DeepLabCut table"):
        read_labeled_table(flat)

    two = tmp_path / "two.h5"
    pd.DataFrame({"x": [1.0]}).to_hdf(two, key="a", mode="w")
    pd.DataFrame({"x": [1.0]}).to_hdf(two, key="b")
    with pytest.raises(DLCTableError, match=r"two\.h5: no DeepLabCut table.*a, b"):
        read_results(two)

    wrong_levels = tmp_path / "levels.h5"
    df = _dlc_frame(_coords(), "legacy", None)
    df.columns = df.columns.set_names(["scorer", "parts", "coords"])
    df.to_hdf(wrong_levels, key=DLC_KEY, mode="w")
    with pytest.raises(DLCTableError, match=r"levels\.h5: wrong column levels"):
        read_labeled_table(wrong_levels)

    labels_only = tmp_path / "labels.h5"
    _dlc_frame(_coords(), "legacy", None).to_hdf(labels_only, key=DLC_KEY, mode="w")
    with pytest.raises(DLCTableError, match=r"labels\.h5: wrong columns.*\['likelihood'\]"):
        read_results(labels_only)

    not_dlc_csv = tmp_path / "plain.csv"
    not_dlc_csv.write_text("frame,x,y\n0,1,2\n")
    with pytest.raises(DLCTableError, match=r"plain\.csv: not a DeepLabCut CSV"):
        read_results(not_dlc_csv)

    bad_values = tmp_path / "bad.csv"
    df.columns = df.columns.set_names(["scorer", "bodyparts", "coords"])
    df.astype(object).map(lambda v: "oops" if v == df.iloc[0, 0] else v).to_csv(bad_values)
    with pytest.raises(DLCTableError, match=r"bad\.csv: non-numeric"):
        read_labeled_table(bad_values)

    with pytest.raises(DLCTableError, match=r"\.txt"):
        (tmp_path / "t.txt").write_text("x")
        read_labeled_table(tmp_path / "t.txt")
