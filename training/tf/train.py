"""The TensorFlow `Trainer`: the torch recipe (same batches, losses, AdamW) in Keras 3 with a
traced train step; the loop itself is `posezoo.training.loop`, shared with torch.

A snapshot is one Keras ``.weights.h5`` file (``model.load_weights`` reads it as is) with a
``posezoo`` group added before it is renamed into place: the optimizer's variables, the dropout
seed generators' state and the loop state (epoch, elapsed time, best). One file, so the weights and the optimizer state that belong
together are replaced together.

With ``train.devices`` N > 1 the model trains under MirroredStrategy on N devices of this machine:
each replica takes its share of the global batch, divides its losses by normalisers summed over
the replicas, and Keras sums the replicas' gradients, so the step is the single-device step of
the whole batch.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ContextManager

import h5py
import numpy as np

from posezoo.runtime.files import atomic_output
from posezoo.runtime.session import physical_cores

from ..pretrained import imagenet_weights
from ..run import SNAPSHOT_HELP, Run, RunError
from .env import configure_threads, keras, tf
from .infer import extra_layout, forward_fn, to_torch_layout
from .nets import add_heads, create_model, resnet50_from_torchvision

SNAPSHOT_SUFFIX = ".weights.h5"
STATE_GROUP = "posezoo"
TARGET_KEYS = ("image", "heatmap", "locref", "locref_mask", "weight", "paf", "identity")


def snapshot_path(run: Run, snapshot: str) -> Path:
    return run.snapshots / f"{snapshot}{SNAPSHOT_SUFFIX}"


def build_model(run: Run) -> keras.Model:
    """The run's network, with part-affinity and identity heads for a multi-animal project."""
    return add_heads(create_model(run.cfg.model.name, run.channels, **run.cfg.model.kwargs), run.heads())


def _at_least_one(total: Any) -> Any:
    return tf.maximum(total, 1.0)


def multi_losses(extra: list[Any], batch: dict[str, Any], paf_weight: float, identity_weight: float,
                 norm: Callable[[Any], Any] | None = None) -> list[Any]:
    """The torch backend's `multi_losses` in TF: smooth-L1 on the fields averaged over every
    cell, cross-entropy on the identity of cells near a known individual's keypoint. ``norm``
    (under MirroredStrategy) turns a replica's normaliser into the one of the whole batch."""
    paf = tf.convert_to_tensor(batch["paf"], tf.float32)
    diff = tf.abs(extra[0] - paf)
    field = tf.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)
    if norm is None:
        out = [paf_weight * tf.reduce_mean(field)]
    else:
        out = [paf_weight * tf.reduce_sum(field) / norm(tf.cast(tf.size(field), tf.float32))]
    if "identity" in batch:
        target = tf.convert_to_tensor(batch["identity"], tf.int64)
        logits = tf.transpose(extra[1], (0, 2, 3, 1))  # back to classes last
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.maximum(target, 0), logits=logits)
        known = tf.cast(target >= 0, tf.float32)
        out.append(identity_weight * tf.reduce_sum(ce * known) / (norm or _at_least_one)(tf.reduce_sum(known)))
    return out


def losses(outputs: tuple[Any, Any], batch: dict[str, Any], locref_weight: float,
           norm: Callable[[Any], Any] = _at_least_one) -> tuple[Any, Any]:
    """Weighted BCE-with-logits on heatmaps + masked smooth-L1 (beta 1) on locref, normalised
    exactly as the torch loop normalises them; ``outputs`` are the model's NHWC tensors, the
    targets are the data pipeline's (N, K, ...) arrays."""
    logits, locref = to_torch_layout(*outputs)
    heatmap = tf.convert_to_tensor(batch["heatmap"], tf.float32)
    weight = tf.convert_to_tensor(batch["weight"], tf.float32)[:, :, None, None]
    cells = tf.cast(tf.shape(logits)[2] * tf.shape(logits)[3], tf.float32)
    heat = tf.nn.sigmoid_cross_entropy_with_logits(labels=heatmap, logits=logits)
    heat_loss = tf.reduce_sum(heat * weight) / norm(tf.reduce_sum(weight) * cells)
    mask = (tf.convert_to_tensor(batch["locref_mask"], tf.float32) * weight)[:, :, None]
    diff = tf.abs(locref - tf.convert_to_tensor(batch["locref"], tf.float32))
    smooth_l1 = tf.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)
    loc_loss = tf.reduce_sum(smooth_l1 * mask) / norm(2.0 * tf.reduce_sum(mask))
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
    try:
        with h5py.File(path, "r") as fh:
            if STATE_GROUP not in fh:
                raise RunError(f"{path}: not a posezoo TF snapshot (no '{STATE_GROUP}' group)")
            group = fh[STATE_GROUP]
            state = json.loads(group.attrs["state"])
            arrays = {name: [group[name][k][()] for k in sorted(group[name])]
                      for name in ("optimizer", "seed_generators")}
    except (OSError, KeyError, ValueError) as exc:
        raise RunError(f"{path}: not a usable snapshot of this run ({str(exc)[:200]}); {SNAPSHOT_HELP}") from None
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


