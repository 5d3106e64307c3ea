"""Where zoo indexes come from: POSEZOO_ZOO or the config file, then the built-in index.

A source is an http(s) URL, a file:// URL or a local path; each names either an index.json or
a directory (or URL prefix) that holds one. File URLs inside an index are resolved relative to
the index itself, so a zoo directory can be served over HTTP or read from disk unchanged.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from .entry import ZooEntry
from .errors import ZooError
from .fetch import fetch_bytes, is_remote, local_path

INDEX_SCHEMA_VERSION = 1
INDEX_NAME = "index.json"
BUILTIN_DIR = Path(__file__).resolve().parent
BUILTIN_SOURCE = str(BUILTIN_DIR / INDEX_NAME)
CONFIG_NAMES = ("config.yaml", "config.yml", "config.json")


def zoo_home() -> Path:
    """$POSEZOO_HOME, else the per-user cache directory (platformdirs)."""
    env = os.environ.get("POSEZOO_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("posezoo"))


_URL_HEAD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?:\[[^\]]*\]|[^/:]*)(?::\d+)?")


def split_sources(text: str) -> list[str]:
    """Split POSEZOO_ZOO on commas or os.pathsep without cutting `https://host:port` apart
    (on POSIX the separator is ':', which URLs also use)."""
    if "," in text or os.pathsep != ":":
        pieces = text.split("," if "," in text else os.pathsep)
    else:
        pieces, pos = [], 0
        while pos <= len(text):
            head = _URL_HEAD.match(text, pos)
            end = text.find(":", head.end() if head else pos)
            end = len(text) if end == -1 else end
            pieces.append(text[pos:end])
            pos = end + 1
    return [p.strip() for p in pieces if p.strip()]


def _config_sources(home: Path) -> list[str]:
    for name in CONFIG_NAMES:
        path = home / name
        if not path.is_file():
            continue
        data = _read_config(path)
        if not isinstance(data, dict):
            raise ZooError(f"{path}: expected a mapping with the key 'zoo_sources'")
        raw = data.get("zoo_sources", [])
        if isinstance(raw, str):
            raw = split_sources(raw)
        if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
            raise ZooError(f"{path}: 'zoo_sources' must be a list of URLs or paths")
        # Relative paths in the config are relative to the config file, not the working dir.
        return [s if urlsplit(s).scheme in ("http", "https", "file") else str(home / Path(s).expanduser())
                for s in raw]
    return []


def _read_config(path: Path) -> object:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise ZooError(f"{path}: not valid JSON: {exc}") from None
    import yaml  # only when a YAML config exists

    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ZooError(f"{path}: not valid YAML: {exc}") from None


def configured_sources(include_builtin: bool = True) -> list[str]:
    """Sources in search order: POSEZOO_ZOO if set, else the config file; then the built-in."""
    env = os.environ.get("POSEZOO_ZOO")
    sources = split_sources(env) if env else _config_sources(zoo_home())
    if include_builtin:
        sources.append(BUILTIN_SOURCE)
    return sources


def index_location(source: str) -> str:
    """The URL or path of the index.json that `source` names."""
    if is_remote(source):
        path = urlsplit(source).path
        if path.endswith(".json"):
            return source
        return urljoin(source if source.endswith("/") else source + "/", INDEX_NAME)
    path = local_path(source).expanduser()
    return str(path / INDEX_NAME if path.is_dir() or not path.suffix else path)


def _absolute_url(location: str, url: str, remote: bool, where: str) -> str:
    if is_remote(url):
        return url
    if urlsplit(url).scheme == "file":
        if remote:  # a remote index must not make us read files on this machine
            raise ZooError(f"{where}: a remote index may not reference local file {url!r}")
        return url
    if remote:
        return urljoin(location, url)
    return (Path(location).resolve().parent / url).as_uri()


def parse_index(data: bytes, location: str) -> list[ZooEntry]:
    """Entries of one index document, with every file URL made absolute."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZooError(f"zoo index {location} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        raise ZooError(f"zoo index {location} must be an object with an 'entries' list")
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ZooError(f"zoo index {location} has no valid integer 'schema_version'")
    if version > INDEX_SCHEMA_VERSION:
        raise ZooError(
            f"zoo index {location} has schema_version {version}, newer than the "
            f"{INDEX_SCHEMA_VERSION} this posezoo understands; upgrade posezoo "
            "(pip install -U posezoo) to use this zoo"
        )
    remote = is_remote(location)
    entries: list[ZooEntry] = []
    seen: set[str] = set()
    for raw in doc["entries"]:
        entry = ZooEntry.from_dict(raw, source=location)
        if entry.ref in seen:
            raise ZooError(f"zoo index {location} lists {entry.ref} twice")
        seen.add(entry.ref)
        where = f"zoo index {location}, entry {entry.ref}"
        entry.files = [replace(f, url=_absolute_url(location, f.url, remote, where)) for f in entry.files]
        entries.append(entry)
    return entries


def load_index(source: str) -> list[ZooEntry]:
    """Fetch and parse the index of one source; raises ZooError naming the source on failure."""
    location = index_location(source)
    if not is_remote(location) and not Path(location).is_file():
        raise ZooError(f"zoo source {source}: no index found at {location}")
    data, final = fetch_bytes(location)
    entries = parse_index(data, final)
    if final != location:  # name the source the user configured in messages
        for entry in entries:
            entry.source = location
    return entries
