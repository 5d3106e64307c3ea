"""The TensorFlow training loop: the torch loop's recipe (same batches, losses, AdamW, LR
schedule, log.csv, evaluation) in Keras 3 with a traced train step, atomic snapshots and exact
resume.

A snapshot is one Keras ``.weights.h5`` file (``model.load_weights`` reads it as is) with a
``posezoo`` group added before it is renamed into place: the optimizer's variables, the dropout
seed generators' state and the loop state (epoch, elapsed time, best). One file, so the weights and the optimizer state that belong
together are replaced together.
"""
from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ContextManager

import h5py
import numpy as np
from tqdm.auto import tqdm

from posezoo.runtime.files import atomic_output, copy_atomic
from posezoo.runtime.metrics import evaluate_keypoints
from posezoo.runtime.session import physical_cores

from ..run import Run, RunError, append_log, truncate_log, write_json
from ..schedule import lr_at
from .env import configure_threads, keras, tf
from .infer import forward_fn, predict_frames, to_torch_layout
from .nets import create_model

SNAPSHOT_SUFFIX = ".weights.h5"
STATE_GROUP = "posezoo"
TARGET_KEYS = ("image", "heatmap", "locref", "locref_mask", "weight")


def snapshot_path(run: Run, snapshot: str) -> Path:
    return run.snapshots / f"{snapshot}{SNAPSHOT_SUFFIX}"


def build_model(run: Run) -> keras.Model:
    return create_model(run.cfg.model.name, len(run.project.bodyparts), **run.cfg.model.kwargs)


def losses(outputs: tuple[Any, Any], batch: dict[str, Any], locref_weight: float) -> tuple[Any, Any]:
    """Weighted BCE-with-logits on heatmaps + masked smooth-L1 (beta 1) on locref, normalised
    exactly as the torch loop normalises them; ``outputs`` are the model's NHWC tensors, the
    targets are the data pipeline's (N, K, ...) arrays."""
    logits, locref = to_torch_layout(*outputs)
    heatmap = tf.convert_to_tensor(batch["heatmap"], tf.float32)
    weight = tf.convert_to_tensor(batch["weight"], tf.float32)[:, :, None, None]
    cells = tf.cast(tf.shape(logits)[2] * tf.shape(logits)[3], tf.float32)
    heat = tf.nn.sigmoid_cross_entropy_with_logits(labels=heatmap, logits=logits)
    heat_loss = tf.reduce_sum(heat * weight) / tf.maximum(tf.reduce_sum(weight) * cells, 1.0)
    mask = (tf.convert_to_tensor(batch["locref_mask"], tf.float32) * weight)[:, :, None]
    diff = tf.abs(locref - tf.convert_to_tensor(batch["locref"], tf.float32))
    smooth_l1 = tf.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)
    loc_loss = tf.reduce_sum(smooth_l1 * mask) / tf.maximum(2.0 * tf.reduce_sum(mask), 1.0)
    return heat_loss, locref_weight * loc_loss


def make_optimizer(run: Run) -> keras.optimizers.Optimizer:
    opt_cfg = run.cfg.optimizer
    # torch.optim.AdamW's defaults (Keras' epsilon is 1e-7); decay applies to every weight, as there.
    return keras.optimizers.AdamW(learning_rate=opt_cfg.lr, weight_decay=opt_cfg.weight_decay,
                                  beta_1=0.9, beta_2=0.999, epsilon=1e-8)


def save_snapshot(path: Path, model: keras.Model, opt: keras.optimizers.Optimizer, state: dict[str, Any]) -> None:
    """Weights + optimizer + loop state into a temporary file, then rename: a kill -9 never
    leaves half a snapshot."""
    with atomic_output(path, suffix=SNAPSHOT_SUFFIX) as tmp:  # Keras wants the real ending
        model.save_weights(str(tmp), overwrite=True)
        with h5py.File(tmp, "a") as fh:
            group = fh.create_group(STATE_GROUP)
            group.attrs["state"] = json.dumps(state)
            for name, variables in (("optimizer", opt.variables), ("seed_generators", _seed_states(model))):
                sub = group.create_group(name)
                for i, var in enumerate(variables):
                    sub.create_dataset(f"{i:04d}", data=np.asarray(var.numpy()))


