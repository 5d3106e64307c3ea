"""From a `zoo:NAME[@VERSION]` reference to a verified local .onnx file.

Sources are searched in order; for one name@version the first source that lists it wins, and
"latest" is the highest version any source offers. A pinned version that is already cached is
used without touching the network. POSEZOO_OFFLINE=1 restricts everything to the cache and to
local (non-HTTP) sources.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from posezoo.runtime.files import write_json_atomic
from posezoo.runtime.lock import file_lock

from . import cache
from .entry import ZooEntry
from .errors import NotCachedError, ZooError
from .fetch import download, is_remote, offline
from .names import parse_ref, version_key
from .sources import configured_sources, load_index

log = logging.getLogger(__name__)


@dataclass
class Catalogue:
    """Entries gathered from all sources, plus the sources that could not be read and why."""

    entries: list[ZooEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # every source asked, in order

    def versions(self, name: str) -> list[ZooEntry]:
        return sorted((e for e in self.entries if e.name == name), key=lambda e: version_key(e.version))

    def find(self, name: str, version: str | None) -> ZooEntry | None:
        versions = self.versions(name)
        if version is None:
            return versions[-1] if versions else None
        return next((e for e in versions if e.version == version), None)


def load_catalogue(sources: list[str] | None = None) -> Catalogue:
    """Read every source; unreadable ones are recorded in `problems`, not fatal."""
    catalogue = Catalogue()
    seen: set[str] = set()
    for source in configured_sources() if sources is None else sources:
        catalogue.sources.append(source)
        if offline() and is_remote(source):
            catalogue.problems.append(f"{source}: skipped (POSEZOO_OFFLINE is set)")
            continue
        try:
            entries = load_index(source)
        except ZooError as exc:
            catalogue.problems.append(str(exc))
            continue
        for entry in entries:
            if entry.ref not in seen:  # an earlier source shadows a later one
                seen.add(entry.ref)
                catalogue.entries.append(entry)
    return catalogue


def _check_spec_version(entry: ZooEntry) -> None:
    from posezoo.runtime.spec import SCHEMA_VERSION

    if entry.spec_schema_version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise ZooError(
            f"model {entry.ref} (from {entry.source}) uses spec schema {entry.spec_schema_version}, "
            f"but this posezoo reads schema {SCHEMA_VERSION}; upgrade posezoo to use it"
        )


def pull(entry: ZooEntry, *, quiet: bool = False, force: bool = False) -> Path:
    """Download and verify every file of `entry` into the cache; return the .onnx path.

    Holds a lock on the version directory, so concurrent pulls of one model download it once.
    """
    _check_spec_version(entry)
    vdir = cache.version_dir(entry.name, entry.version)
    with file_lock(vdir / cache.LOCK_FILE, entry.ref):
        # Checked under the lock: another process may have just finished this download.
        old = cache.cached_entry(entry.name, entry.version)
        if old is not None and not force and cache.same_files(old, entry) and cache.is_complete(old):
            return cache.model_path(entry)
        kept = {(f.name, f.sha256, f.size) for f in old.files} if old is not None and not force else set()
        staged: list[tuple[Path, Path]] = []
        for f in entry.files:
            dest = cache.file_path(entry, f.name)
            if (f.name, f.sha256, f.size) in kept and dest.is_file() and dest.stat().st_size == f.size:
                continue
            # A cached copy stays usable until its replacement is downloaded and verified.
            target = dest.with_name(dest.name + ".new") if dest.exists() else dest
            download(f.url, target, sha256=f.sha256, size=f.size, label=f"{entry.ref} {f.name}", quiet=quiet)
            staged.append((target, dest))
        # Drop the completion marker before replacing files: a crash in between leaves an
        # incomplete, never a wrong, entry.
        (vdir / cache.ENTRY_FILE).unlink(missing_ok=True)
        for target, dest in staged:
            os.replace(target, dest)
        write_json_atomic(vdir / cache.ENTRY_FILE, entry.to_dict())
    return cache.model_path(entry)


def _not_cached(name: str, version: str | None) -> NotCachedError:
    ref = f"{name}@{version}" if version else name
    return NotCachedError(
        f"zoo:{ref}: model {ref} is not in the cache at {cache.cache_root()} and POSEZOO_OFFLINE is set; run "
        f"`posezoo zoo pull {ref}` on a machine with network, or copy the cache"
    )


def find_entry(ref: str, sources: list[str] | None = None) -> ZooEntry:
    """The index entry for `zoo:NAME[@VERSION]` (latest version when omitted)."""
    name, version = parse_ref(ref)
    catalogue = load_catalogue(sources)
    entry = catalogue.find(name, version)
    if entry is not None:
        return entry
    available = [e.version for e in catalogue.versions(name)]
    what = f"model {name}@{version}" if version else f"model {name}"
    msg = f"zoo:{ref.removeprefix('zoo:')}: {what} is not in any zoo source (tried: {', '.join(catalogue.sources)})"
    if available:
        msg += f" (available versions: {', '.join(available)})"
    if catalogue.problems:
        msg += "; some sources could not be read:\n  " + "\n  ".join(catalogue.problems)
    raise ZooError(msg)


def resolve_model(ref: str, *, quiet: bool = False, sources: list[str] | None = None) -> Path:
    """`zoo:NAME[@VERSION]` -> path of the verified .onnx in the cache, downloading if needed."""
    name, version = parse_ref(ref)
    if version is not None:
        cached = cache.cached_entry(name, version)
        if cached is not None and cache.is_complete(cached):
            return cache.model_path(cached)
    if offline():
        # Local sources (e.g. the built-in index) need no network; otherwise the cache decides.
        catalogue = load_catalogue(sources)
        entry = catalogue.find(name, version)
        cached = cache.cached_versions(name)
        if version is None and cached and (entry is None or
                                           version_key(cached[-1].version) >= version_key(entry.version)):
            return cache.model_path(cached[-1])
        if entry is None or any(is_remote(f.url) for f in entry.files):
            raise _not_cached(name, version)
        return pull(entry, quiet=quiet)
    try:
        entry = find_entry(ref, sources)
    except ZooError as exc:
        cached = cache.cached_versions(name) if version is None else []
        if not cached:
            raise
        # The sources are unreachable or dropped the model: the newest cached copy still works.
        log.warning("%s\nusing the cached version %s", exc, cached[-1].ref)
        return cache.model_path(cached[-1])
    return pull(entry, quiet=quiet)
