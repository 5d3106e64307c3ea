"""What every driver does around its engine: hand out the missing units, collect results with a
progress bar, wait for units another process is still writing, hand out again what was lost.

An engine supplies one function, ``submit(units, say)``, that runs the units somewhere and yields
a `UnitResult` per unit (or a `Lost` for units whose worker died past the engine's own retries);
``say`` prints a line above the progress bar.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .plan import Unit
from .report import Report
from .units import Job, UnitResult, busy_holder, missing_units

#: Seconds between looks at the locks of units another process is writing.
BUSY_POLL_S = 1.0


@dataclass
class Lost:
    """Units whose worker or array task ended without a result."""

    units: list[Unit]
    reason: str


Submit = Callable[[list[Unit], Callable[[str], None]], Iterable[UnitResult | Lost]]


def drive(job: Job, plan: Sequence[Unit], report: Report, submit: Submit, *, retries: int, progress: bool,
          log: Callable[[str], None] | None = None) -> None:
    """Run ``plan`` through ``submit`` until no unit is missing; fills ``report``.

    Units are handed out in rounds: the first round takes every missing unit that no live
    process is writing; later rounds take the units of lost workers (at most ``retries`` more
    rounds) and those that were busy once their writer is gone. A unit that fails (a video that
    cannot be analysed) is reported, never handed out again.
    """
    from tqdm import tqdm

    model = job.load_model()
    settled = job.with_(overwrite=False)  # after the first round, what is finished counts (--overwrite or not)
    failed: set[Unit] = set()
    began = time.perf_counter()
    first = missing_units(job, model, plan)
    report.submitted = len(first)
    resubmits = retries
    with tqdm(total=len(first), unit="unit", desc=report.engine, disable=not progress, dynamic_ncols=True) as bar:
        say = log or bar.write
        handed = 0
        while True:
            todo = first if not handed else [u for u in missing_units(settled, model, plan) if u not in failed]
            if not todo:
                break
            busy = {u: h for u in todo if (h := busy_holder(job, model, u))}
            ready = [u for u in todo if u not in busy]
            if not ready:  # another process (a worker of a killed driver) is writing them: wait
                bar.set_postfix_str(f"{len(busy)} unit(s) in progress elsewhere, e.g. {next(iter(busy.values()))}")
                time.sleep(BUSY_POLL_S)
                continue
            if handed:
                bar.total = bar.n + len(ready)
                bar.refresh()
            handed += 1
            lost: list[str] = []
            for item in submit(ready, say):
                if not report.startup_s:
                    report.startup_s = time.perf_counter() - began
                if isinstance(item, Lost):
                    lost.append(f"{len(item.units)} unit(s), e.g. {item.units[0]}: {item.reason}")
                    say(f"LOST    {lost[-1]}")
                    bar.update(len(item.units))
                    continue
                report.results.append(item)
                for w in item.warnings:
                    say(f"warning: {w}")
                if item.status == "failed":
                    failed.add(item.unit)
                    say(f"FAILED  {item.unit} on {item.host}: {item.error}")
                elif item.status in ("done", "skipped") and missing_units(settled, model, [item.unit]):
                    failed.add(item.unit)  # it would be handed out for ever
                    item.status, item.error = "failed", (
                        f"finished on {item.host} but this driver does not see its results as up to date (a "
                        "different posezoo version or model file there, or storage the driver does not share?)")
                    say(f"FAILED  {item.unit}: {item.error}")
                bar.update()
            report.lost = lost
            if lost:
                if resubmits <= 0:
                    break
                resubmits -= 1
                say(f"handing out the units of lost workers again ({retries - resubmits} of {retries})")
    if report.lost and not [u for u in missing_units(settled, model, plan) if u not in failed]:
        report.lost = []  # a later round finished them
