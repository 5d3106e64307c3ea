"""`from_deeplabcut`: a trained DeepLabCut model becomes one self-describing posezoo .onnx file.

The network is rebuilt in plain torch (dlc3.py / dlc2.py), wrapped with DeepLabCut's own
normalisation and decode (graph.py), traced to ONNX, and passes the same parity gate as every
posezoo export: the torch rebuild and onnxruntime (through `PoseModel`) must agree on real frames
(the project's labeled frames when its config.yaml is found above the model) within
``tolerance_px`` and 0.01 in score, or nothing is written.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import onnx
import torch

from posezoo.runtime import geometry
from posezoo.runtime.assemble import poses_from_candidates
from posezoo.runtime.files import weights_sha256
from posezoo.runtime.metrics import to_jsonable
from posezoo.runtime.model import PoseModel
from posezoo.runtime.poses import Poses
from posezoo.runtime.spec import (AssemblySpec, DecodeSpec, InputSpec, MultiAnimalSpec, OutputSpec, PreprocessSpec,
                                  Spec)
from posezoo.runtime.version import version

from ..core import ExportError, Exported, check_output, check_parity, staging_dir, variant_path, write_model
from .dlc3 import Imported
from .errors import DeepLabCutModelError
from .graph import DeepLabCutGraph, export_onnx
from .paf import PAF_POINTS, DeepLabCutPafGraph, PafDecode
from .source import Located, find_project_config, locate, read_yaml

PARITY_FRAMES = 16
SCORE_TOLERANCE = 0.01
#: largest mean keypoint change (px) a variant may bring against the fp32 model on the gate frames
VARIANT_BOUNDS_PX = {"fp16": 0.2, "int8": 0.5}


def from_deeplabcut(source: str | Path, output: str | Path | None = None, *, snapshot: str | int = "best",
                    tolerance_px: float = 0.5, name: str | None = None, heatmaps: bool = False, fp16: bool = False,
                    int8: bool = False, force: bool = False, overwrite: bool = False,
                    frames: Sequence[np.ndarray] | None = None, progress: Callable[[str], None] = print) -> Exported:
    """Import a DeepLabCut model (see `source.LAYOUTS`) into ``output`` (.onnx, written atomically).

    ``heatmaps`` adds the maps as a last output (N, K, h, w). ``frames`` (RGB uint8) replace the
    project's labeled frames for the parity gate and the int8 calibration; without either,
    synthetic frames are used and the provenance says so. A multi-animal model (part-affinity
    fields) becomes a posezoo multi-animal graph: candidates and affinities, assembled by the
    runtime; its gate compares the assembled animals.
    """
    located = locate(source, snapshot)
    progress(f"DeepLabCut {located.engine} model: {located.weights} ({located.snapshot})")
    imported, extra = _import(located)
    project_cfg = find_project_config(located.config_path, extra.pop("project_hint", None))
    project = read_yaml(project_cfg) if project_cfg else {}
    spec = _spec(imported, located, project, name)
    output = Path(output) if output else Path.cwd() / f"{spec.name}.onnx"
    check_output(output, [n for n, wanted in (("fp16", fp16), ("int8", int8)) if wanted], overwrite)
    graph = (DeepLabCutPafGraph if imported.multi else DeepLabCutGraph)(
        imported.net, imported.normalize, imported.decode, heatmaps).eval()  # type: ignore[arg-type]
    if heatmaps:
        spec.outputs["heatmaps"] = OutputSpec("heatmaps", ["batch", len(spec.keypoints), "heatmap_height", "heatmap_width"],
                                              "per-keypoint maps at the decode stride, as DeepLabCut scores them "
                                              f"({'sigmoid' if imported.decode.sigmoid else 'raw'})")
    gate, frames_note = _gate_frames(frames, project_cfg)
    spec.provenance = _provenance(located, imported, project_cfg, project, extra)
    with staging_dir(output.parent) as tmpdir:
        raw = Path(tmpdir) / "raw.onnx"
        progress("tracing to ONNX")
        export_onnx(graph, spec.input.name, raw)
        model = onnx.load(raw)
        staged = write_model(model, spec, Path(tmpdir) / "fp32.onnx")

        progress(f"parity gate: torch rebuild vs onnxruntime on {len(gate)} {frames_note}")
        runtime = PoseModel.load(staged, device="cpu")
        fp32 = runtime.predict(gate, color="rgb")
        parity = compare(predict_torch(graph, spec, gate), fp32, tolerance_px)
        parity["frames"] = frames_note
        spec.provenance["parity"] = parity
        if not parity["passed"]:
            raise ExportError(f"parity gate failed for {located.weights}: onnxruntime and the torch rebuild differ "
                              f"by up to {parity['max_px_diff']:.3f} px and {parity['max_score_diff']:.4f} in score on "
                              f"{parity['n_frames']} frames; tolerance {tolerance_px} px, {SCORE_TOLERANCE} score")
        write_model(model, spec, staged)
        os.replace(staged, output)
        progress(f"wrote {output} (parity max {parity['max_px_diff']:.4f} px, score {parity['max_score_diff']:.2e})")

        variants: dict[str, Path] = {}
        for kind, wanted in (("fp16", fp16), ("int8", int8)):
            if wanted:
                variants[kind] = _variant(kind, output, spec, gate, fp32, Path(tmpdir), force, progress)
    return Exported(output, spec, variants)


def _import(located: Located) -> tuple[Imported, dict[str, Any]]:
    if located.engine == "pytorch":
        from .dlc3 import build

        cfg, state, meta = _load_pytorch(located)
        imported = build(cfg, state, located.weights)
        extra = {"snapshot_metadata": meta, "project_hint": (cfg.get("metadata") or {}).get("project_path"),
                 "weights_sha256": weights_sha256((k, state[k].detach().cpu().numpy()) for k in sorted(state)), "versions": {"torch": torch.__version__}}
        return imported, extra
    from .dlc2 import build_tf

    return build_tf(located)


def _load_pytorch(located: Located) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    blob = torch_load(located.weights)
    if located.layout == "exported-file":
        if not isinstance(blob, dict) or "config" not in blob or "pose" not in blob:
            raise DeepLabCutModelError(f"{located.weights}: not a deeplabcut.export_model file (needs 'config' and "
                                       f"'pose'; found {sorted(blob) if isinstance(blob, dict) else type(blob).__name__})")
        return dict(blob["config"]), blob["pose"], {}
    if not isinstance(blob, dict) or "model" not in blob:
        raise DeepLabCutModelError(f"{located.weights}: a DeepLabCut snapshot holds 'model' (the state_dict); found "
                                   f"{sorted(blob) if isinstance(blob, dict) else type(blob).__name__}")
    return read_yaml(located.config_path), blob["model"], dict(blob.get("metadata") or {})


def torch_load(path: Path) -> Any:
    """``torch.load`` restricted to tensors, plain containers and the numpy scalars that
    DeepLabCut's snapshot metadata holds (a plain ``weights_only=True`` load refuses those)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray  # type: ignore[no-redef]
    allowed: list[Any] = [np.ndarray, np.dtype] + [type(np.dtype(c)) for c in "?bBhHiIlLqQefdFD"]
    for func in ("scalar", "_reconstruct"):  # pickled under numpy 1's or numpy 2's module name
        allowed += [(getattr(multiarray, func), f"{module}.{func}") for module in ("numpy.core.multiarray",
                                                                                 "numpy._core.multiarray")]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise DeepLabCutModelError(f"{path}: cannot read it as PyTorch weights ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0][:300]})") from None


