"""What an engine hands back: every unit's result, where each video stands, and the timings that
`benchmarks/scale_overhead.py` and the command line print."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .units import UnitResult, VideoState


@dataclass
class Report:
    engine: str
    planned: int  # units in the plan (or in this shard's share)
    submitted: int  # units that were handed to workers (the rest were already up to date)
    results: list[UnitResult] = field(default_factory=list)
    videos: list[VideoState] = field(default_factory=list)
    startup_s: float = 0.0  # from the start until the first unit's result came back
    seconds: float = 0.0  # the whole run, start-up included
    lost: list[str] = field(default_factory=list)  # units whose worker died past its retries

    @property
    def failed(self) -> list[UnitResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def incomplete(self) -> list[VideoState]:
        return [v for v in self.videos if not v.complete]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.lost and not self.incomplete

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def summary(self) -> str:
        done, skipped = self.count("done"), self.count("skipped") + (self.planned - self.submitted)
        text = (f"{self.engine}: {done} unit(s) analysed, {skipped} up to date, {len(self.failed) + len(self.lost)} "
                f"failed; {sum(v.complete for v in self.videos)} of {len(self.videos)} video(s) complete "
                f"({self.seconds:.1f} s; first result after {self.startup_s:.1f} s)")
        return text

    def print(self, echo: Callable[[str], None] = print) -> None:
        """The lines a driver prints at the end (each unit's failure was shown as it came)."""
        for text in self.lost:
            echo(f"LOST    {text}")
        for v in self.incomplete:
            if not v.missing:
                echo(f"incomplete {v.video}: every chunk is finished but not yet merged (another worker is merging "
                     f"them, or run `posezoo merge {v.path.parent}`)")
                continue
            echo(f"incomplete {v.video}: {len(v.missing)} unit(s) not finished ({', '.join(map(str, v.missing[:3]))}"
                 f"{', ...' if len(v.missing) > 3 else ''})")
        echo(self.summary())
