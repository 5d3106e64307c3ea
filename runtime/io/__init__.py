"""Files of poses, one module per format, chosen by extension (as sleap-io does).

* ``.h5``, ``.hdf5``, ``.hdf``, ``.csv``: DeepLabCut tables (`io.dlc`), labels or video results.
* ``.nwb``: NWB with ndx-pose (`io.nwb`; needs ``posezoo[nwb]``).

The streaming, resumable results writer is `io.writer.ResultsWriter`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..poses import Poses, PosesError
from . import dlc

__all__ = ["load_poses", "save_poses"]


def load_poses(path: str | os.PathLike[str]) -> Poses:
    """Read the poses in ``path``; the format follows from the extension."""
    suffix = Path(path).suffix.lower()
    if suffix in dlc.SUFFIXES:
        return dlc.read_dlc(path)
    if suffix == ".nwb":
        from .nwb import read_nwb

        return read_nwb(path)
    raise PosesError(f"{path}: unknown pose file extension '{suffix}' (posezoo reads "
                     f"{', '.join(dlc.SUFFIXES)} and .nwb)")


def save_poses(poses: Poses, path: str | os.PathLike[str], **options: Any) -> Path:
    """Write ``poses`` to ``path`` atomically; the format follows from the extension. ``options``
    go to the format's writer (`io.dlc.write_dlc`: csv, index_style; `io.nwb.write_nwb`: fps, ...)."""
    suffix = Path(path).suffix.lower()
    if suffix in dlc.SUFFIXES:
        return dlc.write_dlc(poses, path, **options)
    if suffix == ".nwb":
        from .nwb import write_nwb

        return write_nwb(poses, path, **options)
    raise PosesError(f"{path}: unknown pose file extension '{suffix}' (posezoo writes "
                     f"{', '.join(dlc.SUFFIXES)} and .nwb)")
