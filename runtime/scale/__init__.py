"""Analysis beyond one process: units of work, a deterministic plan, and the engines that run it.

- `plan`: the units (whole videos, or frame ranges with ``--chunk-frames``) and ``--shard I/N``;
- `units`: `run_unit`, the one thing every engine runs, and what is still missing;
- `merge`: joining a video's chunk tables into its results table;
- engines, each of which only schedules units and reports: `shard` (this process),
  `ray_engine` (Ray tasks, ``pip install "posezoo[ray]"``) and `slurm_engine` (a SLURM job array
  through submitit, ``pip install "posezoo[slurm]"``). Ray and submitit are imported only inside
  their engine module, so the light runtime never loads them.
"""
from __future__ import annotations

from .merge import MergeError, find_chunk_dirs, merge_folder
from .plan import Shard, Unit, make_plan, parse_shard
from .report import Report
from .units import Job, UnitResult, missing_units, run_unit

__all__ = ["Job", "MergeError", "Report", "Shard", "Unit", "UnitResult", "find_chunk_dirs", "make_plan",
           "merge_folder", "missing_units", "parse_shard", "run_unit"]
