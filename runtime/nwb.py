"""Video results as NWB (Neurodata Without Borders) with the ndx-pose extension.

pynwb and ndx-pose are an optional extra (``pip install "posezoo[nwb]"``) and are imported only
here, only when NWB output is asked for. The layout is the one ndx-pose documents and that
``movement.io.load_poses.from_nwb_file`` reads: processing module "behavior" holding a
``Skeletons`` container and a ``PoseEstimation`` named "PoseEstimation" with one
``PoseEstimationSeries`` per bodypart (x, y in pixels, likelihood as confidence).
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .files import atomic_output
from .results import read_results


class NWBUnavailable(RuntimeError):
    """pynwb / ndx-pose are not installed."""


def require_nwb() -> None:
    missing = [m for m in ("pynwb", "ndx_pose") if importlib.util.find_spec(m) is None]
    if missing:
        raise NWBUnavailable(f"NWB output needs {' and '.join(missing)}, which are not installed: "
                             'pip install "posezoo[nwb]"')


def write_nwb(path: str | os.PathLike[str], coords: np.ndarray, bodyparts: Sequence[str], *, fps: float,
              scorer: str, skeleton: Sequence[Sequence[str]] = (), video: str | os.PathLike[str] | None = None,
              width: int | None = None, height: int | None = None, identifier: str | None = None,
              session_start_time: dt.datetime | None = None) -> Path:
    """Write (T, K, 3) x, y, likelihood to an NWB file, atomically.

    ``identifier`` (default: the video's stem) is what movement shows as the individual's name;
    ``session_start_time`` defaults to the video file's modification time (NWB requires one).
    """
    require_nwb()
    from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeleton, Skeletons
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.image import ImageSeries

    from .cli import version

    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 3 or coords.shape[1:] != (len(bodyparts), 3):
        raise ValueError(f"coords shape {coords.shape} does not match (frames, {len(bodyparts)} bodyparts, 3)")
    if not fps or fps <= 0:
        raise ValueError(f"NWB needs the video's frame rate; got fps={fps!r}")
    video_path = Path(video) if video is not None else None
    if session_start_time is None:
        when = video_path.stat().st_mtime if video_path is not None and video_path.exists() else 0.0
        session_start_time = dt.datetime.fromtimestamp(when, tz=dt.timezone.utc)
    name = identifier or (video_path.stem if video_path is not None else Path(path).stem)
    nwbfile = NWBFile(session_description=f"pose estimation by posezoo ({scorer})", identifier=name,
                      session_start_time=session_start_time)
    source = None
    if video_path is not None:
        source = ImageSeries(name="source_video", description="the analysed video (external file)",
                             unit="n.a.", external_file=[str(video_path)], format="external", starting_frame=[0],
                             num_samples=len(coords), rate=float(fps), dimension=[int(width or 0), int(height or 0)])
        nwbfile.add_acquisition(source)
    index = {b: i for i, b in enumerate(bodyparts)}
    edges = np.array([[index[a], index[b]] for a, b in skeleton], dtype="uint8").reshape(-1, 2)
    skel = Skeleton(name="subject", nodes=list(bodyparts), edges=edges)
    series = [
        PoseEstimationSeries(
            name=str(bp), description=f"estimated position of {bp}", data=coords[:, k, :2], unit="pixels",
            reference_frame="(0, 0) is the centre of the top-left pixel of the video frame",
            confidence=coords[:, k, 2], confidence_definition="model score (DeepLabCut likelihood), 0..1",
            rate=float(fps), starting_time=0.0)
        for k, bp in enumerate(bodyparts)
    ]
    pose = PoseEstimation(name="PoseEstimation", pose_estimation_series=series, description="2D keypoints",
                          scorer=scorer, source_software="posezoo", source_software_version=version(),
                          skeleton=skel, source_video=source)
    behavior = nwbfile.create_processing_module(name="behavior", description="processed behavioural data")
    behavior.add(Skeletons(skeletons=[skel]))
    behavior.add(pose)
    with atomic_output(path) as tmp:
        with NWBHDF5IO(str(tmp), mode="w") as io:
            io.write(nwbfile)
    return Path(path)


def results_to_nwb(h5: str | os.PathLike[str], nwb_path: str | os.PathLike[str], *, fps: float,
                   skeleton: Sequence[Sequence[str]] = (), video: str | os.PathLike[str] | None = None,
                   width: int | None = None, height: int | None = None) -> Path:
    """Convert a single-animal DeepLabCut-layout results table to NWB."""
    res = read_results(h5)
    if res.individuals is not None:
        raise ValueError(f"{h5}: multi-animal results cannot be written to NWB by posezoo yet")
    return write_nwb(nwb_path, res.coords, res.bodyparts, fps=fps, scorer=res.scorer, skeleton=skeleton,
                     video=video, width=width, height=height)
