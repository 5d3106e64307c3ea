"""HTTP(S) and local transfers: resumable, verified, atomic downloads with a progress bar.

Only urllib is used so the zoo stays light. urllib's default opener already honours the
usual proxy variables (http_proxy, https_proxy, no_proxy); TLS trust comes from
POSEZOO_CA_BUNDLE, else REQUESTS_CA_BUNDLE / SSL_CERT_FILE, else the system store.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import IntegrityError, ZooError

CHUNK = 1 << 20
DEFAULT_TIMEOUT_S = 30.0
MAX_ATTEMPTS = 5
MAX_INDEX_BYTES = 64 << 20
CA_BUNDLE_VARS = ("POSEZOO_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
USER_AGENT = "posezoo-zoo/1"

# Failures worth retrying with a Range request: the connection broke or stalled.
TRANSIENT = (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionError,
             TimeoutError, socket.timeout)


class _Interrupted(Exception):
    """The server closed the body before sending all the bytes it announced."""


def offline() -> bool:
    """True when POSEZOO_OFFLINE asks for cache-only operation."""
    return os.environ.get("POSEZOO_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def timeout_s() -> float:
    """Socket timeout (connect and each read); POSEZOO_TIMEOUT overrides the default."""
    raw = os.environ.get("POSEZOO_TIMEOUT", "")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ZooError(f"POSEZOO_TIMEOUT={raw!r} is not a number of seconds") from None


def ca_bundle() -> tuple[str, str] | None:
    """(variable, file) of the CA bundle to trust: the first CA_BUNDLE_VARS entry that is set."""
    for var in CA_BUNDLE_VARS:
        value = os.environ.get(var)
        if value:
            if not Path(value).is_file():
                raise ZooError(f"{var}={value!r} does not name a readable CA bundle file")
            return var, value
    return None


def _ssl_context() -> ssl.SSLContext:
    bundle = ca_bundle()
    if bundle is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=bundle[1])
    except ssl.SSLError as exc:
        raise ZooError(f"{bundle[0]}={bundle[1]!r} is not a valid PEM CA bundle ({exc})") from None


def _opener(url: str) -> urllib.request.OpenerDirector:
    """An opener for `url`; build_opener keeps its default ProxyHandler (the *_proxy variables).

    The CA bundle also applies after an http -> https redirect; a broken CA setting only
    fails URLs that start as https.
    """
    try:
        context = _ssl_context()
    except ZooError:
        if urlsplit(url).scheme == "https":
            raise
        return urllib.request.build_opener()
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))


def is_remote(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


def local_path(url: str) -> Path:
    """The filesystem path of a file:// URL or a plain path."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    return Path(url)


def _reason(exc: BaseException) -> str:
    """A one-line cause, with the fix for the most common corporate-network failure."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (f"{reason}; if a proxy or firewall re-signs TLS traffic, point POSEZOO_CA_BUNDLE "
                "at its CA certificate bundle (a .pem file)")
    return str(reason)


def _refuse_offline(url: str) -> None:
    if offline():
        raise ZooError(f"POSEZOO_OFFLINE is set: refusing to contact {url}")


def fetch_bytes(url: str) -> tuple[bytes, str]:
    """Whole content of a small remote or local document (an index), size-capped, and the
    URL it finally came from (after redirects), against which relative links resolve."""
    if not is_remote(url):
        path = local_path(url)
        try:
            return path.read_bytes(), url
        except OSError as exc:
            raise ZooError(f"cannot read {path}: {exc.strerror or exc}") from None
    _refuse_offline(url)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with _opener(url).open(request, timeout=timeout_s()) as resp:
            data = resp.read(MAX_INDEX_BYTES + 1)
            final_url = resp.geturl()
    except urllib.error.HTTPError as exc:
        raise ZooError(f"cannot fetch {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, *TRANSIENT, OSError) as exc:
        raise ZooError(f"cannot fetch {url}: {_reason(exc)}") from None
    if len(data) > MAX_INDEX_BYTES:
        raise ZooError(f"{url} is larger than {MAX_INDEX_BYTES} bytes; not a zoo index")
    return data, final_url


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _open_at(url: str, offset: int) -> tuple[Any, int]:
    """Open `url` for reading from byte `offset`; return (stream, where the stream starts).

    The start is 0 instead of `offset` when an HTTP server ignores the Range header.
    """
    if not is_remote(url):
        fh = open(local_path(url), "rb")
        fh.seek(offset)
        return fh, offset
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    resp = _opener(url).open(urllib.request.Request(url, headers=headers), timeout=timeout_s())
    if resp.status == 206:
        match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if not match:
            resp.close()
            raise ZooError(f"{url} answered 206 without a valid Content-Range header")
        return resp, int(match.group(1))
    return resp, 0


class _Transfer:
    """The state of one file's download: bytes on disk in `part` and their running hash."""

    def __init__(self, part: Path, size: int, bar: Any) -> None:
        self.part, self.size, self.bar = part, size, bar
        self.hasher, self.have = hashlib.sha256(), 0
        if part.exists() and part.stat().st_size <= size:
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(CHUNK), b""):
                    self.hasher.update(block)
            self.have = part.stat().st_size
        bar.reset(total=size)
        bar.update(self.have)

    def restart(self) -> None:
        self.part.unlink(missing_ok=True)
        self.hasher, self.have = hashlib.sha256(), 0
        self.bar.reset(total=self.size)

    def append(self, stream: Any, what: str) -> None:
        """Write what `stream` delivers after the bytes already on disk."""
        with open(self.part, "ab" if self.have else "wb") as out:
            # read1 returns what arrived; read() would drop it when the connection breaks.
            for block in iter(lambda: stream.read1(CHUNK), b""):
                if self.have + len(block) > self.size:
                    self.restart()
                    raise IntegrityError(f"{what} is larger than the {self.size} bytes its entry "
                                         "declares; the partial file was deleted")
                out.write(block)
                self.hasher.update(block)
                self.have += len(block)
                self.bar.update(len(block))
        if self.have < self.size:
            # A body that ended as announced (or a local file at EOF) is really this short.
            if getattr(stream, "length", 0) == 0:
                got = self.have
                self.restart()
                raise IntegrityError(f"{what} has only {got} bytes but its entry declares "
                                     f"{self.size}; the partial file was deleted")
            raise _Interrupted(f"connection closed after {self.have} of {self.size} bytes")


