"""Recognise what a user has on disk from DeepLabCut and pick the snapshot to import.

Three layouts are accepted, each also through its parent shuffle folder or a file inside it:
- DeepLabCut 3 (PyTorch engine) ``train/``: ``pytorch_config.yaml`` + ``snapshot[-best]-NNN.pt``;
- a ``deeplabcut.export_model`` file: one ``.pt`` holding ``config`` and ``pose`` (and ``detector``);
- DeepLabCut 2 (TensorFlow engine) ``train/``: ``pose_cfg.yaml`` + ``snapshot-N.index/.data-*``.
Recognition reads names and small files only, so `is_deeplabcut_model` is cheap and never
imports torch or TensorFlow.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import DeepLabCutModelError

PYTORCH_CONFIG = "pytorch_config.yaml"
TF_CONFIG = "pose_cfg.yaml"
_SNAPSHOT_PT = re.compile(r"^snapshot(-best)?-(\d+)\.pt$")
_SNAPSHOT_TF = re.compile(r"^snapshot-(\d+)\.(index|meta|data-\d+-of-\d+)$")
LAYOUTS = ("a DeepLabCut 3 train/ folder (pytorch_config.yaml + snapshot-*.pt), a deeplabcut.export_model "
           ".pt file (with 'config' and 'pose'), or a DeepLabCut 2 train/ folder (pose_cfg.yaml + "
           "snapshot-N.index/.data-*), or the shuffle folder above either train/ folder")


@dataclass
class Located:
    """A DeepLabCut model on disk, with the snapshot chosen."""

    engine: str  # "pytorch" or "tensorflow"
    layout: str  # "train-folder" or "exported-file"
    given: Path  # what the user passed
    weights: Path  # the .pt file, or the TF checkpoint prefix (.../snapshot-N)
    config_path: Path  # pytorch_config.yaml / pose_cfg.yaml, or the exported file itself
    snapshot: str  # e.g. "snapshot-best-050", "snapshot-1030000"
    step: int | None  # epochs (PyTorch) or iterations (TensorFlow)
    best: bool = False


def is_deeplabcut_model(path: str | Path) -> bool:
    """True when ``path`` looks like a DeepLabCut model (then `from_deeplabcut` reports any problem)."""
    return _recognise(Path(path).expanduser()) is not None


def _recognise(path: Path) -> tuple[str, Path] | None:
    """(engine-or-"exported", folder-or-file) for something that looks like a DeepLabCut model."""
    if path.is_file():
        if _SNAPSHOT_PT.match(path.name) or path.name == PYTORCH_CONFIG:
            return "pytorch", path.parent
        if _SNAPSHOT_TF.match(path.name) or path.name == TF_CONFIG:
            return "tensorflow", path.parent
        if path.suffix == ".pt" and _is_export_file(path):
            return "exported", path
        return None
    if not path.is_dir():
        return None
    folder = path / "train" if (path / "train").is_dir() else path
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    if PYTORCH_CONFIG in names or any(_SNAPSHOT_PT.match(n) for n in names):
        return "pytorch", folder
    if TF_CONFIG in names or any(_SNAPSHOT_TF.match(n) for n in names):
        return "tensorflow", folder
    return None


def _is_export_file(path: Path) -> bool:
    """A torch zip archive whose pickle names both 'config' and 'pose' (no torch import needed)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pickles:
                return False
            head = archive.read(pickles[0])[:65536]
    except (zipfile.BadZipFile, OSError):
        return False
    return b"config" in head and b"pose" in head


def locate(path: str | Path, snapshot: str | int = "best") -> Located:
    """Find the model and the snapshot to import; every refusal names the path and what was found."""
    given = Path(path).expanduser()
    if not given.exists():
        raise DeepLabCutModelError(f"{given}: no such file or folder")
    found = _recognise(given)
    if found is None:
        what = "a folder holding " + _listing(given) if given.is_dir() else f"a {given.suffix or 'plain'} file"
        raise DeepLabCutModelError(f"{given}: not a DeepLabCut model (found {what}); expected {LAYOUTS}")
    engine, where = found
    if engine == "exported":
        return Located("pytorch", "exported-file", given, where, where, where.stem, None)
    pinned = given.name if given.is_file() and given.name not in (PYTORCH_CONFIG, TF_CONFIG) else None
    if engine == "pytorch":
        return _pick_pytorch(given, where, pinned, snapshot)
    return _pick_tensorflow(given, where, pinned, snapshot)