def _spec(imported: Imported, located: Located, project: dict[str, Any], name: str | None) -> Spec:
    stride = imported.decode.stride
    if stride != int(stride):
        raise DeepLabCutModelError(f"{located.weights}: output stride {stride} is not a whole number of pixels")
    keypoints = imported.keypoints
    skeleton = [[a, b] for pair in project.get("skeleton") or [] if isinstance(pair, (list, tuple)) and len(pair) == 2
                for a, b in [pair] if a in keypoints and b in keypoints]
    pcutoff = project.get("pcutoff", 0.6)
    score = "raw map clipped to [0, 1]" if imported.decode.clip and not imported.decode.sigmoid else \
        "sigmoid" if imported.decode.sigmoid else "raw map"
    engine = "DeepLabCut 3" if located.engine == "pytorch" else "DeepLabCut 2"
    common: dict[str, Any] = {
        "name": name or _default_name(located, project, imported.net_type),
        "keypoints": list(keypoints),
        "input": InputSpec(color=imported.color, size_multiple=imported.size_multiple),
        "preprocess": PreprocessSpec(resize="none", scale=1.0, interpolation="linear", pad_value=0),
        "skeleton": skeleton,
        "pcutoff": float(pcutoff) if isinstance(pcutoff, (int, float)) and 0 <= pcutoff <= 1 else 0.6,
    }
    if isinstance(imported.decode, PafDecode):
        return Spec(**common, **_multi_sections(imported, imported.decode, score)).validate(str(located.weights))
    return Spec(**common, decode=DecodeSpec(method=f"argmax+locref ({engine}; score: {score})", stride=int(stride),
                                            offset=stride / 2, locref_scale=imported.decode.locref_std),
                ).validate(str(located.weights))


