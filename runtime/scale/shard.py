"""The local engine: this process runs its share of the plan (``--shard I/N``, or all of it).

No scheduler of our own: N copies of the same command, started by any scheduler (a SLURM array,
a Kubernetes indexed job, GNU parallel, a shell loop), each take a disjoint share of the same
deterministic plan. Whichever finishes the last chunk of a video merges it; each copy ends by
merging any video whose chunks are all there.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .plan import Shard, Unit
from .report import Report
from .units import Job, finish, run_unit


def run_local(job: Job, plan: Sequence[Unit], shard: Shard | None = None, *, progress: bool = True,
              echo: Callable[[str], None] = print) -> Report:
    """Run this process's share of ``plan``; the report's videos cover the whole plan (others'
    shares show as incomplete until they finish)."""
    began = time.perf_counter()
    mine = shard.take(plan) if shard else list(plan)
    report = Report(f"shard {shard}" if shard else "local", len(mine), len(mine))
    job.load_model()  # fail here, once, on a bad model reference
    for unit in mine:
        result = run_unit(job, unit, progress)
        report.results.append(result)
        report.startup_s = report.startup_s or time.perf_counter() - began
        for w in result.warnings:
            echo(f"warning: {w}")
        if result.status == "failed":
            echo(f"FAILED  {unit}: {result.error}")
        elif result.status == "skipped":
            echo(f"skipped {unit}: {result.path} is up to date (use --overwrite to analyse it again)")
        else:
            echo(f"done    {unit} -> {result.path}  ({result.frames} frames, {result.seconds:.1f} s)")
        if result.merged:
            echo(f"merged  {result.merged}")
    report.videos = finish(job, plan)
    report.seconds = time.perf_counter() - began
    return report