def _pick_pytorch(given: Path, folder: Path, pinned: str | None, snapshot: str | int) -> Located:
    config = folder / PYTORCH_CONFIG
    snaps = sorted(((int(m.group(2)), bool(m.group(1)), p) for p in folder.iterdir()
                    if (m := _SNAPSHOT_PT.match(p.name))), key=lambda s: (s[0], s[1]))
    if not config.is_file():
        raise DeepLabCutModelError(f"{folder}: DeepLabCut snapshot(s) {[s[2].name for s in snaps][:3]} but no "
                                   f"{PYTORCH_CONFIG} beside them (the snapshot's config is missing); copy the "
                                   "shuffle's train/ folder whole, or use deeplabcut.export_model")
    if not snaps:
        raise DeepLabCutModelError(f"{folder}: {PYTORCH_CONFIG} but no snapshot-*.pt weights (found "
                                   f"{_listing(folder)}); train the shuffle first")
    if pinned:
        chosen = next(s for s in snaps if s[2].name == pinned)
    else:
        chosen = _choose(snaps, snapshot, folder, "epoch")
    return Located("pytorch", "train-folder", given, chosen[2], config, chosen[2].stem, chosen[0], chosen[1])


def _pick_tensorflow(given: Path, folder: Path, pinned: str | None, snapshot: str | int) -> Located:
    config = folder / TF_CONFIG
    steps = sorted({int(m.group(1)) for p in folder.iterdir() if (m := _SNAPSHOT_TF.match(p.name))})
    if not config.is_file():
        raise DeepLabCutModelError(f"{folder}: TensorFlow snapshot(s) {[f'snapshot-{s}' for s in steps][:3]} but "
                                   f"no {TF_CONFIG} beside them (the snapshot's config is missing)")
    if not steps:
        raise DeepLabCutModelError(f"{folder}: {TF_CONFIG} but no snapshot-N.index checkpoint (found "
                                   f"{_listing(folder)}); train the shuffle first")
    snaps = [(s, False, folder / f"snapshot-{s}") for s in steps]
    if pinned:
        step = int(_SNAPSHOT_TF.match(pinned).group(1))  # type: ignore[union-attr]
        chosen = (step, False, folder / f"snapshot-{step}")
    else:  # DeepLabCut 2 keeps no "best" snapshot: best means its default, the last one
        chosen = _choose(snaps, "last" if snapshot == "best" else snapshot, folder, "iteration")
    if not chosen[2].with_name(chosen[2].name + ".index").is_file():
        raise DeepLabCutModelError(f"{chosen[2]}.index: missing (found {_listing(folder)})")
    return Located("tensorflow", "train-folder", given, chosen[2], config, chosen[2].name, chosen[0])


def _choose(snaps: list[tuple[int, bool, Path]], snapshot: str | int, folder: Path, unit: str
            ) -> tuple[int, bool, Path]:
    text = str(snapshot).strip().lower()
    if text == "best":
        best = [s for s in snaps if s[1]]
        return best[-1] if best else snaps[-1]
    if text == "last":
        return snaps[-1]
    if text.lstrip("-").isdigit():
        wanted = int(text)
        if wanted < 0:  # DeepLabCut's snapshotindex convention
            if -wanted > len(snaps):
                raise DeepLabCutModelError(f"{folder}: snapshot index {wanted} but only {len(snaps)} snapshots")
            return sorted(snaps, key=lambda s: s[0])[wanted]
        match = [s for s in snaps if s[0] == wanted]
        if match:
            return match[-1]
        raise DeepLabCutModelError(f"{folder}: no snapshot at {unit} {wanted}; there are "
                                   f"{sorted({s[0] for s in snaps})}")
    raise DeepLabCutModelError(f"snapshot must be 'best', 'last', an {unit} number or a negative index, "
                               f"got {snapshot!r}")


def _listing(folder: Path, limit: int = 6) -> str:
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return (", ".join(names[:limit]) + (f" ... ({len(names)} entries)" if len(names) > limit else "")) or "nothing"


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DeepLabCutModelError(f"{path}: cannot read it as YAML ({exc})") from None
    if not isinstance(data, dict):
        raise DeepLabCutModelError(f"{path}: expected a YAML mapping, found {type(data).__name__}")
    return data


def find_project_config(start: Path, hint: str | None = None) -> Path | None:
    """The project's config.yaml: above the model folder (DeepLabCut's layout), else at ``hint``."""
    candidates = [p / "config.yaml" for p in list(start.parents)[:6]]
    if hint:
        candidates.append(Path(hint) / "config.yaml")
    for candidate in candidates:
        try:
            if candidate.is_file():
                data = yaml.safe_load(candidate.read_text())
                if isinstance(data, dict) and ("bodyparts" in data or "multianimalbodyparts" in data):
                    return candidate
        except (OSError, yaml.YAMLError):
            continue
    return None
