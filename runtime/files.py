"""File helpers: atomic output (write beside the target, then rename) and hashing.

One definition for every writer in posezoo (results, videos, configs, snapshots, zoo files).
Temporary files get the usual mode (0666 minus the umask), not mkstemp's private 0600, since
results and models are meant to be shared like any other file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np


def _umask() -> int:
    # Read without the os.umask(0) round trip, which is not thread-safe (decode threads write too).
    try:
        match = re.search(r"^Umask:\s*([0-7]+)", Path("/proc/self/status").read_text(), re.M)
        if match:
            return int(match.group(1), 8)
    except OSError:
        pass
    return 0o022


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    ``suffix`` is the temporary name's ending (a writer that picks its format from the file
    name, like OpenCV's VideoWriter or Keras, needs the real one). On an exception the temporary
    file is removed and ``path`` keeps its previous content (or stays absent).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def json_text(data: Any, *, indent: int | None = 2, sort_keys: bool = False, default: Any = None) -> str:
    """Standard JSON that every language reads: NaN and infinities become null (Python would
    write the invalid tokens ``NaN``/``Infinity``), numpy values become plain numbers and lists."""
    return json.dumps(_plain(data), indent=indent, sort_keys=sort_keys, default=default, allow_nan=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | os.PathLike[str], data: Any, default: Any = None) -> Path:
    return write_text_atomic(path, json_text(data, default=default) + "\n")


def copy_atomic(src: str | os.PathLike[str], dst: str | os.PathLike[str], chunk: int = 1 << 20) -> Path:
    with atomic_output(dst) as tmp:
        with open(tmp, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, chunk)
            out.flush()
            os.fsync(out.fileno())
    return Path(dst)


def weights_sha256(arrays: Iterable[tuple[str, np.ndarray]]) -> str:
    """sha256 over a network's weights as (name, array) pairs: what an exported model records,
    the same for every backend (a snapshot file also holds optimiser state, which changes nothing
    in the model)."""
    digest = hashlib.sha256()
    for name, array in arrays:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large models never load into memory at once."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
