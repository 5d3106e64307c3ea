"""`export(run_dir, output)`: a trained run becomes one self-describing .onnx file.

Every export embeds the spec with full provenance and passes a parity gate: the framework model
(through the training code's own inference path) and onnxruntime (through `PoseModel`) must agree
on real frames of the run's project. Optional fp16/int8 variants are written beside the fp32 file
and refused when their test error grows by more than a stated bound.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import onnx

from posezoo.runtime.files import weights_sha256
from posezoo.runtime.metrics import evaluate_poses, to_jsonable
from posezoo.runtime.model import PoseModel
from posezoo.runtime.poses import Poses
from posezoo.runtime.spec import OutputSpec, Spec, embed_spec
from posezoo.runtime.version import version
from posezoo.training.loop import Trainer
from posezoo.training.predict import Predictor, predictor
from posezoo.training.run import Run, backend_module, load_run

PARITY_TOLERANCE_PX = 0.5
VARIANT_BOUNDS_PX = {"fp16": 0.2, "int8": 0.5}
PARITY_FRAMES = 16
STAGING_PREFIX = ".posezoo-export-"
_CONVERTERS = {"torch": "posezoo.export.torch_onnx", "tf": "posezoo.export.tf_onnx"}


class ExportError(RuntimeError):
    """The export was refused (parity gate, variant accuracy); the message carries the figures."""


@dataclass
class Exported:
    """What an export wrote: the fp32 model and its variants, with their figures."""

    path: Path
    spec: Spec
    variants: dict[str, Path]


def export(run_dir: str | Path, output: str | Path | None = None, *, heatmaps: bool = False,
           fp16: bool = False, int8: bool = False, force: bool = False, overwrite: bool = False,
           snapshot: str = "best", tolerance_px: float = PARITY_TOLERANCE_PX,
           progress: Callable[[str], None] = print) -> Exported:
    """Export a training run; an existing ``output`` (or variant) is replaced only with ``overwrite``."""
    run = load_run(run_dir)
    output = Path(output) if output else run.path / "exports" / "model.onnx"
    check_output(output, [n for n, wanted in (("fp16", fp16), ("int8", int8)) if wanted], overwrite)
    backend_module(run.backend)  # a missing framework is named with the extra to install
    spec = run.spec
    with staging_dir(output.parent) as tmpdir:
        raw = Path(tmpdir) / "raw.onnx"
        framework, weights_sha, versions = _write_graph(run, snapshot, spec, raw, heatmaps)
        if heatmaps:
            spec.outputs["heatmaps"] = OutputSpec(
                "heatmaps", ["batch", len(spec.keypoints) + len(spec.unique_keypoints), "heatmap_height",
                             "heatmap_width"],
                "per-keypoint probability maps at the decode stride (sigmoid applied)")
        spec.provenance = _provenance(run, snapshot, weights_sha, versions)
        model = onnx.load(raw)

        progress("parity gate: framework vs onnxruntime on the project's frames")
        staged = write_model(model, spec, Path(tmpdir) / "fp32.onnx")
        frames, idx = _parity_frames(run)
        parity = check_parity(framework(frames), PoseModel.load(staged, device="cpu").predict(frames, color="rgb"),
                              tolerance_px)
        parity["frames"] = [run.project.images[i] for i in idx][:4] + ([f"... {len(idx)} in all"] if len(idx) > 4 else [])
        spec.provenance["parity"] = parity
        if not parity["passed"]:
            raise ExportError(f"parity gate failed: onnxruntime and {run.backend} differ by up to "
                              f"{parity['max_px_diff']:.3f} px (mean {parity['mean_px_diff']:.3f} px) on "
                              f"{parity['n_frames']} frames; tolerance {tolerance_px} px")
        test_fp32 = held_out_metrics(run, staged)
        spec.provenance["metrics"]["export_test"] = test_fp32
        write_model(model, spec, staged)
        os.replace(staged, output)
        progress(f"wrote {output} (parity max {parity['max_px_diff']:.4f} px; test rmse {test_fp32.get('rmse', float('nan')):.2f} px)")

        variants: dict[str, Path] = {}
        for name, wanted in (("fp16", fp16), ("int8", int8)):
            if not wanted:
                continue
            from .variants import calibration_frames, make_variant

            progress(f"{name}: converting" + (" (calibrating on the project's training frames)" if name == "int8" else ""))
            target = variant_path(output, name)
            vmodel = make_variant(name, output, calibration_frames(run), Path(tmpdir))
            vspec = Spec.from_dict(spec.to_dict())
            vspec.provenance["precision"] = name
            vstaged = write_model(vmodel, vspec, Path(tmpdir) / f"{name}.onnx")
            test_v = held_out_metrics(run, vstaged)
            change = test_v.get("rmse", np.nan) - test_fp32.get("rmse", np.nan)
            vspec.provenance["variant_accuracy"] = {"test_rmse": test_v.get("rmse"), "fp32_test_rmse": test_fp32.get("rmse"),
                                                    "rmse_change_px": change, "bound_px": VARIANT_BOUNDS_PX[name]}
            vspec.provenance["metrics"]["export_test"] = test_v
            if not change <= VARIANT_BOUNDS_PX[name] and not force:
                raise ExportError(f"{name} variant refused: test rmse {test_v.get('rmse'):.3f} px vs fp32 "
                                  f"{test_fp32.get('rmse'):.3f} px (+{change:.3f} px > bound {VARIANT_BOUNDS_PX[name]} px); "
                                  "use --force to write it anyway")
            write_model(vmodel, vspec, vstaged)
            os.replace(vstaged, target)
            variants[name] = target
            progress(f"wrote {target} (test rmse {test_v.get('rmse'):.2f} px, change {change:+.3f} px)")
    return Exported(output, spec, variants)


def check_output(output: Path, variants: list[str], overwrite: bool) -> None:
    """Refuse a wrong name, or replacing a model (or a variant beside it) unless ``overwrite``."""
    if output.suffix != ".onnx":
        raise ValueError(f"--output must end in .onnx, got {output}")
    targets = [output] + [variant_path(output, name) for name in variants]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace, or choose "
                              "another --output")
    output.parent.mkdir(parents=True, exist_ok=True)


def variant_path(output: Path, name: str) -> Path:
    """Where the ``name`` variant of ``output`` goes: ``model.int8.onnx`` beside ``model.onnx``."""
    return output.with_name(f"{output.stem}.{name}.onnx")


@contextlib.contextmanager
def staging_dir(folder: Path) -> Iterator[str]:
    """A temporary folder beside the output (renames stay on one file system), named with this
    process's id, after removing the ones left by exports that were killed."""
    for stale in folder.glob(f"{STAGING_PREFIX}*"):
        pid = stale.name[len(STAGING_PREFIX):].split("-")[0]
        if stale.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=folder) as tmpdir:
        yield tmpdir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def check_parity(framework: Poses, runtime: Poses, tolerance_px: float) -> dict[str, Any]:
    """How far the exported graph's poses are from the framework's on the same frames.

    Several animals are compared as assembled: each frame's runtime animals are paired with the
    framework's (Hungarian on mean keypoint distance, since rows carry no identity before
    tracking); a keypoint found on one side and not on the other fails the gate.
    """
    n_frames = len(framework)
    multi = not framework.single_animal
    fw, rt = framework.coords, runtime.coords
    if multi:
        rt = _paired(fw, rt)
        if framework.unique is not None and runtime.unique is not None:
            fw = np.concatenate([fw.reshape(n_frames, -1, 3), framework.unique], axis=1)
            rt = np.concatenate([rt.reshape(n_frames, -1, 3), runtime.unique], axis=1)
    diff = np.linalg.norm(fw[..., :2] - rt[..., :2], axis=-1)
    finite = np.isfinite(diff)
    found_fw, found_rt = np.isfinite(fw[..., :2]).all(-1), np.isfinite(rt[..., :2]).all(-1)
    max_diff = float(diff[finite].max()) if finite.any() else float("nan")
    agree = bool((found_fw == found_rt).all()) if multi else bool(finite.all())
    result = {"n_frames": int(n_frames), "max_px_diff": max_diff,
              "mean_px_diff": float(diff[finite].mean()) if finite.any() else float("nan"),
              "max_score_diff": float(np.nanmax(np.abs(fw[..., 2] - rt[..., 2]))) if finite.any() else float("nan"),
              "tolerance_px": tolerance_px,
              # several animals: frames where neither side finds one agree too (an untrained model)
              "passed": bool(agree and (max_diff <= tolerance_px or (multi and not finite.any())))}
    if multi:
        result["assembled_keypoints"] = int(finite.sum())
        result["keypoints_found_on_one_side_only"] = int((found_fw != found_rt).sum())
    return result


