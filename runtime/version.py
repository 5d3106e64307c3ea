"""The installed version of posezoo (or of another distribution), for provenance and sidecars."""
from __future__ import annotations

from importlib import metadata


def version(dist: str = "posezoo") -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed" if dist != "posezoo" else "unknown"