def _restore(variables: list[Any], arrays: list[np.ndarray], what: str, path: Path) -> None:
    if len(arrays) != len(variables) or any(tuple(a.shape) != tuple(v.shape) for a, v in zip(arrays, variables)):
        raise RunError(f"{path}: its {what} ({len(arrays)} arrays) does not match this run's "
                       f"({len(variables)} variables)")
    for var, value in zip(variables, arrays):
        var.assign(value)


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


def make_strategy(devices: int, device: str, batch_size: int) -> Any:
    """MirroredStrategy over ``devices`` GPUs of this machine (or logical CPU devices where there
    are no GPUs and the process configured several); None for one device."""
    if devices <= 1:
        return None
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")] if device != "cpu" else []
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    names = gpus if gpus else cpus
    if len(names) < devices:
        raise RunError(f"train.devices is {devices} but TensorFlow sees {len(gpus)} GPU(s) and {len(cpus)} CPU "
                       f"device(s); use at most {max(len(gpus), 1)}, or train with torch under torchrun")
    if batch_size % devices:
        raise RunError(f"train.batch_size {batch_size} (the global batch) must be a multiple of train.devices "
                       f"{devices}")
    return tf.distribute.MirroredStrategy(names[:devices])


class TFTrainer:
    """The run's Keras model and AdamW optimiser; snapshots are ``snapshots/{last,best}.weights.h5``."""

    def __init__(self, run: Run) -> None:
        cfg = run.cfg
        self.run = run
        configure_threads(cfg.train.threads or physical_cores())
        keras.utils.set_random_seed(cfg.train.seed)
        self.strategy = make_strategy(cfg.train.devices, cfg.train.device, cfg.train.batch_size)
        with self.strategy.scope() if self.strategy else nullcontext():
            self.model = build_model(run)
            self.opt = make_optimizer(run)
            self.opt.build(self.model.trainable_variables)
        if self.model.pose_stride != cfg.targets.stride:
            raise RunError(f"{run.path / 'config.yaml'}: model {cfg.model.name!r} has output stride "
                           f"{self.model.pose_stride} but targets.stride is {cfg.targets.stride}; make them equal")
        self.device = "auto" if self.strategy else cfg.train.device  # the strategy places the replicas
        self._forward = forward_fn(self.model)
        locref_weight = float(cfg.train.locref_weight)
        model, opt, variables = self.model, self.opt, self.model.trainable_variables
        heads, multi = getattr(self.model, "heads", {}), cfg.multi

        @tf.function
        def train_step(batch: dict[str, Any]) -> tuple[Any, ...]:
            with tf.GradientTape() as tape:
                outputs = model(tf.cast(batch["image"], tf.float32), training=True)
                terms = list(losses(outputs[:2], batch, locref_weight))
                if heads:
                    terms += multi_losses(extra_layout(outputs[2:], heads), batch, multi.paf_weight,
                                          multi.identity_weight)
                total = tf.add_n(terms)  # inside the tape, or it records no path to the weights
            grads = tape.gradient(total, variables)
            opt.apply_gradients(zip(grads, variables))
            return tuple(terms)

        self._train_step = train_step if self.strategy is None else self._mirrored_step(locref_weight)

    def path(self, name: str) -> Path:
        return snapshot_path(self.run, name)

    def has_snapshot(self, name: str) -> bool:
        return self.path(name).is_file()

    def _mirrored_step(self, locref_weight: float) -> Callable[[dict[str, np.ndarray]], tuple[Any, ...]]:
        """The train step under MirroredStrategy: a global batch in, the whole batch's losses out."""
        strategy, model, opt = self.strategy, self.model, self.opt
        variables = model.trainable_variables
        heads, multi = getattr(model, "heads", {}), self.run.cfg.multi
        total_sum = tf.distribute.ReduceOp.SUM

        def norm(total: Any) -> Any:  # a replica's normaliser -> the whole batch's
            return tf.maximum(tf.distribute.get_replica_context().all_reduce(total_sum, total), 1.0)

        def replica_step(batch: dict[str, Any]) -> tuple[Any, ...]:
            with tf.GradientTape() as tape:
                outputs = model(tf.cast(batch["image"], tf.float32), training=True)
                terms = list(losses(outputs[:2], batch, locref_weight, norm))
                if heads:
                    terms += multi_losses(extra_layout(outputs[2:], heads), batch, multi.paf_weight,
                                          multi.identity_weight, norm)
                total = tf.add_n(terms)
            opt.apply_gradients(zip(tape.gradient(total, variables), variables))  # Keras sums over replicas
            return tuple(terms)

        @tf.function
        def step(batch: Any) -> tuple[Any, ...]:
            return tuple(strategy.reduce(total_sum, t, axis=None) for t in strategy.run(replica_step, args=(batch,)))

        replicas = strategy.num_replicas_in_sync

        def run(batch: dict[str, np.ndarray]) -> tuple[Any, ...]:
            def share(ctx: Any) -> dict[str, np.ndarray]:
                n = len(batch["image"]) // replicas
                i = ctx.replica_id_in_sync_group
                return {k: v[i * n:(i + 1) * n] for k, v in batch.items()}

            return step(strategy.experimental_distribute_values_from_function(share))

        return run

    def step(self, batch: dict[str, np.ndarray], lr: float) -> tuple[float, ...]:
        self.opt.learning_rate = lr
        with device_scope(self.device):
            terms = self._train_step({k: batch[k] for k in TARGET_KEYS if k in batch})
        return tuple(float(t) for t in terms)

    def forward(self, frames: np.ndarray) -> tuple[np.ndarray, ...]:
        with device_scope(self.device):
            out = self._forward(tf.constant(frames))
        return tuple(t.numpy() for t in out)

    def save(self, name: str, state: dict[str, Any]) -> None:
        save_snapshot(self.path(name), self.model, self.opt, state)

    def restore(self, name: str) -> dict[str, Any]:
        path = self.path(name)
        state, arrays = read_state(path)
        load_weights(self.model, path)
        _restore(self.opt.variables, arrays["optimizer"], "optimizer state", path)
        _restore(_seed_states(self.model), arrays["seed_generators"], "dropout seed state", path)
        return state

    def initialise(self, snapshot: Path) -> tuple[int, int]:
        """Load another run's snapshot, skipping the layers whose shapes differ (the heads of
        another keypoint set); returns how many weights changed, of all."""
        before = [w.numpy() for w in self.model.weights]
        try:
            self.model.load_weights(str(snapshot), skip_mismatch=True)
        except (ValueError, KeyError, OSError) as exc:
            raise RunError(f"{snapshot}: not a usable posezoo TF snapshot for this network ({exc})") from None
        changed = sum(not np.array_equal(b, w.numpy()) for b, w in zip(before, self.model.weights))
        return changed, len(before)

    def initialise_imagenet(self) -> tuple[int, int]:
        """Start the backbone from its ImageNet weights (`posezoo.training.pretrained`)."""
        arrays = imagenet_weights(self.model.name)  # refuses networks without public weights
        return resnet50_from_torchvision(self.model, arrays), len(self.model.weights)

    def state_arrays(self) -> list[tuple[str, np.ndarray]]:
        """The weights as (name, array) pairs, for the exported model's weights hash."""
        return [(var.path, np.ascontiguousarray(var.numpy())) for var in self.model.weights]