def _multi_sections(imported: Imported, d: PafDecode, score: str) -> dict[str, Any]:
    """A part-affinity-field model's spec sections: posezoo's multi-animal contract with DeepLabCut's
    assembler settings."""
    keypoints, k, unique = imported.keypoints, d.candidates, imported.unique_keypoints
    graph = [[keypoints[s], keypoints[t]] for s, t in d.edges]
    outputs = {
        "keypoints": OutputSpec("keypoints", ["batch", len(keypoints), 3],
                                "x, y, score per keypoint in input-tensor pixels (the best candidate)"),
        "candidates": OutputSpec("candidates", ["batch", len(keypoints) + len(unique), k, 3],
                                 "x, y, score of the best peaks per keypoint, input-tensor pixels, by descending score "
                                 "(then each unique keypoint's best cell)"),
        "affinities": OutputSpec("affinities", ["batch", len(graph), k, k],
                                 "DeepLabCut's part-affinity score of each candidate pair of each multi.graph edge"),
    }
    method = (f"peaks+locref+paf (DeepLabCut 3 PartAffinityFieldPredictor; score: {score} smoothed by a Gaussian of "
              f"sigma {d.sigma}, peaks: {d.nms_radius}x{d.nms_radius} max-pool >= 0.01; affinity: trapezoid line "
              f"integral over {PAF_POINTS} cells, rounded to 3 decimals)")
    return {"outputs": outputs,
            "decode": DecodeSpec(method=method, stride=int(d.stride), offset=d.offset, locref_scale=d.locref_std),
            "multi": MultiAnimalSpec(individuals=list(imported.individuals), graph=graph,
                                     max_animals=min(k, len(imported.individuals)), candidates=k,
                                     unique_keypoints=list(unique), paf_samples=PAF_POINTS),
            "assembly": AssemblySpec(min_affinity=imported.min_affinity)}


def _default_name(located: Located, project: dict[str, Any], net_type: str) -> str:
    task = project.get("Task") or (located.config_path.parent.parent.name if located.layout == "train-folder"
                                   else located.weights.stem)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{task}-dlc-{net_type}").strip("-")