def _paired(framework: np.ndarray, runtime: np.ndarray) -> np.ndarray:
    """``runtime`` (N, I, K, 3) with each frame's animals reordered to match ``framework``'s."""
    from scipy.optimize import linear_sum_assignment

    out = runtime.copy()
    for f in range(len(framework)):
        d = np.linalg.norm(framework[f, :, None, :, :2] - runtime[f, None, :, :, :2], axis=-1)  # (I, I, K)
        both = np.isfinite(d)
        cost = np.where(both.any(-1), np.where(both, d, 0).sum(-1) / np.maximum(both.sum(-1), 1), 1e6)
        rows, cols = linear_sum_assignment(cost)
        out[f, rows] = runtime[f, cols]
    return out


def write_model(model: onnx.ModelProto, spec: Spec, path: Path) -> Path:
    """Embed ``spec`` (with the fingerprints) and save ``model`` to ``path``."""
    embed_spec(model, spec)
    onnx.save(model, path)
    return path


def _parity_frames(run: Run) -> tuple[list[np.ndarray], list[int]]:
    idx = (list(run.split.test) + list(run.split.train))[:PARITY_FRAMES]
    return run.frames(idx), idx


def held_out_metrics(run: Run, model_path: Path) -> dict[str, Any]:
    idx = list(run.split.test) or list(run.split.train)
    pred = PoseModel.load(model_path, device="cpu").predict(run.frames(idx), color="rgb")
    m = evaluate_poses(run.project.labels[idx], pred, pcutoff=run.project.pcutoff)
    keep = ("rmse", "rmse_pcutoff", "mAP", "mAR", "n_images")
    return to_jsonable({k: m[k] for k in keep if k in m} | {"split": "test" if run.split.test else "train"})


