"""The Ray engine: one Ray core task per unit, with retries, on any Ray cluster.

Ray only schedules: each task runs `units.run_unit` on a worker, which reads the video and writes
its results on storage every node shares, exactly as a local run would; the driver waits with a
progress bar and reports. A task whose worker dies (a node lost, memory killed) is retried by
Ray; a video that cannot be analysed is a result, not a retry. A driver killed mid-run loses
nothing finished: rerunning the command submits only the units that are still missing.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .plan import Unit
from .report import Report
from .rounds import Lost, drive
from .units import Job, UnitResult, finish, run_unit


def connect(address: str | None) -> bool:
    """Connect to the cluster at ``address`` (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``);
    with None, to ``$RAY_ADDRESS`` or else a private local instance bound to this machine's
    loopback address. Returns whether this call started (and so must stop) a cluster."""
    import ray

    if ray.is_initialized():
        return False
    common: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address or None, **common)
        return False
    # Ray rewrites a 127.0.0.1 node address to the machine's routable one unless it believes it
    # runs without cluster support; a private single-machine instance has no use for the network.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", **common)
    return True


def run_ray(job: Job, plan: Sequence[Unit], *, address: str | None = None, cpus_per_task: float = 1.0,
            gpus_per_task: float = 0.0, retries: int = 3, progress: bool = True) -> Report:
    """Run every unit of ``plan`` that is not up to date as a Ray task; wait and report."""
    import ray

    began = time.perf_counter()
    started = connect(address)
    try:
        if job.threads is None:  # one session thread per CPU the task reserves, not per core of the node
            job = job.with_(threads=max(1, int(cpus_per_task)))
        report = Report("ray", len(plan), 0)
        options: dict[str, Any] = {"num_cpus": cpus_per_task, "max_retries": retries, "retry_exceptions": False}
        if gpus_per_task:
            options["num_gpus"] = gpus_per_task
        task = ray.remote(run_unit).options(**options)

        def submit(units: list[Unit], say: Callable[[str], None]) -> Iterator[UnitResult | Lost]:
            pending = {task.remote(job, unit): unit for unit in units}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    unit = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker died past Ray's retries, or raised
                        yield Lost([unit], _cause(exc))

        connected = time.perf_counter() - began
        # Ray retries lost workers itself: one more round of our own is enough.
        drive(job, plan, report, submit, retries=1, progress=progress)
        report.startup_s += connected
        # The final merge pass runs where the storage is, which a ray:// client need not see.
        report.videos = ray.get(ray.remote(finish).options(num_cpus=min(cpus_per_task, 1.0)).remote(job, plan))
    finally:
        if started:
            ray.shutdown()
    report.seconds = time.perf_counter() - began
    return report


def _cause(exc: BaseException) -> str:
    """One line saying why: a task that raised has its exception on the last line of the
    traceback Ray sends back (the first only names the task); a lost worker says it first."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    import ray

    return (lines[-1] if isinstance(exc, ray.exceptions.RayTaskError) else lines[0]).strip()[:300]
