"""Exclusive lock files: one process at a time downloads a zoo model into a shared cache, and one
process at a time writes a results file (two analyses of one video into one folder would
otherwise write one ``.partial`` together, or fail with a raw HDF5 lock error).

The lock is the OS's (``flock``/``msvcrt``), so a killed process never leaves a stale lock; the
file holds the owner's pid and host so a refused process can say who holds it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


class LockedError(RuntimeError):
    """Another process holds the lock; the message names it."""


@contextlib.contextmanager
def file_lock(path: Path, what: str, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block; the file is removed when released.

    ``wait=False`` raises `LockedError` naming the holder instead of waiting for it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, what, wait)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still held: a waiter re-checks that its file is still this path
        _unlock(fd)
        os.close(fd)


def lock_holder(path: Path) -> str | None:
    """Who holds the lock on ``path`` right now (None when nobody does), without creating the
    file or waiting: for a scheduler that decides whether to hand the work to someone else."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            _unlock(fd)
            return None
        return _holder(fd)
    finally:
        os.close(fd)


def _acquire(path: Path, what: str, wait: bool) -> int:
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if _try_lock(fd):
            try:  # the holder we waited for may have removed the file: lock the current one instead
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            _unlock(fd)
        elif not wait:
            holder = _holder(fd)
            os.close(fd)
            raise LockedError(f"{what} is in use by {holder} (lock file {path}); wait for it to finish, or "
                              "stop it and run again")
        elif not waited:
            log.warning("waiting for another posezoo process (%s) that is working on %s", _holder(fd), what)
            waited = True
        os.close(fd)
        time.sleep(0.2)


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode(errors="replace").split()
    except OSError:
        text = []
    return f"process {text[0]} on {text[1]} (since {text[2]})" if len(text) >= 3 else "another process"


if os.name == "nt":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
