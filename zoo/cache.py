"""The local model cache: `<POSEZOO_HOME>/models/<name>/<version>/<file>`.

A version directory is complete when its `entry.json` exists (written last, atomically, after
every file was verified) and every listed file has its declared size. The layout mirrors a
published zoo directory, so a cache can be copied to an offline machine as it is.
"""
from __future__ import annotations

import json
from pathlib import Path

from .entry import ZooEntry
from .errors import ZooError
from .names import validate_file_name, validate_name, validate_version, version_key
from .sources import zoo_home

ENTRY_FILE = "entry.json"
LOCK_FILE = ".lock"  # hidden: file names from an index cannot start with a dot


def cache_root() -> Path:
    return zoo_home() / "models"


def safe_join(root: Path, *parts: str) -> Path:
    """`root/parts...`, refusing anything that would land outside `root` (second defence)."""
    path = root.joinpath(*parts)
    resolved_root = root.resolve()
    if not path.resolve().is_relative_to(resolved_root) or path.resolve() == resolved_root:
        raise ZooError(f"refusing to write outside the cache: {'/'.join(parts)!r}")
    return path


def version_dir(name: str, version: str) -> Path:
    validate_name(name)
    validate_version(version)
    return safe_join(cache_root(), name, version)


def file_path(entry: ZooEntry, file_name: str) -> Path:
    validate_file_name(file_name, where=entry.ref)
    return safe_join(cache_root(), entry.name, entry.version, file_name)


def model_path(entry: ZooEntry) -> Path:
    return file_path(entry, entry.model_file.name)


def cached_entry(name: str, version: str) -> ZooEntry | None:
    """The entry recorded for a cached version, or None if it is absent or unreadable."""
    path = version_dir(name, version) / ENTRY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entry = ZooEntry.from_dict(data, source=str(path))
    except (OSError, ValueError, ZooError):
        return None
    return entry if (entry.name, entry.version) == (name, version) else None


def is_complete(entry: ZooEntry) -> bool:
    """True when every file of `entry` is in the cache with its declared size."""
    try:
        return all(file_path(entry, f.name).stat().st_size == f.size for f in entry.files)
    except OSError:
        return False


def cached_versions(name: str) -> list[ZooEntry]:
    """Complete cached versions of `name`, oldest first."""
    root = cache_root() / validate_name(name)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        try:
            validate_version(child.name)
        except ZooError:
            continue
        entry = cached_entry(name, child.name)
        if entry is not None and is_complete(entry):
            found.append(entry)
    return sorted(found, key=lambda e: version_key(e.version))


def cached_entries() -> list[ZooEntry]:
    """Every complete cached version of every model."""
    root = cache_root()
    if not root.is_dir():
        return []
    entries: list[ZooEntry] = []
    for child in sorted(root.iterdir()):
        try:
            validate_name(child.name)
        except ZooError:
            continue
        entries.extend(cached_versions(child.name))
    return entries


def same_files(a: ZooEntry, b: ZooEntry) -> bool:
    """True when two records of one version describe byte-identical files."""
    return {(f.name, f.sha256, f.size) for f in a.files} == {(f.name, f.sha256, f.size) for f in b.files}
