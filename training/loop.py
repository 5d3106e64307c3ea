"""The one training loop both backends run: a budget of steps, the learning-rate schedule, periodic
evaluation, log.csv, last/best snapshots, time limit, exact resume, and the final metrics.

A backend supplies a `Trainer` (one optimisation step, the eval-mode forward pass, saving and
restoring a snapshot) and nothing else, so the recipe cannot differ between PyTorch and TF.
Under data-parallel training (a trainer with a `world` of several processes) every rank steps
through its share of each batch; rank 0 alone evaluates, logs and writes snapshots, and its clock
decides when a time limit is reached.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Generator, Protocol

import numpy as np
from tqdm.auto import tqdm

from posezoo.runtime.metrics import evaluate_poses

from .distributed import SINGLE, World
from .predict import Forward, Predictor, predictor
from .run import Run, RunError, append_log, backend_module, init_snapshot, truncate_log, write_json
from .schedule import lr_at

SNAPSHOTS = ("last", "best")
SNAPSHOT_STEPS = 100
CLOCK_AFTER = 0.05  # of a time limit, see `_progress`


class Trainer(Protocol):
    """What a backend provides for one run (its network and optimiser live inside)."""

    def step(self, batch: dict[str, np.ndarray], lr: float) -> tuple[float, ...]:
        """One optimisation step on a batch of `data.BatchLoader`; the heatmap and locref losses
        (then the part-affinity and identity losses of a multi-animal network)."""

    def forward(self, frames: np.ndarray) -> tuple[np.ndarray, ...]:
        """Eval-mode network on prepared uint8 frames (see `predict.Forward`)."""

    def save(self, name: str, state: dict[str, Any]) -> None:
        """Write snapshot ``name`` (weights, optimiser, RNG state and the loop ``state``) atomically."""

    def restore(self, name: str) -> dict[str, Any]:
        """Load snapshot ``name`` into the network and optimiser; returns the loop state."""

    def has_snapshot(self, name: str) -> bool: ...

    def initialise(self, snapshot: Path) -> tuple[int, int]:
        """Copy what fits of another run's snapshot into the fresh network: (weights copied, all)."""

    def initialise_imagenet(self) -> tuple[int, int]:
        """Start the backbone from its ImageNet weights: (weights set, all)."""

    def state_arrays(self) -> list[tuple[str, np.ndarray]]:
        """The network's weights as (name, array) pairs (the exported model's weights hash)."""


def evaluate_split(run: Run, predict: Predictor, indices: list[int]) -> dict[str, Any]:
    """Metrics of a predictor on some of the run's labeled frames (DeepLabCut's definitions)."""
    if not indices:
        return {}
    return evaluate_poses(run.project.labels[indices], predict(run.frames(indices)), pcutoff=run.project.pcutoff)


