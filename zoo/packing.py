"""Make zoo entries from exported models (`pack`) and add them to a zoo directory (`publish`).

An entry directory holds the model, its model card (README.md), optionally a sample frame with
predicted keypoints (sample.jpg), and entry.json whose file URLs are plain file names. Publishing copies it to `<zoo>/models/<name>/<version>/` and lists it in
`<zoo>/index.json` with URLs relative to the index, so the zoo works from disk or over HTTP.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .card import model_card
from .entry import ZooEntry, ZooFile
from .errors import IntegrityError, ZooError
from posezoo.runtime.model import WEIGHTS_STEM
from posezoo.runtime.files import (copy_atomic, sha256_file, write_bytes_atomic, write_json_atomic,
                                   write_text_atomic)
from .names import validate_name, validate_version, version_key
from .sources import INDEX_NAME, INDEX_SCHEMA_VERSION, parse_index
from .speed import FRAMES, measure_speed as measure

ENTRY_FILE = "entry.json"
CARD_FILE = "README.md"


def find_model_file(run_or_onnx: Path) -> Path:
    """An .onnx file as given, or the single model in a directory (model.onnx preferred); a
    training run's default export (`RUN/exports/model.onnx`, written by `posezoo export RUN`)."""
    path = Path(run_or_onnx).expanduser()
    if path.is_file():
        if path.suffix != ".onnx":
            raise ZooError(f"{path}: expected an .onnx file or a directory holding one")
        return path
    if not path.is_dir():
        raise ZooError(f"{path}: no such file or directory")
    for default in (path / "model.onnx", path / "exports" / "model.onnx"):
        if default.is_file():
            return default
    models = sorted(p for p in path.glob("*.onnx") if p.is_file())
    if len(models) != 1:
        found = ", ".join(p.name for p in models) or "none"
        raise ZooError(f"{path}: expected exactly one .onnx file (or model.onnx), found {found}; "
                       f"run `posezoo export {path}` first or pass the .onnx file itself")
    return models[0]


def _metrics_from(provenance: dict[str, Any]) -> dict[str, Any]:
    if isinstance(provenance.get("metrics"), dict):
        return dict(provenance["metrics"])
    return {split: provenance[f"{split}_metrics"] for split in ("train", "test")
            if isinstance(provenance.get(f"{split}_metrics"), dict)}


def _file_record(path: Path) -> ZooFile:
    return ZooFile(name=path.name, url=path.name, sha256=sha256_file(path), size=path.stat().st_size)


def pack(run_or_onnx: str | Path, output: str | Path, *, name: str | None = None,
         version: str = "1.0.0", description: str = "", license: str = "",
         training_data: Any = None, metrics: dict[str, Any] | None = None,
         species: str = "", view: str = "", sample_image: str | Path | None = None,
         measure_speed: bool = True, speed_frames: int = FRAMES, threads: int | None = None,
         with_weights: bool = False, force: bool = False) -> Path:
    """Write an entry directory (model, entry.json, README.md, sample.jpg) for an exported model.

    `sample_image` (a frame of the training project's test split, say) is run through the model
    and drawn with its keypoints for the card; `measure_speed` times CPU frames/s at that
    frame's size (see `posezoo.zoo.speed`). ``with_weights`` (``run_or_onnx`` a training run) adds
    the exported snapshot as ``weights.*``, so others can fine-tune from the entry
    (``posezoo train --init zoo:NAME``). Packing a training run that has no export yet is the
    command line's job (`posezoo zoo pack RUN`): the zoo never imports the training code.
    """
    from posezoo.runtime import PoseModel

    from .sample import SAMPLE_FILE, read_image, render_sample  # OpenCV: only when packing

    model = find_model_file(Path(run_or_onnx))
    spec = _read_spec(model)
    name = name or spec.name
    try:
        validate_name(name)
    except ZooError as exc:
        raise ZooError(f"{exc}; pass a valid --name") from None
    validate_version(version)
    for key, text in (("species", species), ("view", view)):
        if not isinstance(text, str):
            raise ZooError(f"{key} must be a string, got {type(text).__name__}")
    # Read before anything is written: a wrong image path leaves no half-made entry behind.
    image = read_image(sample_image) if sample_image is not None else None
    snapshot = _training_snapshot(Path(run_or_onnx), spec.provenance) if with_weights else None
    out = Path(output).expanduser()
    if out.exists() and not out.is_dir():
        raise ZooError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ZooError(f"{out}: directory is not empty; choose another --output or pass --force")
    out.mkdir(parents=True, exist_ok=True)

    provenance = dict(spec.provenance)
    dest = out / f"{name}.onnx"
    copy_atomic(model, dest)
    files = [_file_record(dest)]
    if snapshot is not None:
        weights = out / (WEIGHTS_STEM + snapshot.name.split(".", 1)[1])
        copy_atomic(snapshot, weights)
        files.append(_file_record(weights))
    sample: dict[str, Any] = {}
    if image is not None:
        drawn = render_sample(PoseModel.load(dest, device="cpu"), image, Path(sample_image).name)
        write_bytes_atomic(out / SAMPLE_FILE, drawn.jpeg)
        files.append(_file_record(out / SAMPLE_FILE))
        sample = drawn.record(SAMPLE_FILE)
    speed = measure(dest, image, frames=speed_frames, threads=threads) if measure_speed else {}
    entry = ZooEntry(
        name=name, version=version, files=files, description=description,
        keypoints=list(spec.keypoints), skeleton=[list(p) for p in spec.skeleton], license=license,
        training_data=training_data if training_data is not None else provenance.get("dataset"),
        metrics=metrics if metrics is not None else _metrics_from(provenance),
        spec_schema_version=str(spec.schema_version),
        created=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        provenance=provenance, species=species.strip(), view=view.strip(), speed=speed, sample=sample,
    )
    write_text_atomic(out / CARD_FILE, model_card(entry, spec.to_dict()))
    entry.files.append(_file_record(out / CARD_FILE))
    write_json_atomic(out / ENTRY_FILE, entry.to_dict())  # last: its presence marks a complete entry
    return out