def read_state(path: Path) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """The loop state and the arrays of the optimizer's variables and of the model's dropout
    seed generators (their state is not among Keras' weights) stored in a snapshot."""
    if not path.is_file():
        raise FileNotFoundError(f"snapshot not found: {path}")
    with h5py.File(path, "r") as fh:
        if STATE_GROUP not in fh:
            raise RunError(f"{path}: not a posezoo TF snapshot (no '{STATE_GROUP}' group)")
        group = fh[STATE_GROUP]
        state = json.loads(group.attrs["state"])
        arrays = {name: [group[name][k][()] for k in sorted(group[name])]
                  for name in ("optimizer", "seed_generators")}
    return state, arrays


def _seed_states(model: keras.Model) -> list[Any]:
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def load_weights(model: keras.Model, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"snapshot not found: {path}")
    try:
        model.load_weights(str(path))
    except (ValueError, KeyError) as exc:
        raise RunError(f"{path}: the snapshot does not fit the model {model.name!r} of this run ({exc})") from None


def load_model(run: Run, snapshot: str = "best") -> keras.Model:
    """The run's network with the weights of ``snapshot`` ("best" or "last")."""
    model = build_model(run)
    load_weights(model, snapshot_path(run, snapshot))
    return model


def _restore(variables: list[Any], arrays: list[np.ndarray], what: str, path: Path) -> None:
    if len(arrays) != len(variables) or any(tuple(a.shape) != tuple(v.shape) for a, v in zip(arrays, variables)):
        raise RunError(f"{path}: its {what} ({len(arrays)} arrays) does not match this run's "
                       f"({len(variables)} variables)")
    for var, value in zip(variables, arrays):
        var.assign(value)


def evaluate_split(model: keras.Model, run: Run, indices: list[int], forward: Any = None) -> dict[str, Any]:
    """Metrics on project images through the framework inference path (same geometry as ONNX)."""
    if not indices:
        return {}
    pred = predict_frames(model, run.frames(indices), run.spec, forward=forward)
    gt = run.project.keypoints[indices]
    return evaluate_keypoints(gt[:, None], pred[:, None], pcutoff=run.project.pcutoff)


def device_scope(device: str) -> ContextManager[Any]:
    """``train.device`` as a TF device scope; "auto" lets TF place ops (a GPU when present)."""
    if device == "auto":
        return nullcontext()
    if device == "cpu":
        return tf.device("/CPU:0")
    index = int(device.split(":")[1]) if ":" in device else 0
    gpus = tf.config.list_physical_devices("GPU")
    if index >= len(gpus):
        raise RunError(f"train.device is {device!r} but TensorFlow sees {len(gpus)} GPU(s); "
                       "use device: auto or cpu")
    return tf.device(f"/GPU:{index}")


