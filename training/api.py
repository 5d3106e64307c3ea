"""The backend-neutral API: `train` and `evaluate`; the backend is named once, at train time.

Exporting a run is `posezoo.export.export` (export builds on training, never the other way).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import TrainConfig
from .loop import final_metrics, fit
from .run import Run, backend_module, create_run, discard_run, load_run

# Friendly keyword overrides -> dotted config keys.
_ALIASES = {"model": "model.name", "epochs": "train.epochs", "batch_size": "train.batch_size",
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
    dotted = {_ALIASES.get(k, k): v for k, v in overrides.items() if v is not None}
    if backend is not None:
        dotted["backend"] = backend
    return cfg.with_overrides(dotted) if dotted else cfg


def train(project: str | Path | None = None, *, backend: str | None = None, output: str | Path | None = None,
          config: str | Path | TrainConfig | None = None, resume: bool = False, progress: bool = True,
          **overrides: Any) -> Path:
    """Train on a DeepLabCut project; returns the run directory.

    ``resume=True`` continues the run at ``output`` from its last snapshot (the config, split and
    backend are read back from the run, so nothing needs to be repeated).
    """
    if resume:
        if output is None:
            raise ValueError("resume needs the run directory (output=...)")
        run = load_run(output)
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
        run = create_run(project, cfg, output)
        _write_spec(run)
        try:
            fit(run, resume=resume, progress=progress)
        except BaseException:
            # A run that failed before its first snapshot (an unreadable image, say) holds nothing
            # worth resuming: remove it, so the corrected command can run into the same --output.
            if not any(run.snapshots.glob("last.*")):
                discard_run(run)
            raise
        final_metrics(run)
        return run.path
    fit(run, resume=resume, progress=progress)
    final_metrics(run)
    return run.path


def _write_spec(run: Run) -> None:
    from .run import build_spec, write_json

    spec = build_spec(run.cfg, run.project, stride=run.cfg.targets.stride, name=f"{run.project.root.name}-{run.cfg.model.name}")
    write_json(run.path / "spec.json", spec.to_dict())


def evaluate(run_dir: str | Path, snapshot: str = "best") -> dict[str, Any]:
    """Metrics of a run's snapshot on its test and train splits (also written to metrics.json)."""
    run = load_run(run_dir)
    return final_metrics(run, snapshot)