def _provenance(run: Run, snapshot: str, weights_sha: str, versions: dict[str, str]) -> dict[str, Any]:
    import json

    metrics_file = run.path / "metrics.json"
    train_metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    versions = versions | {name: version(name) for name in ("onnx", "onnxruntime", "posezoo")}
    proj = run.project
    return {
        "backend": run.backend,
        "framework_versions": versions,
        "model": run.cfg.model.name,
        "dataset": {"project": proj.root.name, "task": proj.config.raw.get("Task"), "scorer": proj.config.scorer,
                    "n_images": len(proj), "n_train": len(run.split.train), "n_test": len(run.split.test)},
        "train_config_sha256": run.cfg.hash(),
        "snapshot": snapshot,
        "weights_sha256": weights_sha,
        "metrics": {"train_run": _summary(train_metrics)},
        "precision": "fp32",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    keep = ("rmse", "rmse_pcutoff", "mAP", "mAR")
    return {split: {k: metrics[split][k] for k in keep if k in metrics[split]}
            for split in ("train", "test") if isinstance(metrics.get(split), dict)}


def _write_graph(run: Run, snapshot: str, spec: Spec, path: Path, heatmaps: bool
                 ) -> tuple[Predictor, str, dict[str, str]]:
    """Restore the snapshot in the run's backend, write its graph to ``path`` with the backend's
    converter; the framework predictor (for the parity gate), the weights' sha256, the versions."""
    trainer: Trainer = backend_module(run.backend).trainer(run)
    trainer.restore(snapshot)
    versions = importlib.import_module(_CONVERTERS[run.backend]).to_onnx(trainer, spec, path, heatmaps)
    return predictor(trainer.forward, spec), weights_sha256(trainer.state_arrays()), versions
