"""Plots of video results, as DeepLabCut's ``plot_trajectories`` makes them (PNG, matplotlib Agg).

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly, never pyplot,
so nothing depends on (or changes) the process-wide backend, and a headless PC needs no display.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .draw import rainbow
from .files import atomic_output
from .results import read_results

#: The files ``plot_results`` writes, named as DeepLabCut names them.
PLOT_FILES = ("trajectory.png", "plot-likelihood.png", "plot.png", "hist.png")


def plot_results(results: str | os.PathLike[str], output_dir: str | os.PathLike[str] | None = None, *,
                 pcutoff: float = 0.6, dpi: int = 100) -> list[Path]:
    """Write trajectories (x-y), likelihood over time, x and y over time and a histogram of
    frame-to-frame displacement for every bodypart; returns the PNG paths.

    Points with likelihood under ``pcutoff`` are left out of the trajectory, position and
    displacement plots (the likelihood plot shows them all, with the cutoff as a line). Default
    folder: ``plot-poses/<video stem>/`` beside the results, as DeepLabCut does.
    """
    res = read_results(results)
    if res.individuals is not None:
        coords = res.coords.reshape(len(res.coords), -1, 3)
        names = [f"{i}/{b}" for i in res.individuals for b in res.bodyparts]
    else:
        coords, names = res.coords, list(res.bodyparts)
    src = Path(results)
    if output_dir is None:
        video_stem = src.stem[: -len(res.scorer)] if src.stem.endswith(res.scorer) and src.stem != res.scorer else src.stem
        output_dir = src.parent / "plot-poses" / video_stem
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    colors = rainbow(len(names))
    frames = np.arange(len(coords))
    like = coords[..., 2]
    keep = np.nan_to_num(like, nan=-1.0) >= pcutoff
    x = np.where(keep, coords[..., 0], np.nan)
    y = np.where(keep, coords[..., 1], np.nan)
    title = f"{src.name}  (pcutoff {pcutoff:g})"
    written = []

    fig, ax = _figure((7, 6), title)
    for k, name in enumerate(names):
        ax.plot(x[:, k], y[:, k], ".", ms=2, color=colors[k], label=name)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    ax.invert_yaxis()  # image coordinates: y grows downwards
    ax.set_aspect("equal", adjustable="datalim")
    _legend(ax, names)
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