def fit(run: Run, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    cfg = run.cfg
    configure_threads(cfg.train.threads or physical_cores())
    keras.utils.set_random_seed(cfg.train.seed)
    model = build_model(run)
    if model.pose_stride != cfg.targets.stride:
        raise RunError(f"{run.path / 'config.yaml'}: model {cfg.model.name!r} has output stride "
                       f"{model.pose_stride} but targets.stride is {cfg.targets.stride}; make them equal")
    opt = make_optimizer(run)
    opt.build(model.trainable_variables)
    last_path, best_path = snapshot_path(run, "last"), snapshot_path(run, "best")
    start_epoch, elapsed, best = 0, 0.0, {"test_rmse": math.inf, "epoch": -1}
    log_path = run.path / "log.csv"
    if resume and last_path.is_file():
        state, arrays = read_state(last_path)
        load_weights(model, last_path)
        _restore(opt.variables, arrays["optimizer"], "optimizer state", last_path)
        _restore(_seed_states(model), arrays["seed_generators"], "dropout seed state", last_path)
        start_epoch, elapsed, best = state["epoch"] + 1, state["elapsed_s"], state["best"]
        truncate_log(log_path, start_epoch)
    elif log_path.exists():
        log_path.unlink()

    loader = run.train_loader()
    steps = len(loader)
    deadline = cfg.train.time_limit_minutes * 60 if cfg.train.time_limit_minutes else math.inf
    locref_weight = float(cfg.train.locref_weight)
    variables = model.trainable_variables

    @tf.function
    def train_step(batch: dict[str, Any]) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            outputs = model(tf.cast(batch["image"], tf.float32), training=True)
            heat_loss, loc_loss = losses(outputs, batch, locref_weight)
            total = heat_loss + loc_loss  # inside the tape, or it records no path to the weights
        grads = tape.gradient(total, variables)
        opt.apply_gradients(zip(grads, variables))
        return heat_loss, loc_loss

    forward = forward_fn(model)
    bar = tqdm(range(start_epoch, cfg.train.epochs), initial=start_epoch, total=cfg.train.epochs,
               desc=f"train {cfg.model.name} (tf)", unit="epoch", disable=not progress, dynamic_ncols=True)
    epoch = start_epoch - 1
    with device_scope(cfg.train.device):
        for epoch in bar:
            loader.set_epoch(epoch)
            t0 = time.perf_counter()
            sums = np.zeros(2)
            lr = cfg.optimizer.lr
            for step, batch in enumerate(loader):
                lr = lr_at(epoch + step / steps, cfg)
                opt.learning_rate = lr
                heat_loss, loc_loss = train_step({k: batch[k] for k in TARGET_KEYS})
                sums += (float(heat_loss), float(loc_loss))
            elapsed += time.perf_counter() - t0
            row: dict[str, Any] = {"epoch": epoch, "step": (epoch + 1) * steps, "loss": sums.sum() / steps,
                                   "heatmap_loss": sums[0] / steps, "locref_loss": sums[1] / steps,
                                   "lr": lr, "elapsed_s": round(elapsed, 2)}
            last = epoch == cfg.train.epochs - 1 or elapsed >= deadline
            if (epoch + 1) % cfg.train.eval_every == 0 or last:
                m = evaluate_split(model, run, run.split.test, forward)
                row.update(test_rmse=m.get("rmse"), test_rmse_pcutoff=m.get("rmse_pcutoff"), test_mAP=m.get("mAP"))
                bar.set_postfix(loss=f"{row['loss']:.4f}", test_rmse=f"{m.get('rmse', float('nan')):.2f}px")
            else:
                bar.set_postfix(loss=f"{row['loss']:.4f}")
            state = {"epoch": epoch, "elapsed_s": elapsed, "best": best, "model_name": cfg.model.name}
            if row.get("test_rmse") is not None and row["test_rmse"] < best["test_rmse"]:
                best = {"test_rmse": row["test_rmse"], "epoch": epoch}
                state["best"] = best
                save_snapshot(best_path, model, opt, state)
            save_snapshot(last_path, model, opt, state)
            append_log(log_path, row)
            if elapsed >= deadline:
                bar.write(f"time limit of {cfg.train.time_limit_minutes} min reached after epoch {epoch}")
                break
    bar.close()
    if not best_path.exists() and last_path.exists():
        copy_atomic(last_path, best_path)
    return {"epochs_done": epoch + 1, "elapsed_s": elapsed, "best": best}


def final_metrics(run: Run, snapshot: str = "best") -> dict[str, Any]:
    """Metrics of a snapshot on the test and train splits; written to metrics.json."""
    model = load_model(run, snapshot)
    forward = forward_fn(model)
    result = {"snapshot": snapshot, "test": evaluate_split(model, run, run.split.test, forward),
              "train": evaluate_split(model, run, run.split.train, forward)}
    write_json(run.path / "metrics.json", result)
    return result
