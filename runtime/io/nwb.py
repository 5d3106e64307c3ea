"""NWB (Neurodata Without Borders) with the ndx-pose extension.

pynwb and ndx-pose are an optional extra (``pip install "posezoo[nwb]"``), imported only here and
only when NWB is asked for. The layout is the one ndx-pose documents and that
``movement.io.load_poses.from_nwb_file`` reads: processing module "behavior" holding a
``Skeletons`` container and, per individual, a ``PoseEstimation`` (named "PoseEstimation" for a
single animal, "PoseEstimation_<individual>" otherwise; unique keypoints get their own under the
individual ``single``) with one ``PoseEstimationSeries`` per keypoint (x, y in pixels,
likelihood as confidence).
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import os
from pathlib import Path

import numpy as np

from ..files import atomic_output
from ..poses import SINGLE, UNIQUE_INDIVIDUAL, Poses, PosesError, skeleton_indices
from ..version import version

_PREFIX = "PoseEstimation"


class NWBUnavailable(RuntimeError):
    """pynwb / ndx-pose are not installed."""


def require_nwb() -> None:
    missing = [m for m in ("pynwb", "ndx_pose") if importlib.util.find_spec(m) is None]
    if missing:
        raise NWBUnavailable(f"NWB output needs {' and '.join(missing)}, which are not installed: "
                             'pip install "posezoo[nwb]"')


def write_nwb(poses: Poses, path: str | os.PathLike[str], *, fps: float,
              video: str | os.PathLike[str] | None = None, width: int | None = None, height: int | None = None,
              identifier: str | None = None, session_start_time: dt.datetime | None = None) -> Path:
    """Write ``poses`` (rows = consecutive video frames) to an NWB file, atomically.

    ``identifier`` (default: the video's stem) is what movement shows as a single animal's name;
    ``session_start_time`` defaults to the video file's modification time (NWB requires one).
    """
    require_nwb()
    from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeleton, Skeletons
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.image import ImageSeries

    if not fps or fps <= 0:
        raise PosesError(f"NWB needs the video's frame rate; got fps={fps!r}")
    video_path = Path(video) if video is not None else (Path(poses.video) if poses.video else None)
    if session_start_time is None:
        when = video_path.stat().st_mtime if video_path is not None and video_path.exists() else 0.0
        session_start_time = dt.datetime.fromtimestamp(when, tz=dt.timezone.utc)
    name = identifier or (video_path.stem if video_path is not None else Path(path).stem)
    nwbfile = NWBFile(session_description=f"pose estimation by posezoo ({poses.scorer})", identifier=name,
                      session_start_time=session_start_time)
    source = None
    if video_path is not None:
        source = ImageSeries(name="source_video", description="the analysed video (external file)",
                             unit="n.a.", external_file=[str(video_path)], format="external", starting_frame=[0],
                             num_samples=len(poses), rate=float(fps), dimension=[int(width or 0), int(height or 0)])
        nwbfile.add_acquisition(source)
    groups = [(ind, poses.keypoints, poses.coords[:, i]) for i, ind in enumerate(poses.individuals)]
    if poses.unique_keypoints:
        groups.append((UNIQUE_INDIVIDUAL, poses.unique_keypoints, poses.unique))
    skeletons, estimations = [], []
    for ind, names, coords in groups:
        coords = np.asarray(coords, dtype=np.float64)
        edges = np.array(skeleton_indices(names, [e for e in poses.skeleton if set(e) <= set(names)]),
                         dtype="uint8").reshape(-1, 2)
        skel = Skeleton(name=ind or "subject", nodes=list(names), edges=edges)
        series = [
            PoseEstimationSeries(
                name=str(kp), description=f"estimated position of {kp}", data=coords[:, k, :2], unit="pixels",
                reference_frame="(0, 0) is the centre of the top-left pixel of the video frame",
                confidence=coords[:, k, 2], confidence_definition="model score (DeepLabCut likelihood), 0..1",
                rate=float(fps), starting_time=0.0)
            for k, kp in enumerate(names)
        ]
        skeletons.append(skel)
        estimations.append(PoseEstimation(
            name=_PREFIX if ind == SINGLE else f"{_PREFIX}_{ind}", pose_estimation_series=series,
            description="2D keypoints", scorer=poses.scorer, source_software="posezoo",
            source_software_version=version(), skeleton=skel, source_video=source))
    behavior = nwbfile.create_processing_module(name="behavior", description="processed behavioural data")
    behavior.add(Skeletons(skeletons=skeletons))
    for estimation in estimations:
        behavior.add(estimation)
    with atomic_output(path, suffix=".nwb") as tmp:  # pynwb checks the ending
        with NWBHDF5IO(str(tmp), mode="w") as io:
            io.write(nwbfile)
    return Path(path)


def read_nwb(path: str | os.PathLike[str]) -> Poses:
    """The poses of an NWB file written as above (or by any tool that follows ndx-pose)."""
    require_nwb()
    import ndx_pose  # noqa: F401  (registers the extension's types for reading)
    from pynwb import NWBHDF5IO

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: NWB file not found")
    with NWBHDF5IO(str(p), mode="r") as io:
        nwbfile = io.read()
        behavior = nwbfile.processing.get("behavior")
        found = {name: obj for name, obj in (behavior.data_interfaces.items() if behavior else [])
                 if type(obj).__name__ == "PoseEstimation"}
        if not found:
            raise PosesError(f"{p}: no PoseEstimation in the 'behavior' processing module")
        groups = {}
        edges: list[tuple[str, str]] = []
        scorer = "posezoo"
        for name, estimation in found.items():
            ind = SINGLE if name == _PREFIX else name[len(_PREFIX) + 1:] if name.startswith(_PREFIX + "_") else name
            series = estimation.pose_estimation_series
            # series come back sorted by name; the skeleton's nodes keep the written order
            nodes = list(estimation.skeleton.nodes[:]) if estimation.skeleton is not None else []
            names = nodes if sorted(nodes) == sorted(series) else list(series)
            data = np.stack([np.column_stack([np.asarray(series[n].data[:], np.float64),
                                              np.asarray(series[n].confidence[:], np.float64)])
                             for n in names], axis=1)
            groups[ind] = (names, data)
            scorer = estimation.scorer or scorer
            if estimation.skeleton is not None:
                pairs = np.asarray(estimation.skeleton.edges[:]).reshape(-1, 2)
                edges += [e for e in ((nodes[a], nodes[b]) for a, b in pairs) if e not in edges]
    unique = groups.pop(UNIQUE_INDIVIDUAL, None) if len(groups) > 1 else None
    keypoints = next(iter(groups.values()))[0]
    if any(names != keypoints for names, _ in groups.values()):
        raise PosesError(f"{p}: individuals have different keypoints; posezoo reads one set per file")
    coords = np.stack([data for _, data in groups.values()], axis=1)
    return Poses(coords, keypoints, list(groups), unique=None if unique is None else unique[1],
                 unique_keypoints=[] if unique is None else unique[0], skeleton=edges, scorer=scorer)
