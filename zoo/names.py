"""Validation of entry names, versions and file names, and `zoo:NAME[@VERSION]` refs.

Every string that comes from an index becomes a path component in the cache, so each one is
checked against a strict pattern here: no separators, no `..`, no absolute paths, no hidden
files. This is the first of two lines of defence (the second is `cache.safe_join`).
"""
from __future__ import annotations

import re

from .errors import ZooError

REF_PREFIX = "zoo:"
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_LEN = 128
# Names the cache layout uses for its own bookkeeping; an index may not list files with them.
RESERVED_FILES = frozenset({"entry.json", "index.json"})


def _check(kind: str, value: object, pattern: re.Pattern[str], where: str) -> str:
    suffix = f" (in {where})" if where else ""
    if not isinstance(value, str):
        raise ZooError(f"{kind} must be a string, got {type(value).__name__}{suffix}")
    if not value or len(value) > MAX_LEN or not pattern.fullmatch(value) or ".." in value:
        raise ZooError(
            f"invalid {kind} {value!r}{suffix}: it must match {pattern.pattern}, "
            f"be at most {MAX_LEN} characters and contain no '..'"
        )
    return value


def validate_name(name: object, where: str = "") -> str:
    """Return `name` if it is a valid entry name (`[a-z0-9][a-z0-9._-]*`), else raise ZooError."""
    return _check("model name", name, NAME_RE, where)


def validate_version(version: object, where: str = "") -> str:
    """Return `version` if it is a valid version string (e.g. `1.0.0`, `2024.11`, `1.0rc1`)."""
    return _check("version", version, VERSION_RE, where)


def validate_file_name(file_name: object, where: str = "") -> str:
    """Return `file_name` if it is a plain file name that is safe to create in the cache."""
    checked = _check("file name", file_name, FILE_RE, where)
    if checked in RESERVED_FILES or checked.endswith(".part"):
        raise ZooError(f"file name {checked!r} is reserved by the zoo cache layout (in {where})")
    return checked


def parse_ref(ref: str) -> tuple[str, str | None]:
    """Split `zoo:NAME[@VERSION]` (the `zoo:` prefix is optional) into (name, version or None)."""
    body = ref[len(REF_PREFIX):] if ref.startswith(REF_PREFIX) else ref
    name, sep, version = body.partition("@")
    if sep and not version:
        raise ZooError(f"model reference {ref!r} has an empty version after '@'")
    validate_name(name, where=f"reference {ref!r}")
    if sep:
        validate_version(version, where=f"reference {ref!r}")
        return name, version
    return name, None


_TOKEN_RE = re.compile(r"\d+|[A-Za-z]+")


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key that orders versions the way people expect.

    Numeric runs compare as numbers (1.10 > 1.9); a letter run marks a pre-release, so
    1.0rc1 < 1.0 < 1.0.1. The end of a version is a sentinel that sits between the two.
    """
    tokens: list[tuple[int, int, str]] = []
    for tok in _TOKEN_RE.findall(version):
        tokens.append((2, int(tok), "") if tok.isdigit() else (0, 0, tok.lower()))
    tokens.append((1, 0, ""))
    return tuple(tokens)
