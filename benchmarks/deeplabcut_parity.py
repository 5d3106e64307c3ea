"""Imported DeepLabCut models against DeepLabCut itself, side by side in one run.

For each architecture: DeepLabCut trains a shuffle of the openfield project (fixed split: test =
sorted index i % 5 == 4) for one epoch (PyTorch engine) or a few hundred iterations (TensorFlow
engine), runs its own inference on every labeled frame, then posezoo imports the snapshot
(`posezoo.export.deeplabcut.from_deeplabcut`) and runs the .onnx file on the same frames; the
script prints the largest keypoint and score differences. ``--speed`` times DeepLabCut's
``analyze_videos`` and ``posezoo analyze`` (fp32 and int8) on the same clip of the openfield video.

Multi-animal models (``--multi-archs``: part-affinity fields) train on a synthetic 3-mouse
project that posezoo writes into the cache (``--multi-epochs``, from scratch); DeepLabCut's
assembled animals are paired with posezoo's per frame, and every keypoint must be found on both
sides or on neither. A second row repeats it with the snapshot's heatmap logits raised by
``BOOST`` (many more candidates, so assembly has real choices to make).

DeepLabCut runs in its own virtual environments, created here on first use and kept outside the
repository (it pins packages posezoo does not share): ``--venv`` (PyTorch engine:
torch + torchvision first, whose compiled ops need the CUDA build of torch though it runs on the
CPU, then deeplabcut==3.0.2) and ``--tf-venv`` (the same plus deeplabcut[tf]: TensorFlow 2.15,
tf_slim). No pretrained weights can be downloaded: timm backbones are built with
pretrained=False and TensorFlow training starts from a randomly initialised checkpoint.
Everything DeepLabCut produced is cached under ``--cache``, so a rerun only repeats what is missing.

    python benchmarks/deeplabcut_parity.py                       # every architecture
    python benchmarks/deeplabcut_parity.py --archs resnet_50 --tf-archs none
    python benchmarks/deeplabcut_parity.py --archs resnet_50 --tf-archs none --speed --speed-frames 300
    python benchmarks/deeplabcut_parity.py --archs none --tf-archs none     # multi-animal only
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
DLC_VERSION = "3.0.2"
# torchvision's compiled ops load only beside a CUDA build of torch (it runs on the CPU too); these
# are the releases the machine's package index serves for Python 3.11 (the issue measured 2.13/0.28).
TORCH_SPEC = ["torch==2.14.1", "torchvision==0.29.1"]
PYTORCH_ARCHS = ["resnet_50", "resnet_101", "hrnet_w18", "hrnet_w32", "hrnet_w48"]
TF_ARCHS = ["resnet_50", "resnet_101", "mobilenet_v2_1.0", "mobilenet_v2_0.35"]
# multi-animal (bottom-up, part-affinity fields), on a synthetic 3-mouse project made by posezoo
MULTI_ARCHS = ["resnet_50", "dlcrnet_stride16_ms5"]
MULTI = "pytorch-multi"  # the engine label of those rows (DeepLabCut's PyTorch engine)
BOOST = 2.0  # added to a multi-animal snapshot's heatmap logits for a second, crowded comparison
SHUFFLES = {("pytorch", a): i for i, a in enumerate(PYTORCH_ARCHS, start=1)} | \
           {("tensorflow", a): 10 + i for i, a in enumerate(TF_ARCHS, start=1)} | \
           {(MULTI, a): 20 + i for i, a in enumerate(MULTI_ARCHS, start=1)}


# ----------------------------------------------------------------------------------------------
# orchestration (the project's environment)

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, default=ROOT.parent / "shared" / "data" / "openfield")
    ap.add_argument("--venv", type=Path, default=Path(os.environ.get("POSEZOO_DLC_VENV", "/work/dlc-venv")))
    ap.add_argument("--tf-venv", type=Path, default=Path(os.environ.get("POSEZOO_DLC_TF_VENV", "/work/dlc-tf-venv")))
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("POSEZOO_DLC_CACHE", "/work/dlc-parity-cache")))
    ap.add_argument("--archs", default=",".join(PYTORCH_ARCHS), help="DeepLabCut 3 net types, or 'none'")
    ap.add_argument("--tf-archs", default=",".join(TF_ARCHS), help="DeepLabCut 2 net types, or 'none'")
    ap.add_argument("--multi-archs", default=",".join(MULTI_ARCHS),
                    help="DeepLabCut 3 multi-animal net types, or 'none'")
    ap.add_argument("--epochs", type=int, default=1, help="PyTorch engine training epochs")
    ap.add_argument("--multi-epochs", type=int, default=6,
                    help="multi-animal training epochs (enough for peaks and fields that are not noise)")
    ap.add_argument("--tf-iters", type=int, default=200, help="TensorFlow engine training iterations")
    ap.add_argument("--speed", action="store_true", help="also time analyze on the video (resnet_50)")
    ap.add_argument("--speed-frames", type=int, default=0, help="analyse the first N frames only (0: all)")
    ap.add_argument("--json", type=Path, help="write the results here too")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--arch", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow reads checkpoints quietly here too
    if args.worker:
        return worker(args)
    if not (args.project / "config.yaml").is_file():
        raise SystemExit(f"{args.project}: no DeepLabCut project (config.yaml) there")
    args.cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"parity": [], "speed": None}
    args.multi_project = args.cache / "multi-source"
    if any(a != "none" for a in args.multi_archs.split(",")) and not (args.multi_project / "config.yaml").exists():
        from posezoo.training.synthetic_multi import make_multi_project

        make_multi_project(args.multi_project, animals=3, n_frames=50, video_frames=30, image_size=(400, 300))
    for engine, archs, venv in (("pytorch", args.archs, args.venv), ("tensorflow", args.tf_archs, args.tf_venv),
                                (MULTI, args.multi_archs, args.venv)):
        names = [a for a in archs.split(",") if a and a != "none"]
        if not names:
            continue
        try:
            ensure_venv(venv, tf=engine == "tensorflow")
        except subprocess.CalledProcessError as exc:
            print(f"[{engine}] DeepLabCut's environment could not be installed ({exc}); skipped")
            results["parity"].append({"engine": engine, "error": f"install failed: {exc}"})
            continue
        for arch in names:
            row = parity_row(args, venv, engine, arch)
            for one in [row] + ([row.pop("boosted")] if "boosted" in row else []):
                results["parity"].append(one)
                print_row(one)
    if args.speed:
        results["speed"] = speed(args)
    print("\n" + summary(results))
    out = args.json or args.cache / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {out}")


def ensure_venv(venv: Path, tf: bool = False) -> None:
    """Create DeepLabCut's environment once (minutes; several GB for the CUDA build of torch)."""
    python = venv / "bin" / "python"
    probe = "import deeplabcut, torchvision" + (", tensorflow, tf_slim" if tf else "")
    if python.exists() and subprocess.run([python, "-c", probe], capture_output=True).returncode == 0:
        return
    print(f"creating {venv} with deeplabcut=={DLC_VERSION}{' [tf]' if tf else ''} (once)")
    subprocess.run([sys.executable if not python.exists() else python, "-m", "venv", venv], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run(pip + TORCH_SPEC, check=True)
    subprocess.run(pip + [f"deeplabcut{'[tf]' if tf else ''}=={DLC_VERSION}"], check=True)


def run_worker(args: argparse.Namespace, venv: Path, task: str, arch: str = "", engine: str = "pytorch") -> dict:
    out = args.cache / f"{task}-{engine}-{arch or 'video'}.json"
    if out.exists():
        return json.loads(out.read_text())
    cmd = [str(venv / "bin" / "python"), str(HERE), "--worker", task, "--arch", f"{engine}:{arch}",
           "--project", str(args.project), "--cache", str(args.cache), "--epochs", str(args.epochs),
           "--tf-iters", str(args.tf_iters), "--speed-frames", str(args.speed_frames)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    if task == "repredict":
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    log = args.cache / f"{task}-{engine}-{arch or 'video'}.log"
    print(f"[{engine} {arch}] DeepLabCut {task} (log: {log})", flush=True)
    with open(log, "w") as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=args.cache)
    if done.returncode != 0 or not out.exists():
        tail = log.read_text().splitlines()[-15:]
        raise RuntimeError(f"DeepLabCut {task} for {engine} {arch} failed:\n" + "\n".join(tail))
    return json.loads(out.read_text())


def parity_row(args: argparse.Namespace, venv: Path, engine: str, arch: str) -> dict[str, Any]:
    import cv2
    import numpy as np

    from posezoo.export.deeplabcut import from_deeplabcut
    from posezoo.runtime import PoseModel

    try:
        dlc = run_worker(args, venv, "train", arch, engine)
    except RuntimeError as exc:
        return {"engine": engine, "arch": arch, "error": str(exc)}
    if engine == MULTI:
        row = multi_row(dlc, args.cache / f"{engine}-{arch}.onnx", arch)
        boosted = multi_row(run_worker(args, venv, "boost", arch, engine), args.cache / f"{engine}-{arch}-boosted.onnx",
                            arch + "+boost")
        return row | {"boosted": boosted}
    ref = np.load(dlc["predictions"])
    onnx_path = args.cache / f"{engine}-{arch}.onnx"
    start = time.perf_counter()
    try:
        exported = from_deeplabcut(dlc["snapshot"], onnx_path, overwrite=True, progress=lambda _m: None)
    except (ValueError, RuntimeError) as exc:  # refused (an unsupported config) or a failed parity gate
        return {"engine": engine, "arch": arch, "error": str(exc)}
    seconds = time.perf_counter() - start
    model = PoseModel.load(exported.path, device="cpu")
    frames = [cv2.imread(p, cv2.IMREAD_COLOR)[:, :, ::-1].copy() for p in dlc["images"]]
    ours = np.concatenate([model.predict(frames[i:i + 8], color="rgb").coords[:, 0] for i in range(0, len(frames), 8)])
    theirs = ref["poses"].astype(np.float32)
    dist = np.linalg.norm(ours[..., :2] - theirs[..., :2], axis=-1)
    row_extra: dict[str, Any] = {}
    if engine == "tensorflow":  # DeepLabCut against itself: the noise floor of its own TensorFlow kernels
        again = np.load(run_worker(args, venv, "repredict", arch, engine)["predictions"])["poses"]
        self_dist = np.linalg.norm(again[..., :2] - theirs[..., :2], axis=-1)
        row_extra = {"dlc_self_max_px": float(self_dist.max()), "dlc_self_mean_px": float(self_dist.mean()),
                     "dlc_self_max_score": float(np.abs(again[..., 2] - theirs[..., 2]).max())}
    return row_extra | {"engine": engine, "arch": arch, "frames": len(frames), "snapshot": dlc["snapshot"],
            "trained": dlc["trained"], "max_px": float(dist.max()), "mean_px": float(dist.mean()),
            "max_score": float(np.abs(ours[..., 2] - theirs[..., 2]).max()),
            "mean_score_dlc": float(theirs[..., 2].mean()), "import_s": round(seconds, 1),
            "gate_max_px": exported.spec.provenance["parity"]["max_px_diff"], "onnx": str(onnx_path),
            "passed": bool(dist.max() <= 0.5 and np.abs(ours[..., 2] - theirs[..., 2]).max() <= 0.01)}


def multi_row(dlc: dict[str, Any], onnx_path: Path, arch: str) -> dict[str, Any]:
    """A multi-animal model: both sides' animals paired per frame (rows carry no identity), every
    keypoint that DeepLabCut assembled must be assembled here too, and the reverse."""
    import cv2
    import numpy as np

    from posezoo.export.core import check_parity
    from posezoo.export.deeplabcut import from_deeplabcut
    from posezoo.runtime import PoseModel
    from posezoo.runtime.poses import Poses

    start = time.perf_counter()
    try:
        exported = from_deeplabcut(dlc["snapshot"], onnx_path, overwrite=True, progress=lambda _m: None)
    except (ValueError, RuntimeError) as exc:
        return {"engine": MULTI, "arch": arch, "error": str(exc)}
    seconds = time.perf_counter() - start
    model = PoseModel.load(exported.path, device="cpu")
    frames = [cv2.imread(p, cv2.IMREAD_COLOR)[:, :, ::-1].copy() for p in dlc["images"]]
    ours = Poses.concat([model.predict(frames[i:i + 8], color="rgb") for i in range(0, len(frames), 8)])
    # (N, animals, K, 3 + id and affinity columns), -1 where DeepLabCut assembled no animal
    theirs_xy = np.load(dlc["predictions"])["poses"][..., :3].astype(np.float32)
    theirs_xy[theirs_xy[..., 2] < 0] = np.nan
    theirs = Poses(theirs_xy, ours.keypoints, ours.individuals)
    parity = check_parity(theirs, ours, 0.5)
    found = int(np.isfinite(theirs_xy[..., 0]).sum())
    same = sum(check_parity(theirs[f:f + 1], ours[f:f + 1], 0.5)["passed"] for f in range(len(frames)))
    return {"engine": MULTI, "arch": arch, "frames": len(frames), "snapshot": dlc["snapshot"], "trained": dlc["trained"],
            "max_px": parity["max_px_diff"], "mean_px": parity["mean_px_diff"], "max_score": parity["max_score_diff"],
            "dlc_keypoints": found, "one_side_only": parity["keypoints_found_on_one_side_only"],
            "frames_identical": int(same),
            "import_s": round(seconds, 1), "onnx": str(onnx_path),
            "passed": bool(parity["passed"] and parity["max_score_diff"] <= 0.01)}


def print_row(row: dict[str, Any]) -> None:
    if "error" in row:
        print(f"  {row['engine']:<10} {row.get('arch', ''):<10} ERROR {row['error']}")
        return
    print(f"  {row['engine']:<10} {row['arch']:<10} {row['frames']} frames  max {row['max_px']:.2e} px  "
          f"mean {row['mean_px']:.2e} px  max score diff {row['max_score']:.2e}  "
          f"({row['trained']}; {'PASS' if row['passed'] else 'FAIL'})", flush=True)
    if "one_side_only" in row:
        print(f"  {'':<10} {'':<10} {row['dlc_keypoints']} keypoints assembled by DeepLabCut, "
              f"{row['one_side_only']} found on one side only; {row['frames_identical']} of {row['frames']} "
              "frames with the same animals within 0.5 px", flush=True)
    if "dlc_self_max_px" in row:
        print(f"  {'':<10} {'':<10} DeepLabCut vs itself (oneDNN on/off): max {row['dlc_self_max_px']:.2e} px  "
              f"mean {row['dlc_self_mean_px']:.2e} px  max score diff {row['dlc_self_max_score']:.2e}", flush=True)


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """DeepLabCut's analyze_videos vs posezoo analyze (fp32, int8) on one clip, one after the other."""
    from posezoo.export.deeplabcut import from_deeplabcut

    dlc = run_worker(args, args.venv, "train", "resnet_50", "pytorch")
    clip = run_worker(args, args.venv, "clip", "", "pytorch")
    video = Path(clip["video"])
    onnx_path = args.cache / "speed-resnet_50.onnx"
    exported = from_deeplabcut(dlc["snapshot"], onnx_path, int8=True, force=True, overwrite=True, progress=lambda _m: None)
    timing = args.cache / "analyze-pytorch-resnet_50.json"
    timing.unlink(missing_ok=True)  # always measured afresh, beside posezoo's figures
    theirs = run_worker(args, args.venv, "analyze", "resnet_50", "pytorch")
    posezoo = Path(sys.executable).with_name("posezoo")
    out: dict[str, Any] = {"frames": clip["frames"], "video": str(video), "deeplabcut_fps": theirs["fps"],
                           "deeplabcut_s": theirs["seconds"], "import_parity": exported.spec.provenance.get("parity")}
    for label, model in (("fp32", exported.path), ("int8", exported.variants["int8"])):
        target = args.cache / f"posezoo-{label}"
        shutil.rmtree(target, ignore_errors=True)
        start = time.perf_counter()
        subprocess.run([str(posezoo), "analyze", str(model), str(video), "--output-dir", str(target)], check=True,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start  # the whole command, start-up included
        out[f"posezoo_{label}_s"] = seconds
        out[f"posezoo_{label}_fps"] = clip["frames"] / seconds
        out[f"speedup_{label}"] = out[f"posezoo_{label}_fps"] / theirs["fps"]
    out["int8_vs_fp32_px"] = _result_change(args.cache / "posezoo-fp32", args.cache / "posezoo-int8")
    return out


def _result_change(a: Path, b: Path) -> dict[str, float]:
    import numpy as np
    import pandas as pd

    ta, tb = (pd.read_hdf(next(p.glob("*.h5"))) for p in (a, b))
    xa, xb = ta.to_numpy().reshape(len(ta), -1, 3), tb.to_numpy().reshape(len(tb), -1, 3)
    dist = np.linalg.norm(xa[..., :2] - xb[..., :2], axis=-1)
    return {"mean_px": float(np.nanmean(dist)), "median_px": float(np.nanmedian(dist)), "max_px": float(np.nanmax(dist))}


def summary(results: dict[str, Any]) -> str:
    lines = ["DeepLabCut vs posezoo import (labeled frames: openfield; pytorch-multi: a synthetic 3-mouse project)",
             f"  {'engine':<10} {'arch':<17} {'max px':>9} {'max score':>10}  {'DLC vs DLC px':>13}  verdict"]
    for row in results["parity"]:
        if "error" in row:
            lines.append(f"  {row['engine']:<10} {row.get('arch', ''):<17} error: {row['error'].splitlines()[0]}")
        else:
            own = f"{row['dlc_self_max_px']:>13.2e}" if "dlc_self_max_px" in row else f"{'-':>13}"
            lines.append(f"  {row['engine']:<10} {row['arch']:<17} {row['max_px']:>9.2e} {row['max_score']:>10.2e}  "
                         f"{own}  {'within 0.5 px / 0.01' if row['passed'] else 'OUTSIDE 0.5 px / 0.01'}")
    s = results.get("speed")
    if s:
        lines += [f"analyze, resnet_50, {s['frames']} frames of {Path(s['video']).name}",
                  f"  DeepLabCut analyze_videos  {s['deeplabcut_fps']:.2f} frames/s",
                  f"  posezoo analyze fp32       {s['posezoo_fp32_fps']:.2f} frames/s  ({s['speedup_fp32']:.2f}x)",
                  f"  posezoo analyze int8       {s['posezoo_int8_fps']:.2f} frames/s  ({s['speedup_int8']:.2f}x; "
                  f"{s['int8_vs_fp32_px']['median_px']:.2f} px median change vs fp32)"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# DeepLabCut's side (runs inside its own environment; imports deeplabcut, never posezoo)

def worker(args: argparse.Namespace) -> None:
    import numpy as np

    engine, arch = args.arch.split(":")
    _no_downloads()
    config = _project_copy(args.cache / "multi-source" if engine == MULTI else args.project, args.cache, engine)
    if args.worker == "train":
        result = _train_and_predict(config, engine, arch, args)
    elif args.worker == "repredict":  # the same snapshot again, here with TensorFlow's oneDNN kernels off
        done = json.loads((args.cache / f"train-{engine}-{arch}.json").read_text())
        poses = _predict_tf(Path(done["snapshot"]).parent, Path(done["snapshot"][:-len(".index")]), done["images"])
        out = args.cache / f"dlc-{engine}-{arch}-no-onednn.npz"
        np.savez(out, poses=poses)
        result = {"predictions": str(out)}
    elif args.worker == "boost":
        result = _boosted(json.loads((args.cache / f"train-{engine}-{arch}.json").read_text()), args.cache, arch)
    elif args.worker == "clip":
        result = _clip(config, args.speed_frames)
    elif args.worker == "analyze":
        result = _analyze(config, json.loads((args.cache / "clip-pytorch-video.json").read_text()))
    else:
        raise SystemExit(f"unknown worker task {args.worker}")
    (args.cache / f"{args.worker}-{engine}-{arch or 'video'}.json").write_text(json.dumps(result, indent=2))


def _no_downloads() -> None:
    """timm backbones without ImageNet weights (they cannot be downloaded here)."""
    import timm
    from deeplabcut.utils import auxfun_models

    # TensorFlow shuffles ask for ImageNet checkpoints; the init weights are replaced before training
    auxfun_models.check_for_weights = lambda modeltype, parent: str(Path(parent) / "no-download" / modeltype)
    create = timm.create_model

    def create_offline(*a: Any, **k: Any) -> Any:
        k["pretrained"] = False
        return create(*a, **k)

    timm.create_model = create_offline


def _project_copy(source: Path, cache: Path, engine: str) -> Path:
    """A writable copy of the project (DeepLabCut writes into it), with its paths set; one per engine,
    as each environment pickles the split with its own numpy (2.x and 1.26 cannot read each other's)."""
    import yaml

    project = cache / ("project" if engine == "pytorch" else f"project-{engine}")
    config = project / "config.yaml"
    if not config.exists():
        shutil.copytree(source / "labeled-data", project / "labeled-data")
        (project / "videos").mkdir(parents=True, exist_ok=True)
        for video in (source / "videos").glob("*.mp4"):
            shutil.copy(video, project / "videos" / video.name)
        cfg = yaml.safe_load((source / "config.yaml").read_text())
        cfg["project_path"] = str(project)
        cfg["TrainingFraction"] = [0.8]  # the fixed split (93 of 116 frames); DeepLabCut reads it back
        cfg["video_sets"] = {str(v): {"crop": "0, 640, 0, 480"} for v in sorted((project / "videos").glob("*.mp4"))
                             if not v.stem.endswith("_truth")}
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return config


def _split(config: Path) -> tuple[list[int], list[int], list[str]]:
    import pandas as pd

    project = config.parent
    tables = sorted(project.glob("labeled-data/*/CollectedData_*.h5"))
    index = sorted(str(i if isinstance(i, str) else "/".join(i)) for t in tables for i in pd.read_hdf(t).index)
    test = [i for i in range(len(index)) if i % 5 == 4]
    train = [i for i in range(len(index)) if i % 5 != 4]
    return train, test, [str(project / p) for p in index]


def _train_and_predict(config: Path, engine: str, arch: str, args: argparse.Namespace) -> dict[str, Any]:
    import deeplabcut
    import numpy as np
    from deeplabcut.core.engine import Engine

    shuffle = SHUFFLES[(engine, arch)]
    train, test, images = _split(config)
    torch_engine = engine in ("pytorch", MULTI)
    deeplabcut.create_training_dataset(str(config), Shuffles=[shuffle], trainIndices=[train], testIndices=[test],
                                       net_type=arch, userfeedback=False,
                                       engine=Engine.PYTORCH if torch_engine else Engine.TF)
    models = "dlc-models-pytorch" if torch_engine else "dlc-models"
    train_dir = next(config.parent.glob(f"{models}/iteration-0/*shuffle{shuffle}/train"))
    if torch_engine:
        epochs = args.multi_epochs if engine == MULTI else args.epochs
        # HRNet's recipe freezes batch-norm statistics, meant for ImageNet weights; from random weights
        # they stay at mean 0, variance 1 and training diverges (loss 1e11, keypoints at 1e5 px after
        # one epoch), so here they train. Inference is the same network either way.
        updates = {"model.backbone.freeze_bn_stats": False} if arch.startswith("hrnet") else None
        deeplabcut.train_network(str(config), shuffle=shuffle, trainingsetindex=_trainset_index(config),
                                 epochs=epochs, save_epochs=epochs, device="cpu", batch_size=8,
                                 pytorch_cfg_updates=updates)
        snaps = sorted(train_dir.glob("snapshot*.pt"))
        snapshot = [s for s in snaps if "best" in s.name] or snaps
        poses = _predict_pytorch(train_dir, snapshot[-1], images, multi=engine == MULTI)
        trained, chosen = f"{epochs} epoch(s)", str(snapshot[-1])
    else:
        _random_tf_init(train_dir, [images[i] for i in train])
        try:
            deeplabcut.train_network(str(config), shuffle=shuffle, trainingsetindex=_trainset_index(config),
                                     max_iters=args.tf_iters, save_iters=args.tf_iters, display_iters=50,
                                     allow_growth=False)
            prefix, trained = train_dir / f"snapshot-{args.tf_iters}", f"{args.tf_iters} iterations"
        except Exception as exc:  # noqa: BLE001 - a diverging run is reported, and its init compared instead
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            prefix = train_dir / "snapshot-0"
            for part in (train_dir / "random-init").glob("init.*"):
                shutil.copy(part, train_dir / part.name.replace("init", "snapshot-0", 1))
            trained = f"not trained (DeepLabCut's training failed: {first[:120]}); its data-initialised init compared"
        poses = _predict_tf(train_dir, prefix, images)
        chosen = str(prefix) + ".index"
    out = Path(args.cache) / f"dlc-{engine}-{arch}.npz"
    np.savez(out, poses=poses)
    return {"snapshot": chosen, "predictions": str(out), "images": images, "trained": trained,
            "deeplabcut": deeplabcut.__version__}


def _boosted(done: dict[str, Any], cache: Path, arch: str) -> dict[str, Any]:
    """The trained multi-animal snapshot with +BOOST on its heatmap logits: a briefly trained model's
    peaks are mostly below the assembly's cutoff; raised, many more candidates compete in assembly,
    the part most worth comparing. DeepLabCut predicts with it like with any snapshot."""
    import numpy as np
    import torch

    train = cache / f"boosted-{arch}" / "train"
    train.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(done["snapshot"]).parent / "pytorch_config.yaml", train / "pytorch_config.yaml")
    snapshot = torch.load(done["snapshot"], map_location="cpu", weights_only=False)
    snapshot["model"]["heads.bodypart.heatmap_head.deconv_layers.0.bias"] += BOOST
    torch.save({"model": snapshot["model"], "metadata": snapshot.get("metadata", {})}, train / "snapshot-001.pt")
    poses = _predict_pytorch(train, train / "snapshot-001.pt", done["images"], multi=True)
    out = cache / f"dlc-{MULTI}-{arch}-boosted.npz"
    np.savez(out, poses=poses)
    return done | {"snapshot": str(train / "snapshot-001.pt"), "predictions": str(out),
                   "trained": done["trained"] + f", heatmap logits +{BOOST}"}


def _trainset_index(config: Path) -> int:
    import yaml

    fractions = yaml.safe_load(config.read_text())["TrainingFraction"]
    return [round(f, 2) for f in fractions].index(0.8)


def _predict_pytorch(train_dir: Path, snapshot: Path, images: list[str], multi: bool = False) -> Any:
    """DeepLabCut's own inference runner (as analyze_images / evaluate use it), one image at a time;
    several animals: its assembled individuals, (N, individuals, K, 3) with -1 where none."""
    import numpy as np
    from deeplabcut.pose_estimation_pytorch.apis.utils import get_inference_runners

    runner, _ = get_inference_runners(str(train_dir / "pytorch_config.yaml"), snapshot_path=str(snapshot),
                                      max_individuals=None if multi else 1, batch_size=1, device="cpu")
    predictions = runner.inference(images)
    return np.stack([p["bodyparts"] if multi else p["bodyparts"][0] for p in predictions])


def _random_tf_init(train_dir: Path, images: list[str]) -> None:
    """A randomly initialised checkpoint as DeepLabCut's init_weights (ImageNet weights cannot be fetched).

    DeepLabCut 2 trains ResNets with batch norm frozen in inference mode, which from random weights
    (moving mean 0, variance 1) diverges to NaN at once; so each layer's moving statistics are first
    set, in network order, to that layer's statistics on two labeled frames (a data-dependent init).
    """
    import imageio.v2 as imageio
    import numpy as np
    import tensorflow as tf
    import yaml
    from deeplabcut.pose_estimation_tensorflow.config import load_config
    from deeplabcut.pose_estimation_tensorflow.nnets.factory import PoseNetFactory

    cfg_path = train_dir / "pose_cfg.yaml"
    init = train_dir / "random-init" / "init"
    cfg = load_config(str(cfg_path))
    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    inputs = tf.compat.v1.placeholder(tf.float32, shape=[None, None, None, 3])
    PoseNetFactory.create(cfg).test(inputs)
    graph = tf.compat.v1.get_default_graph()
    batch = np.stack([imageio.imread(p)[:, :, :3] for p in images[:2]]).astype(np.float32)
    variables = {v.name[:-2]: v for v in tf.compat.v1.global_variables()}
    scopes = list(dict.fromkeys(n.rsplit("/BatchNorm/", 1)[0] for n in variables if n.endswith("/BatchNorm/moving_mean")))
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        for scope in scopes:
            norm = next((op for op in graph.get_operations() if op.name.startswith(f"{scope}/BatchNorm/")
                         and op.type.startswith("FusedBatchNorm")), None)
            if norm is None:
                continue
            x = sess.run(norm.inputs[0], {inputs: batch})
            sess.run([variables[f"{scope}/BatchNorm/moving_mean"].assign(x.mean(axis=(0, 1, 2))),
                      variables[f"{scope}/BatchNorm/moving_variance"].assign(x.var(axis=(0, 1, 2)))])
        init.parent.mkdir(exist_ok=True)
        tf.compat.v1.train.Saver().save(sess, str(init), write_meta_graph=False)
    raw = yaml.safe_load(cfg_path.read_text())
    raw["init_weights"] = str(init)
    cfg_path.write_text(yaml.safe_dump(raw))
    tf.compat.v1.reset_default_graph()


def _predict_tf(train_dir: Path, prefix: Path, images: list[str]) -> Any:
    """DeepLabCut 2's single-image inference (predict.getpose), as its analysis runs it."""
    import imageio.v2 as imageio
    import numpy as np
    from deeplabcut.pose_estimation_tensorflow.config import load_config
    from deeplabcut.pose_estimation_tensorflow.core import predict

    cfg = load_config(str(train_dir.parent / "test" / "pose_cfg.yaml"))
    cfg["init_weights"] = str(prefix)
    cfg["batch_size"] = 1
    sess, inputs, outputs = predict.setup_pose_prediction(cfg)
    return np.stack([predict.getpose(imageio.imread(p)[:, :, :3], cfg, sess, inputs, outputs) for p in images])


def _clip(config: Path, frames: int) -> dict[str, Any]:
    """The openfield video, or its first ``frames`` frames cut without re-encoding (still h264)."""
    import cv2
    import imageio_ffmpeg

    video = next((config.parent / "videos").glob("m3v1mp4.mp4"))
    if frames:
        clip = config.parent / "clips" / f"m3v1mp4-{frames}.mp4"
        clip.parent.mkdir(exist_ok=True)
        if not clip.exists():
            subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(video),
                            "-frames:v", str(frames), "-c", "copy", "-an", str(clip)], check=True)
        video = clip
    cap = cv2.VideoCapture(str(video))
    count = 0
    while cap.read()[0]:
        count += 1
    return {"video": str(video), "frames": count}


def _analyze(config: Path, clip: dict[str, Any]) -> dict[str, Any]:
    """deeplabcut.analyze_videos with the project's defaults on the CPU, timed around the call."""
    import deeplabcut

    shuffle = SHUFFLES[("pytorch", "resnet_50")]
    destination = config.parent / "analysis"
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir()
    start = time.perf_counter()
    deeplabcut.analyze_videos(str(config), [clip["video"]], shuffle=shuffle, trainingsetindex=_trainset_index(config),
                              destfolder=str(destination), device="cpu", save_as_csv=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "fps": clip["frames"] / seconds, "frames": clip["frames"]}


if __name__ == "__main__":
    main()
