"""Train the default recipe on the synthetic 3-animal project and print test mAP and matched
RMSE over training time.

The project is the multi-animal generator's default (`make_multi_project`: 3 mice, 150 labeled
640x480 frames, seed 0; `--seed` draws another one). The targets (issue: multi-animal) are test
mAP >= 90 and matched RMSE <= 3 px within 10 minutes of training from scratch on 2 CPU cores.
The machine's load average is printed before and after: training slows by 10x or more when
other processes share the cores.

    python benchmarks/multianimal_accuracy.py [--minutes 10] [--backend torch|tf] [--seed 0]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="torch", choices=["torch", "tf"])
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget")
    parser.add_argument("--seed", type=int, default=0, help="the synthetic project's seed")
    parser.add_argument("--project", type=Path, default=None, help="an existing multi-animal project instead")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "multianimal-benchmark")
    args = parser.parse_args()

    import yaml

    from posezoo.training.api import train
    from posezoo.training.synthetic_multi import make_multi_project

    project = args.project or args.output / f"synthetic-3mice-seed{args.seed}"
    if args.project is None and not (project / "config.yaml").is_file():
        t0 = time.perf_counter()
        make_multi_project(project, seed=args.seed)
        print(f"generated {project} in {time.perf_counter() - t0:.0f} s")
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    run_dir = args.output / f"{args.backend}-{time.strftime('%Y%m%d-%H%M%S')}"
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    train(project, backend=args.backend, output=run_dir, time_limit_minutes=args.minutes, **overrides)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()

    with open(run_dir / "log.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["test_rmse"]]
    print(f"\nsynthetic 3 mice (seed {args.seed}), backend {args.backend}, run {run_dir}")
    print(f"{'epoch':>6} {'train min':>9} {'test mAP':>8} {'matched rmse px':>15} {'rmse_pcutoff':>12}")
    for r in rows:
        print(f"{int(r['epoch']):>6} {float(r['elapsed_s']) / 60:>9.2f} {float(r['test_mAP'] or 'nan'):>8.1f} "
              f"{float(r['test_rmse']):>15.2f} {float(r['test_rmse_pcutoff'] or 'nan'):>12.2f}")
    final = json.loads((run_dir / "metrics.json").read_text())
    test = final["test"]
    print(f"best snapshot ({final['snapshot']}): test mAP {test['mAP']:.1f}, mAR {test['mAR']:.1f}, matched RMSE "
          f"{test['rmse']:.2f} px, rmse_pcutoff {test['rmse_pcutoff']:.2f} px ({test['n_images']} images)")
    print(f"targets: mAP >= 90 and RMSE <= 3 px within 10 min -> "
          f"{'met' if test['mAP'] >= 90 and test['rmse'] <= 3 else 'NOT met'}")
    print(f"wall time {wall / 60:.1f} min (training + evaluation); load average before "
          f"{load_before[0]:.2f}, after {load_after[0]:.2f} (1 min) on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
