"""Model cards: a README.md generated from an entry (and its spec when the model is at hand)."""
from __future__ import annotations

import json
from typing import Any

from .entry import ZooEntry


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value, sort_keys=True) + "`"
    return str(value)


def _table(rows: dict[str, Any], header: tuple[str, str]) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    for key, value in rows.items():
        if isinstance(value, dict) and value and all(not isinstance(v, (dict, list)) for v in value.values()):
            lines += [f"| {key}.{k} | {_value(v)} |" for k, v in value.items()]
        else:
            lines.append(f"| {key} | {_value(value)} |")
    return lines


def speed_summary(speed: dict[str, Any]) -> str:
    """"123.4 frames/s on CPU (AMD EPYC ..., 2 threads, 480x640 frames, batch 1)", or ""."""
    fps = speed.get("frames_per_second")
    if not isinstance(fps, (int, float)):
        return ""
    size = speed.get("frame_size")
    where = [str(speed.get("cpu") or "unknown CPU"), f"{speed.get('threads', '?')} threads"]
    if isinstance(size, list) and len(size) == 2:
        where.append(f"{size[0]}x{size[1]} frames")
    where.append(f"batch {speed.get('batch', 1)}")
    return f"{fps} frames/s on {str(speed.get('device', 'cpu')).upper()} ({', '.join(where)})"


def headline_rmse(entry: ZooEntry) -> float | None:
    """The headline accuracy: test-split RMSE in pixels, from whichever record the entry has."""
    m = entry.metrics
    for record in (m.get("export_test"), m.get("test"), (m.get("train_run") or {}).get("test")):
        if isinstance(record, dict) and isinstance(record.get("rmse"), (int, float)):
            return float(record["rmse"])
    return None


def backend(entry: ZooEntry) -> str:
    return str(entry.provenance.get("backend") or "")


def fine_tune_command(entry: ZooEntry) -> str | None:
    """How to fine-tune from an entry packed with its training weights; None for one without."""
    if entry.weights_file is None:
        return None
    return f"posezoo train PROJECT --backend {backend(entry) or 'torch'} --init zoo:{entry.ref}"


def model_card(entry: ZooEntry, spec: dict[str, Any] | None = None) -> str:
    """Markdown card: what the model detects, how well, from what data, and how to use it."""
    out = [f"# {entry.name} {entry.version}", ""]
    if entry.description:
        out += [entry.description, ""]
    out += [f"- Species: {entry.species}"] if entry.species else []
    out += [f"- View: {entry.view}"] if entry.view else []
    out += [f"- Speed: {speed_summary(entry.speed)}, measured at pack time"] if speed_summary(entry.speed) else []
    out += [
        f"- License: {entry.license or 'not stated'}",
        f"- Created: {entry.created or 'unknown'}",
        f"- Spec schema: {entry.spec_schema_version}",
        f"- Size: {human_size(entry.size)}",
        "",
    ]
    if entry.sample.get("file"):
        out += ["## Sample frame", "",
                f"![{entry.sample.get('source', 'sample')} with predicted keypoints]({entry.sample['file']})", ""]
    out += [
        "## Keypoints",
        "",
    ]
    out += [f"{i}. {k}" for i, k in enumerate(entry.keypoints, 1)] or ["(none listed)"]
    out += ["", "## Skeleton", ""]
    out += [f"- {' - '.join(map(str, pair))}" for pair in entry.skeleton] or ["(none)"]
    out += ["", "## Metrics", ""]
    out += _table(entry.metrics, ("metric", "value")) if entry.metrics else ["(none reported)"]
    out += ["", "## Training data", ""]
    if isinstance(entry.training_data, dict):
        out += _table(entry.training_data, ("field", "value"))
    else:
        out += [str(entry.training_data) if entry.training_data else "(not stated)"]
    parity = entry.provenance.get("parity")
    out += ["", "## Export parity", ""]
    if isinstance(parity, dict):
        out += _table(parity, ("check", "value"))
    else:
        out += [_value(parity) if parity is not None else "(not recorded)"]
    if spec is not None:
        inp, pre = spec.get("input", {}), spec.get("preprocess", {})
        out += ["", "## Input", "",
                f"- Tensor `{inp.get('name')}`: {inp.get('layout')} {inp.get('dtype')} "
                f"{inp.get('color')}, size {inp.get('size') or 'dynamic'}, "
                f"padded to a multiple of {inp.get('size_multiple')}",
                f"- Preprocess: resize {pre.get('resize')} (scale {pre.get('scale')}, "
                f"{pre.get('interpolation')}), crop {pre.get('crop')}",
                f"- Default pcutoff: {spec.get('pcutoff')}"]
    rest = {k: v for k, v in entry.provenance.items() if k != "parity"}
    out += ["", "## Provenance", ""]
    out += _table(rest, ("field", "value")) if rest else ["(not recorded)"]
    out += [
        "", "## Use", "",
        "```",
        f"posezoo zoo pull {entry.ref}",
        f"posezoo analyze zoo:{entry.ref} session1.mp4 --csv",
        "```", "",
        "```python",
        "from posezoo.runtime import PoseModel",
        f'model = PoseModel.load("zoo:{entry.ref}")',
        "keypoints = model(frame_bgr)  # (K, 3): x, y, score",
        "```", "",
    ]
    tune = fine_tune_command(entry)
    if tune is not None:
        out += [f"Fine-tune it on your own project (its training weights are in {entry.weights_file.name}):",
                "", "```", tune, "```", ""]
    out += [
        "## Files", "",
        "| file | size | sha256 |", "| --- | --- | --- |",
    ]
    out += [f"| {f.name} | {human_size(f.size)} | `{f.sha256}` |" for f in entry.files]
    return "\n".join(out) + "\n"
