"""The backend-neutral API: `train` and `evaluate`; the backend is named once, at train time.

Exporting a run is `posezoo.export.export` (export builds on training, never the other way).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import TrainConfig
from .loop import final_metrics, fit
from .distributed import SINGLE, World, launched
from .run import Run, RunError, backend_module, create_run, discard_run, load_run

# Friendly keyword overrides -> dotted config keys.
_ALIASES = {"model": "model.name", "init": "model.init", "steps": "train.steps", "epochs": "train.epochs",
            "batch_size": "train.batch_size",
            "seed": "train.seed", "lr": "optimizer.lr", "eval_every": "train.eval_every",
            "scale": "input.scale", "time_limit_minutes": "train.time_limit_minutes",
            "test_indices": "split.test_indices", "train_fraction": "split.train_fraction"}


def resolve_config(config: str | Path | TrainConfig | None, backend: str | None,
                   overrides: dict[str, Any]) -> TrainConfig:
    if isinstance(config, TrainConfig):
        cfg = config
    elif config is not None:
        cfg = TrainConfig.from_yaml(config)
    else:
        cfg = TrainConfig()
    # A keyword left at None was not given; a dotted key set to None asks for null (``--set k=null``).
    dotted = {_ALIASES.get(k, k): v for k, v in overrides.items() if v is not None or "." in k}
    if backend is not None:
        dotted["backend"] = backend
    return cfg.with_overrides(dotted) if dotted else cfg


def train(project: str | Path | None = None, *, backend: str | None = None, output: str | Path | None = None,
          config: str | Path | TrainConfig | None = None, resume: bool = False, progress: bool = True,
          **overrides: Any) -> Path:
    """Train on a DeepLabCut project; returns the run directory.

    ``resume=True`` continues the run at ``output`` from its last snapshot (the config, split and
    backend are read back from the run, so nothing needs to be repeated).

    Under torchrun (``WORLD_SIZE`` > 1, PyTorch backend) every process calls this: rank 0 creates
    the run directory and the others open it, each trains on its share of every global batch
    (``batch_size`` is the global batch), and rank 0 alone writes the log, snapshots and metrics.
    """
    if resume:
        if output is None:
            raise ValueError("resume needs the run directory (output=...)")
        run = load_run(output)
        world = _join(run.backend, run.cfg.train.device)
        fit(run, resume=resume, progress=progress)
    else:
        if project is None:
            raise ValueError("train needs a DeepLabCut project directory (or its config.yaml)")
        cfg = resolve_config(config, backend, overrides)
        module = backend_module(cfg.backend)  # fails early when the backend is missing
        # The run's config names every argument, so an alias's defaults changing later (``lite``)
        # cannot change what this run builds.
        arguments = module.model_arguments(cfg.model.name, cfg.model.kwargs)
        if arguments != cfg.model.kwargs:
            cfg = cfg.with_overrides({f"model.{k}": v for k, v in arguments.items()})
        stride = module.model_stride(cfg)
        if cfg.targets.stride != stride:  # targets are made at the network's own output stride
            cfg = cfg.with_overrides({"targets.stride": stride})
        world = _join(cfg.backend, cfg.train.device)
        run = _shared_run(world, project, cfg, output)
        try:
            fit(run, resume=resume, progress=progress)
        except BaseException:
            # A run that failed before its first snapshot (an unreadable image, say) holds nothing
            # worth resuming: remove it, so the corrected command can run into the same --output.
            if world.main and not any(run.snapshots.glob("last.*")):
                discard_run(run)
            raise
    if world.main:
        final_metrics(run)
    world.barrier()  # the others wait for rank 0's metrics: a group torn down early aborts it
    world.close()
    return run.path


def _join(backend: str, device: str) -> World:
    """This process's place among the training processes torchrun started (alone without it)."""
    world = launched()
    if world.size == 1:
        return SINGLE
    if backend != "torch":
        raise RunError(f"{world.size} processes were started (WORLD_SIZE={world.size}), but only the torch backend "
                       "trains across processes; the TF backend trains on several devices of one machine in one "
                       "process: run it without torchrun, with --devices N")
    from .torch.distributed import join

    return join(device)


def _shared_run(world: World, project: str | Path, cfg: TrainConfig, output: str | Path | None) -> Run:
    """Rank 0 creates the run directory; the other ranks open the one it created."""
    if world.main:
        try:
            run = create_run(project, cfg, output)
            _write_spec(run)
        except BaseException as exc:
            world.broadcast(("error", f"{type(exc).__name__}: {exc}"))
            raise
        world.broadcast(("ok", str(run.path)))
        return run
    status, text = world.broadcast(None)
    if status != "ok":
        raise RunError(f"rank 0 could not create the run: {text}")
    return load_run(text)


def _write_spec(run: Run) -> None:
    from .run import build_spec, write_json

    spec = build_spec(run.cfg, run.project, stride=run.cfg.targets.stride,
                      name=f"{run.project.root.name}-{run.cfg.model.name}", train=run.split.train)
    write_json(run.path / "spec.json", spec.to_dict())


def evaluate(run_dir: str | Path, snapshot: str = "best") -> dict[str, Any]:
    """Metrics of a run's snapshot on its test and train splits (also written to metrics.json)."""
    run = load_run(run_dir)
    return final_metrics(run, snapshot)
