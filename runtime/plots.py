"""Plots of video results, as DeepLabCut's ``plot_trajectories`` makes them (PNG, matplotlib Agg).

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly, never pyplot,
so nothing depends on (or changes) the process-wide backend, and a headless PC needs no display.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .draw import rainbow
from .files import atomic_output
from .poses import DEFAULT_PCUTOFF, Poses

#: The files ``plot_poses`` writes, named as DeepLabCut names them.
PLOT_FILES = ("trajectory.png", "plot-likelihood.png", "plot.png", "hist.png")


def default_plot_dir(results: str | os.PathLike[str], scorer: str) -> Path:
    """``plot-poses/<video stem>/`` beside a results table, where DeepLabCut puts its plots."""
    src = Path(results)
    stem = src.stem[: -len(scorer)] if src.stem.endswith(scorer) and src.stem != scorer else src.stem
    return src.parent / "plot-poses" / stem


def plot_poses(poses: Poses, output_dir: str | os.PathLike[str], *, pcutoff: float = DEFAULT_PCUTOFF,
               title: str | None = None, dpi: int = 100) -> list[Path]:
    """Write trajectories (x-y), likelihood over time, x and y over time and a histogram of
    frame-to-frame displacement for every keypoint of every individual; returns the PNG paths.

    Points with likelihood under ``pcutoff`` are left out of the trajectory, position and
    displacement plots (the likelihood plot shows them all, with the cutoff as a line).
    """
    coords = poses.coords.reshape(len(poses), -1, 3)
    names = list(poses.keypoints) if poses.single_animal else \
        [f"{i}/{k}" for i in poses.individuals for k in poses.keypoints]
    if poses.unique is not None:
        coords = np.concatenate([coords, poses.unique], axis=1)
        names += list(poses.unique_keypoints)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    colors = rainbow(len(names))
    frames = poses.frame_numbers()
    like = coords[..., 2]
    keep = np.nan_to_num(like, nan=-1.0) >= pcutoff
    x = np.where(keep, coords[..., 0], np.nan)
    y = np.where(keep, coords[..., 1], np.nan)
    title = f"{title or poses.video or poses.scorer}  (pcutoff {pcutoff:g})"
    written = []

    fig, ax = _figure((7, 6), title)
    if poses.single_animal:
        for k, name in enumerate(names):
            ax.plot(x[:, k], y[:, k], ".", ms=2, color=colors[k], label=name)
    else:  # one colour per individual: its keypoints as dots, the path of their mean as a line
        per = len(poses.keypoints)
        for i, (individual, color) in enumerate(zip(poses.individuals, rainbow(len(poses.individuals) + 1))):
            block = slice(i * per, (i + 1) * per)
            ax.plot(x[:, block].ravel(), y[:, block].ravel(), ".", ms=1, color=color, alpha=0.3)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # frames where the animal is not seen
                ax.plot(np.nanmean(x[:, block], 1), np.nanmean(y[:, block], 1), "-", lw=1, color=color,
                        label=individual)
        for k in range(len(poses.individuals) * per, len(names)):  # unique keypoints
            ax.plot(x[:, k], y[:, k], "x", ms=3, color="k", label=names[k])
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    ax.invert_yaxis()  # image coordinates: y grows downwards
    ax.set_aspect("equal", adjustable="datalim")
    _legend(ax, names if poses.single_animal else poses.individuals + poses.unique_keypoints)
    written.append(_save(fig, out / PLOT_FILES[0], dpi))

    fig, ax = _figure((9, 4), title)
    for k, name in enumerate(names):
        ax.plot(frames, like[:, k], "-", lw=0.8, color=colors[k], label=name)
    ax.axhline(pcutoff, color="k", ls="--", lw=0.8, label="pcutoff")
    ax.set_xlabel("frame")
    ax.set_ylabel("likelihood")
    ax.set_ylim(-0.02, 1.02)
    _legend(ax, names + ["pcutoff"])
    written.append(_save(fig, out / PLOT_FILES[1], dpi))

    fig, axes = _figure((9, 6), title, rows=2)
    for k, name in enumerate(names):
        axes[0].plot(frames, x[:, k], "-", lw=0.8, color=colors[k], label=name)
        axes[1].plot(frames, y[:, k], "-", lw=0.8, color=colors[k])
    axes[0].set_ylabel("x (pixels)")
    axes[1].set_ylabel("y (pixels)")
    axes[1].set_xlabel("frame")
    _legend(axes[0], names)
    written.append(_save(fig, out / PLOT_FILES[2], dpi))

    fig, ax = _figure((7, 4), title)
    step = np.hypot(np.diff(x, axis=0), np.diff(y, axis=0))
    finite = step[np.isfinite(step)]
    bins = np.linspace(0, float(np.percentile(finite, 99.5)) if finite.size else 1.0, 50)
    for k, name in enumerate(names):
        d = step[:, k][np.isfinite(step[:, k])]
        if d.size:
            ax.hist(d, bins=bins, histtype="step", color=colors[k], label=name)
    ax.set_xlabel("displacement between consecutive frames (pixels)")
    ax.set_ylabel("count")
    _legend(ax, names)
    written.append(_save(fig, out / PLOT_FILES[3], dpi))
    return written


def _figure(size: tuple[float, float], title: str, rows: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=rows > 1)
    fig.suptitle(title, fontsize=9)
    return fig, axes


def _legend(ax: Any, names: list[str]) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, markerscale=3, ncols=1 if len(names) <= 12 else 2, loc="best")


def _save(fig: Any, path: Path, dpi: int) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