def _provenance(located: Located, imported: Imported, project_cfg: Path | None, project: dict[str, Any],
                extra: dict[str, Any]) -> dict[str, Any]:
    meta = extra.get("snapshot_metadata") or {}
    versions = dict(extra.get("versions") or {}) | {d: version(d) for d in ("onnx", "onnxruntime", "posezoo")}
    step_name = "epoch" if located.engine == "pytorch" else "iterations"
    source = {"engine": located.engine, "layout": located.layout, "path": str(located.given),
              "weights": str(located.weights), "snapshot": located.snapshot, step_name: located.step,
              "net_type": imported.net_type}
    if meta.get("epoch") is not None:
        source["epoch"] = meta["epoch"]
    provenance: dict[str, Any] = {
        "backend": f"deeplabcut-{located.engine}",
        "framework_versions": versions,
        "model": imported.net_type,
        "source": source,
        "snapshot": located.snapshot,
        "weights_sha256": extra.get("weights_sha256", ""),
        "metrics": {"deeplabcut_snapshot": to_jsonable(meta.get("metrics") or {})},
        "precision": "fp32",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if project_cfg:
        provenance["dataset"] = {"project": project_cfg.parent.name, "task": project.get("Task"),
                                 "scorer": project.get("scorer"), "config": str(project_cfg)}
    if imported.notes:
        provenance["notes"] = list(imported.notes)
    return to_jsonable(provenance)


def compare(reference: Poses, other: Poses, tolerance_px: float) -> dict[str, Any]:
    """Largest and mean keypoint distance (px) and largest score difference, with the verdict
    against ``tolerance_px`` and `SCORE_TOLERANCE`. One animal: NaN anywhere fails; several:
    `posezoo.export.core.check_parity` (animals paired per frame, each keypoint found on both
    sides or on neither)."""
    if not reference.single_animal:
        result = check_parity(reference, other, tolerance_px)
        result["passed"] = bool(result["passed"] and not result["max_score_diff"] > SCORE_TOLERANCE)
        return result | {"score_tolerance": SCORE_TOLERANCE}
    ref, oth = reference.coords[:, 0], other.coords[:, 0]
    dist = np.linalg.norm(ref[..., :2] - oth[..., :2], axis=-1)
    score = np.abs(ref[..., 2] - oth[..., 2])
    bad = not (np.isfinite(dist).all() and np.isfinite(score).all())
    result = {"n_frames": int(ref.shape[0]), "max_px_diff": float("inf") if bad else float(dist.max()),
              "mean_px_diff": float(np.nanmean(dist)), "max_score_diff": float("inf") if bad else float(score.max()),
              "tolerance_px": tolerance_px, "score_tolerance": SCORE_TOLERANCE}
    result["passed"] = bool(result["max_px_diff"] <= tolerance_px and result["max_score_diff"] <= SCORE_TOLERANCE)
    return result


def predict_torch(graph: DeepLabCutGraph, spec: Spec, frames: Sequence[np.ndarray]) -> Poses:
    """The torch rebuild on frames prepared exactly as the runtime prepares them (frame pixels out;
    a multi-animal graph's candidates assembled as the runtime assembles them)."""
    parts = []
    with torch.no_grad():
        for frame in frames:
            tensor, plan = geometry.prepare(frame, spec.input, spec.preprocess, color="rgb")
            result = graph(torch.from_numpy(tensor)[None])
            if spec.multi is not None:
                candidates, affinities = (t.numpy() for t in result[1:3])
                parts.append(poses_from_candidates(spec, plan.to_frame(candidates), affinities))
                continue
            kp = (result[0] if isinstance(result, tuple) else result).numpy()
            poses = Poses.empty(1, spec.keypoints, dtype=np.float32)
            poses.coords = plan.to_frame(kp)[:, None]
            parts.append(poses)
    return Poses.concat(parts)


def _gate_frames(frames: Sequence[np.ndarray] | None, project_cfg: Path | None) -> tuple[list[np.ndarray], str]:
    if frames is not None:
        given = [np.ascontiguousarray(f) for f in frames][:PARITY_FRAMES]
        if not given:
            raise ValueError("frames: no frames given for the parity gate")
        return given, "given frames"
    if project_cfg is not None:
        paths = sorted((project_cfg.parent / "labeled-data").glob("*/*.png"))
        paths = paths[:: max(1, len(paths) // PARITY_FRAMES)][:PARITY_FRAMES]
        images = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
        images = [im[:, :, ::-1].copy() for im in images if im is not None]
        if images:
            return images, f"labeled frames of {project_cfg.parent.name}"
    rng = np.random.default_rng(0)  # smooth noise: no project beside the model
    noise = [cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 3) for _ in range(4)]
    return noise, "synthetic frames (no project config.yaml found above the model)"


def _variant(kind: str, fp32_path: Path, spec: Spec, frames: list[np.ndarray], fp32: Poses, workdir: Path,
             force: bool, progress: Callable[[str], None]) -> Path:
    from ..variants import make_variant

    progress(f"{kind}: converting" + (" (calibrating on the gate frames)" if kind == "int8" else ""))
    vmodel = make_variant(kind, fp32_path, frames, workdir, float_heads=True)
    vspec = Spec.from_dict(spec.to_dict())
    vspec.provenance["precision"] = kind
    staged = write_model(vmodel, vspec, workdir / f"{kind}.onnx")
    change = compare(fp32, PoseModel.load(staged, device="cpu").predict(frames, color="rgb"), VARIANT_BOUNDS_PX[kind])
    figures = {"mean_px_change": change["mean_px_diff"], "max_px_change": change["max_px_diff"],
               "max_score_change": change["max_score_diff"], "bound_mean_px": VARIANT_BOUNDS_PX[kind],
               "frames": len(frames)}
    if "keypoints_found_on_one_side_only" in change:
        figures["keypoints_found_on_one_side_only"] = change["keypoints_found_on_one_side_only"]
    vspec.provenance["variant_accuracy"] = figures
    if figures["mean_px_change"] > VARIANT_BOUNDS_PX[kind] and not force:
        raise ExportError(f"{kind} variant refused: keypoints move by {figures['mean_px_change']:.3f} px on average "
                          f"(max {figures['max_px_change']:.2f}) against fp32 > bound {VARIANT_BOUNDS_PX[kind]} px; "
                          "use --force to write it anyway")
    write_model(vmodel, vspec, staged)
    target = variant_path(fp32_path, kind)
    os.replace(staged, target)
    progress(f"wrote {target} (mean change {figures['mean_px_change']:.3f} px)")
    return target
