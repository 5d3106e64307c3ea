"""Analysis beyond one process: the cluster options of `posezoo analyze` and `posezoo merge`.

The work is in `posezoo.runtime.scale`; Ray and submitit are imported only when their engine is
asked for, with the extra to install named when missing.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .common import CommandError, positive, require_extra

ENGINES = ("local", "ray", "slurm")


def add_options(p: argparse.ArgumentParser) -> None:
    """The options of `posezoo analyze` that spread its work over processes and machines."""
    g = p.add_argument_group(
        "many videos, many machines",
        "Split the work into units (a video, or a frame range of a long video) and run them with an engine. "
        "Results equal a plain run's bit for bit (same model, options and execution provider); each table "
        "records a fingerprint (model sha256, options, video size and mtime, posezoo version), so a rerun skips "
        "what is up to date and redoes the rest. See the README's 'Clusters' section.")
    g.add_argument("--chunk-frames", type=positive, metavar="F",
                   help="split videos longer than F frames into chunks of F (rounded up to the batch size); "
                        "each chunk decodes from the start of the file up to its first frame (seeking is "
                        "inexact), and the chunks are merged into one table when all are done")
    g.add_argument("--shard", metavar="I/N",
                   help="do share I of N (0-based) of the plan, for N copies of this command started by any "
                        "scheduler; auto/N or auto take I (and N) from $SLURM_ARRAY_TASK_ID "
                        "(minus $SLURM_ARRAY_TASK_MIN, N from $SLURM_ARRAY_TASK_COUNT) or $JOB_COMPLETION_INDEX")
    g.add_argument("--engine", choices=ENGINES, default="local",
                   help="local (this process; default), ray (Ray tasks: pip install \"posezoo[ray]\") or slurm "
                        "(a SLURM job array through submitit: pip install \"posezoo[slurm]\")")
    g.add_argument("--cpus-per-task", type=float, default=None, metavar="C",
                   help="CPUs each ray task or slurm array task reserves (default ray 1, slurm 2); also its "
                        "inference threads unless --threads")
    g.add_argument("--gpus-per-task", type=float, default=0, metavar="G",
                   help="GPUs each task reserves (ray: fractions allowed; slurm: whole GPUs); use with --device cuda")
    g.add_argument("--retries", type=int, default=None, metavar="R",
                   help="ray: times a task is retried when its worker dies (default 3); slurm: resubmission "
                        "rounds for the units of array tasks that died (default 1)")
    r = p.add_argument_group("ray engine")
    r.add_argument("--address", default=None,
                   help="the Ray cluster: auto (the one this node belongs to), HOST:PORT, or ray://HOST:PORT "
                        "(Ray client); default $RAY_ADDRESS, else a private local instance on 127.0.0.1")
    s = p.add_argument_group("slurm engine")
    s.add_argument("--partition", default=None, help="SLURM partition of the array tasks")
    s.add_argument("--time", type=positive, default=60, metavar="MIN",
                   help="time limit of each array task (default 60)")
    s.add_argument("--mem-gb", type=float, default=None, help="memory of each array task")
    s.add_argument("--max-parallel", type=positive, default=None, metavar="K",
                   help="at most K array tasks run at once (sbatch --array=...%%K)")
    s.add_argument("--max-tasks", type=positive, default=1000, metavar="T",
                   help="group the units into at most T array tasks (default 1000, under SLURM's MaxArraySize)")
    s.add_argument("--slurm-folder", type=Path, default=None,
                   help="submitit's job files and the tasks' logs, on storage the nodes share (default "
                        "posezoo-slurm/ in --output-dir, else in the current folder)")
    s.add_argument("--slurm-cluster", choices=("auto", "slurm", "local"), default="auto",
                   help="slurm, or local to run the array as processes on this machine (submitit's local "
                        "executor, for trying it out); auto picks slurm when sbatch is found")
    s.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                   help="another sbatch option for the array tasks, e.g. --sbatch account=mylab (repeatable)")


def requested(args: argparse.Namespace) -> bool:
    return bool(args.chunk_frames or args.shard or args.engine != "local")


def run(args: argparse.Namespace) -> int:
    """`posezoo analyze` with --chunk-frames, --shard or an engine."""
    from posezoo.runtime.decode import expand_videos
    from posezoo.runtime.scale import Job, make_plan, parse_shard
    from posezoo.runtime.scale.plan import chunk_length

    if args.shard and args.engine != "local":
        raise CommandError(f"--shard is for N copies of a local run; --engine {args.engine} schedules the whole "
                           "plan itself: leave out --shard")
    if args.engine == "ray":
        require_extra("ray", "ray")
    elif args.engine == "slurm":
        require_extra("submitit", "slurm")
    try:
        shard = parse_shard(args.shard) if args.shard else None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.nwb:
        from posezoo.runtime.io.nwb import require_nwb

        require_nwb()
    videos = expand_videos(args.videos)
    ref = args.model if args.model.startswith("zoo:") else os.path.abspath(args.model)
    job = Job(ref, None if args.output_dir is None else os.path.abspath(args.output_dir), batch_size=args.batch_size,
              csv=args.csv, nwb=args.nwb, overwrite=args.overwrite, resume=not args.no_resume, device=args.device,
              threads=args.threads, spin=not args.no_spin, optimization=args.optimization, arena=not args.no_arena,
              static=not args.no_static, body_check=not args.no_body_check, tracking=not args.no_tracking)
    plan = make_plan(videos, chunk_frames=args.chunk_frames, batch_size=args.batch_size)
    chunked = sum(not u.whole for u in plan)
    print(f"plan: {len(plan)} unit(s) from {len(videos)} video(s)"
          + (f", {chunked} of them chunks of {chunk_length(args.chunk_frames, args.batch_size)} frames"
             if chunked else "")
          + (f"; this is shard {shard}" if shard else ""))
    if args.engine == "ray":
        from posezoo.runtime.scale.ray_engine import run_ray

        report = run_ray(job, plan, address=args.address, cpus_per_task=args.cpus_per_task or 1.0,
                         gpus_per_task=args.gpus_per_task, retries=3 if args.retries is None else args.retries,
                         progress=not args.quiet)
        report.print()
    elif args.engine == "slurm":
        from posezoo.runtime.scale.slurm_engine import SlurmOptions, run_slurm

        folder = args.slurm_folder or Path(args.output_dir or ".") / "posezoo-slurm"
        options = SlurmOptions(folder=folder.resolve(),
                               cluster=None if args.slurm_cluster == "auto" else args.slurm_cluster,
                               partition=args.partition, time_min=args.time,
                               cpus_per_task=int(args.cpus_per_task or 2), gpus_per_task=int(args.gpus_per_task),
                               mem_gb=args.mem_gb, max_parallel=args.max_parallel,
                               max_tasks=args.max_tasks, retries=1 if args.retries is None else args.retries,
                               extra=tuple(_key_values(args.sbatch)))
        report = run_slurm(job, plan, options, progress=not args.quiet)
        report.print()
    else:
        from posezoo.runtime.scale.shard import run_local

        report = run_local(job, plan, shard, progress=not args.quiet)
        if shard and report.incomplete:  # others' shares are not this copy's failure
            print(f"{len(report.incomplete)} video(s) wait for other shards (the last shard to finish a video "
                  "merges it; or run `posezoo merge` on the output folder)")
            print(report.summary())
            return 1 if report.failed else 0
        print(report.summary())
    return 0 if report.ok else 1


def _key_values(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--sbatch expects KEY=VALUE (e.g. account=mylab), got {item!r}")
        out.append((key.strip().lstrip("-").replace("-", "_"), value))
    return out


# -- merge ----------------------------------------------------------------------------------------
def _cmd_merge(args: argparse.Namespace) -> int:
    from posezoo.runtime.scale import MergeError, find_chunk_dirs, merge_folder

    folders = find_chunk_dirs(args.paths)
    if not folders:
        raise CommandError(f"no *.chunks folder in or beside {', '.join(map(str, args.paths))}: nothing to merge "
                           "(chunks appear with `posezoo analyze --chunk-frames`)")
    failed = 0
    for folder in folders:
        try:
            out = merge_folder(folder, csv=args.csv, nwb=args.nwb, overwrite=args.overwrite)
        except (MergeError, OSError) as exc:
            failed += 1
            print(f"FAILED  {exc}")
        else:
            print(f"merged  {folder.name} -> {out}")
    if failed:
        print(f"{failed} of {len(folders)} video(s) could not be merged")
    return 1 if failed else 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "merge", help="join the chunk tables of videos analysed with --chunk-frames",
        description="Join the chunks of each video (the <results>.chunks/ folder beside its results table, "
                    "written by `posezoo analyze --chunk-frames`) in frame order into its results table: the "
                    "frame count is checked, the table is written atomically, then the chunks are removed. "
                    "`posezoo analyze` does this itself once every chunk of a video is finished; run this after "
                    "shards that were stopped before merging.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  posezoo merge results/\n  posezoo merge results/session1DLC_posezoo_mouse.chunks --csv")
    p.add_argument("paths", nargs="+", type=Path,
                   help="results folders, *.chunks folders, or the results tables whose chunks to merge")
    p.add_argument("--csv", action="store_true", help="also write the .csv table")
    p.add_argument("--nwb", action="store_true", help='also write NWB (ndx-pose); needs pip install "posezoo[nwb]"')
    p.add_argument("--overwrite", action="store_true", help="replace a results table that is already up to date")
    p.set_defaults(handler=_cmd_merge)
