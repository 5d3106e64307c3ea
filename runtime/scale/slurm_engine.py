"""The SLURM engine: the plan's missing units as one job array, through submitit.

What labs already do by hand with DeepLabCut and SLEAP (an sbatch array over videos), done from
one command: each array task runs its share of the units with `units.run_units`, the driver waits
with a progress bar, reports failed tasks with their log files, and resubmits only the units of
tasks that died (a video that cannot be analysed fails the same way twice: it is reported, not
resubmitted). A driver killed mid-run loses nothing: the array keeps running, and the same command
run again submits only what is still missing (a unit still being written by the old array is
waited for through its lock, then skipped). ``cluster="local"`` runs the array as processes on
this machine (submitit's local executor), for trying the engine without SLURM.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .plan import Unit
from .report import Report
from .rounds import Lost, drive
from .units import Job, UnitResult, finish, run_units

#: SLURM refuses arrays larger than its MaxArraySize (1001 by default): units are grouped into at
#: most this many tasks unless told otherwise.
DEFAULT_MAX_TASKS = 1000


@dataclass(frozen=True)
class SlurmOptions:
    """The resources each array task asks for."""

    folder: Path  # submitit's pickles and the tasks' logs: on storage the nodes share
    cluster: str | None = None  # "slurm", "local" or None (SLURM when sbatch is found, else local)
    partition: str | None = None
    time_min: int = 60
    cpus_per_task: int = 2
    gpus_per_task: int = 0
    mem_gb: float | None = None
    max_parallel: int | None = None  # how many tasks of the array run at once (%N)
    max_tasks: int = DEFAULT_MAX_TASKS
    retries: int = 1  # resubmission rounds for the units of tasks that died
    poll_s: float = 1.0
    extra: tuple[tuple[str, str], ...] = ()  # more sbatch options, e.g. (("account", "lab"), ("qos", "short"))


def executor(options: SlurmOptions) -> Any:
    import submitit

    ex = submitit.AutoExecutor(folder=str(options.folder), cluster=options.cluster)
    params: dict[str, Any] = {"name": "posezoo-analyze", "timeout_min": int(options.time_min),
                              "cpus_per_task": int(options.cpus_per_task), "mem_gb": options.mem_gb,
                              "slurm_partition": options.partition,
                              "slurm_array_parallelism": options.max_parallel}
    if options.gpus_per_task:
        params["gpus_per_node"] = int(options.gpus_per_task)
    if options.extra:
        params["slurm_additional_parameters"] = dict(options.extra)
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def run_slurm(job: Job, plan: Sequence[Unit], options: SlurmOptions, *, progress: bool = True) -> Report:
    """Submit the missing units of ``plan`` as a job array, wait, resubmit the lost, report."""
    began = time.perf_counter()
    if job.threads is None:
        job = job.with_(threads=max(1, options.cpus_per_task))
    report = Report(f"slurm ({options.cluster or 'auto'})", len(plan), 0)
    ex = executor(options)

    def submit(units: list[Unit], say: Callable[[str], None]) -> Iterator[UnitResult | Lost]:
        groups = _groups(units, options.max_tasks)
        jobs = ex.map_array(run_units, [job] * len(groups), groups)
        say(f"submitted array {jobs[0].job_id.split('_')[0]}: {len(groups)} task(s), {len(units)} unit(s); "
            f"logs in {options.folder}")
        waiting = dict(enumerate(jobs))
        while waiting:
            for i, task in list(waiting.items()):
                if not task.done():
                    continue
                del waiting[i]
                try:
                    yield from task.result()
                except Exception as exc:  # submitit raises the task's failure (a crash, a timeout, a cancel)
                    stderr = getattr(getattr(task, "paths", None), "stderr", "?")
                    yield Lost(groups[i], f"array task {task.job_id}: {_first_line(exc)} (log {stderr})")
            if waiting:
                time.sleep(options.poll_s)

    drive(job, plan, report, submit, retries=options.retries, progress=progress)
    report.videos = finish(job, plan)
    report.seconds = time.perf_counter() - began
    return report


def _groups(units: Sequence[Unit], max_tasks: int) -> list[list[Unit]]:
    n = max(1, min(len(units), max_tasks))
    return [list(units[i::n]) for i in range(n)]


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    # submitit quotes the task's traceback: its last line says what went wrong
    return (lines[-1] if lines else type(exc).__name__)[:300]