def download(url: str, dest: Path, *, sha256: str, size: int, label: str,
             quiet: bool = False) -> Path:
    """Fetch `url` to `dest`, resuming `dest.part` if present; verify size and sha256.

    Interrupted transfers are retried with an HTTP Range request from where they stopped
    (MAX_ATTEMPTS in all); the partial file is kept on failure so the next call resumes.
    A sha256 mismatch deletes the partial file and raises IntegrityError naming both hashes.
    """
    if is_remote(url):
        _refuse_offline(url)
    from tqdm.auto import tqdm  # imported here: only downloads need it

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    what = f"{label}: {url}"
    with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False,
              disable=quiet or not sys.stderr.isatty()) as bar:
        state = _Transfer(part, size, bar)
        if part.exists() and state.have == 0:
            state.restart()  # larger than the whole file: not ours to resume
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if state.have == size and part.exists():
                break
            try:
                stream, start = _open_at(url, state.have)
                with stream:
                    if start != state.have:  # the server ignored Range (or answered another)
                        state.restart()
                        if start != 0:
                            continue  # ask again for the whole file
                    state.append(stream, what)
            except urllib.error.HTTPError as exc:
                if exc.code == 416 and state.have:  # our offset is past what the server has
                    state.restart()
                elif exc.code < 500:
                    raise ZooError(f"{what}: HTTP {exc.code} {exc.reason}") from None
                else:  # a server-side error may be temporary
                    _backoff(attempt, what, exc, part, state.have)
            except (_Interrupted, urllib.error.URLError, *TRANSIENT) as exc:
                if isinstance(getattr(exc, "reason", None), ssl.SSLError):  # retrying cannot help
                    raise ZooError(f"{what}: {_reason(exc)}") from None
                _backoff(attempt, what, exc, part, state.have)
            except OSError as exc:
                raise ZooError(f"{what}: writing {part} failed: {exc.strerror or exc}") from None
        if state.have != size or not part.exists():
            raise ZooError(f"{what}: download did not complete after {MAX_ATTEMPTS} attempts; "
                           "run it again to resume")
    actual = state.hasher.hexdigest()
    if actual != sha256:
        part.unlink(missing_ok=True)
        raise IntegrityError(
            f"{label}: sha256 mismatch for {url}: the entry declares {sha256} but the file "
            f"has {actual}; the downloaded file was deleted"
        )
    os.replace(part, dest)
    return dest


def _backoff(attempt: int, what: str, exc: BaseException, part: Path, have: int) -> None:
    """Wait before the next attempt, or give up (keeping the partial file) after the last."""
    if attempt >= MAX_ATTEMPTS:
        raise ZooError(f"{what}: download failed after {attempt} attempts ({_reason(exc)}); "
                       f"{have} bytes are kept in {part} and the next try resumes from there"
                       ) from None
    time.sleep(min(0.25 * 2 ** (attempt - 1), 5.0))