def _training_snapshot(run: Path, provenance: dict[str, Any]) -> Path:
    """The snapshot of training run ``run`` that its export was made from."""
    if not (run.is_dir() and (run / "run.json").is_file()):
        raise ZooError(f"{run}: --with-weights needs the training run directory (with run.json and snapshots/), "
                       "not an exported model")
    name = provenance.get("snapshot", "best")
    found = sorted((run / "snapshots").glob(f"{name}.*"))
    if len(found) != 1:
        raise ZooError(f"{run}: expected one snapshots/{name}.* (the snapshot the export was made from), "
                       f"found {len(found)}")
    return found[0]


def read_entry_dir(entry_dir: Path) -> ZooEntry:
    """The entry of a packed directory, with every file checked against its size and sha256."""
    path = entry_dir / ENTRY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ZooError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ZooError(f"{path}: not valid JSON: {exc}") from None
    entry = ZooEntry.from_dict(data, source=str(path))
    for f in entry.files:
        file = entry_dir / f.name
        if not file.is_file():
            raise ZooError(f"{path}: lists {f.name} but {file} does not exist")
        actual = sha256_file(file)
        if file.stat().st_size != f.size or actual != f.sha256:
            raise IntegrityError(f"{file}: does not match {path} (sha256 {actual}, entry says "
                                 f"{f.sha256}); re-run `posezoo zoo pack`")
    _read_spec(entry_dir / entry.model_file.name)  # an edited graph or spec is never shared
    return entry


def _read_spec(model: Path) -> Any:
    """The model's spec, after the checks that its graph and spec were not edited since export."""
    from posezoo.runtime.session import ModelLoadError
    from posezoo.runtime.spec import SpecError, read_spec

    try:
        return read_spec(model)
    except (SpecError, ModelLoadError) as exc:  # both name the file and the problem
        raise ZooError(str(exc)) from None


def _read_raw_index(index: Path) -> list[dict[str, Any]]:
    if not index.exists():
        return []
    data = index.read_bytes()
    parse_index(data, str(index))  # validates schema version and every entry
    return list(json.loads(data)["entries"])


def publish(entry_dir: str | Path, zoo_dir: str | Path, *, force: bool = False) -> ZooEntry:
    """Copy a packed entry into `zoo_dir` and list it in its index.json (atomically).

    Refuses to replace an existing name@version unless `force`. Concurrent publishes to one
    zoo directory are not serialised: run them one at a time.
    """
    entry_dir, zoo = Path(entry_dir).expanduser(), Path(zoo_dir).expanduser()
    entry = read_entry_dir(entry_dir)
    index = zoo / INDEX_NAME
    raw_entries = _read_raw_index(index)
    same = [i for i, e in enumerate(raw_entries) if (e["name"], e["version"]) == (entry.name, entry.version)]
    if same and not force:
        raise ZooError(f"{entry.ref} is already published in {index}; pass --force to replace it")
    target = zoo / "models" / entry.name / entry.version
    for f in entry.files:
        copy_atomic(entry_dir / f.name, target / f.name)
    write_json_atomic(target / ENTRY_FILE, entry.to_dict())
    record = entry.to_dict()
    record["files"] = [{**f.to_dict(), "url": f"models/{entry.name}/{entry.version}/{f.name}"}
                       for f in entry.files]
    raw_entries = [e for i, e in enumerate(raw_entries) if i not in same] + [record]
    raw_entries.sort(key=lambda e: (e["name"], version_key(e["version"])))
    doc = {"schema_version": INDEX_SCHEMA_VERSION, "entries": raw_entries}
    write_json_atomic(index, doc)
    return entry