def fit(run: Run, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``run`` (continuing from its last snapshot with ``resume``)."""
    cfg = run.cfg
    trainer: Trainer = backend_module(run.backend).trainer(run)
    world: World = getattr(trainer, "world", SINGLE)
    main = world.main
    predict = predictor(trainer.forward, run.spec)
    start_epoch, elapsed, best = 0, 0.0, {"test_rmse": math.inf, "epoch": -1}
    log_path = run.path / "log.csv"
    if resume and trainer.has_snapshot("last"):
        state = trainer.restore("last")
        start_epoch, elapsed, best = state["epoch"] + 1, state["elapsed_s"], state["best"]
        if main:
            truncate_log(log_path, start_epoch)
    else:
        if log_path.exists() and main:
            log_path.unlink()
        if cfg.model.init == "imagenet":
            copied, total = trainer.initialise_imagenet()
            if main:
                print(f"initialised {copied} of {total} weights from ImageNet", flush=True)
        elif cfg.model.init:
            snapshot = init_snapshot(cfg.model.init, run.backend)
            copied, total = trainer.initialise(snapshot)
            if copied < total // 2:
                raise RunError(f"model.init {cfg.model.init}: only {copied} of this network's {total} weights fit its "
                               f"snapshot; start from a run of the same model ({cfg.model.name} {cfg.model.kwargs})")
            if main:
                print(f"initialised {copied} of {total} weights from {snapshot}", flush=True)

    loader = run.train_loader(world.rank, world.size)
    per_epoch = len(loader)
    total = cfg.train.total_steps(per_epoch)
    epochs = -(-total // per_epoch)  # the last one may stop part-way through
    deadline = cfg.train.time_limit_minutes * 60 if cfg.train.time_limit_minutes else math.inf
    if main and progress:
        limit = f", at most {cfg.train.time_limit_minutes:g} min" if math.isfinite(deadline) else ""
        print(f"budget: {total} steps ({total / per_epoch:.4g} epochs of {per_epoch}){limit}", flush=True)
    clock0 = time.perf_counter() - elapsed  # the run's clock (evaluations included), continued on resume
    bar = tqdm(total=total, initial=min(total, start_epoch * per_epoch), unit="step", dynamic_ncols=True,
               desc=f"train {cfg.model.name} ({run.backend})", disable=not (progress and main))
    saved_at = start_epoch * per_epoch  # the step of the last snapshot
    epoch = start_epoch - 1
    for epoch in range(start_epoch, epochs):
        loader.set_epoch(epoch)
        first, stop = epoch * per_epoch, min(total, (epoch + 1) * per_epoch)
        sums = np.zeros(0)
        lr = cfg.optimizer.lr
        batches: Generator[dict[str, np.ndarray], None, None] = iter(loader)  # type: ignore[assignment]
        for done in range(first, stop):
            batch = next(batches)
            lr = lr_at(_progress(done / total, time.perf_counter() - clock0, deadline), cfg)
            losses = trainer.step(batch, lr)
            sums = sums + losses if len(sums) else np.asarray(losses, np.float64)
            bar.update()
        batches.close()  # a generator: a last epoch stopped part-way ends the loader's threads
        steps = stop - first
        elapsed = world.broadcast(time.perf_counter() - clock0)  # rank 0's clock: all stop together
        sums = np.pad(sums, (0, 4 - len(sums)), constant_values=np.nan)  # heatmap, locref, paf, identity
        row: dict[str, Any] = {"epoch": epoch, "step": stop, "loss": np.nansum(sums) / steps,
                               "heatmap_loss": sums[0] / steps, "locref_loss": sums[1] / steps, "lr": lr,
                               "elapsed_s": round(elapsed, 2)}
        row.update({k: v / steps for k, v in zip(("paf_loss", "identity_loss"), sums[2:]) if np.isfinite(v)})
        last = stop == total or elapsed >= deadline
        evaluate = last or stop // cfg.train.eval_every > first // cfg.train.eval_every
        if main and evaluate:
            m = evaluate_split(run, predict, run.split.test)
            row.update(test_rmse=m.get("rmse"), test_rmse_pcutoff=m.get("rmse_pcutoff"), test_mAP=m.get("mAP"))
            bar.set_postfix(loss=f"{row['loss']:.4f}", test_rmse=f"{m.get('rmse', float('nan')):.2f}px")
        else:
            bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
        if main:
            # Rows go to disk every epoch; snapshots cost a 10+ MB write each, so after the first epoch they are
            # taken every SNAPSHOT_STEPS steps, at evaluations and at the end (a project of a few frames has
            # one-step epochs). A resume repeats the epochs after the last snapshot, with the same result.
            append_log(log_path, row)
            new_best = _best(row, best, epoch)
            if evaluate or epoch == start_epoch or stop - saved_at >= SNAPSHOT_STEPS:
                _snapshot(trainer, epoch, elapsed, best, new_best, cfg.model.name)
                saved_at = stop
            best = new_best
        if elapsed >= deadline:
            bar.write(f"time limit of {cfg.train.time_limit_minutes} min reached after step {stop} of {total}")
            break
    bar.close()
    if main and not trainer.has_snapshot("best") and trainer.has_snapshot("last"):
        trainer.save("best", trainer.restore("last"))
    return {"epochs_done": epoch + 1, "elapsed_s": elapsed, "best": best}


def _best(row: dict[str, Any], best: dict[str, Any], epoch: int) -> dict[str, Any]:
    if row.get("test_rmse") is not None and row["test_rmse"] < best["test_rmse"]:
        return {"test_rmse": row["test_rmse"], "epoch": epoch}
    return best


def _snapshot(trainer: Trainer, epoch: int, elapsed: float, best: dict[str, Any], new_best: dict[str, Any],
              model_name: str) -> None:
    """Rank 0's snapshots after ``epoch`` (its log row is already written: a kill between the two
    only repeats the epoch on resume, whose row is truncated and rewritten, and never loses a row)."""
    state = {"epoch": epoch, "elapsed_s": elapsed, "best": new_best, "model_name": model_name}
    if new_best is not best:
        trainer.save("best", state)
    trainer.save("last", state)


def _progress(done: float, elapsed: float, deadline: float) -> float:
    """Where the schedule is, as a fraction of the run. With a time limit that the steps would
    overrun, the schedule follows the clock instead, so a run stopped by its limit ends annealed
    rather than at a high learning rate. The clock is not looked at in the first CLOCK_AFTER of the
    limit (start-up makes early step rates noisy), so a run that fits easily in its limit (any
    test, any GPU run) stays a deterministic function of the seed."""
    if not math.isfinite(deadline) or elapsed < CLOCK_AFTER * deadline:
        return done
    return max(done, min(1.0, elapsed / deadline))


def load_predictor(run: Run, snapshot: str = "best") -> tuple[Predictor, Forward]:
    """The framework predictor of one of the run's snapshots (and its forward pass)."""
    if snapshot not in SNAPSHOTS:
        raise ValueError(f"snapshot must be one of {SNAPSHOTS}, got {snapshot!r}")
    trainer: Trainer = backend_module(run.backend).trainer(run)
    trainer.restore(snapshot)
    return predictor(trainer.forward, run.spec), trainer.forward


def final_metrics(run: Run, snapshot: str = "best") -> dict[str, Any]:
    """Metrics of a snapshot on the test and train splits; written to metrics.json."""
    predict, _ = load_predictor(run, snapshot)
    result = {"snapshot": snapshot, "test": evaluate_split(run, predict, run.split.test),
              "train": evaluate_split(run, predict, run.split.train)}
    write_json(run.path / "metrics.json", result)
    return result
