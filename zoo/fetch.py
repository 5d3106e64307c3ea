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


def ca_bundle() -> str | None:
    """The CA bundle file to trust, from the first CA_BUNDLE_VARS variable that is set."""
    for var in CA_BUNDLE_VARS:
        value = os.environ.get(var)
        if value:
            if not Path(value).is_file():
                raise ZooError(f"{var}={value!r} does not name a readable CA bundle file")
            return value
    return None


def _opener(url: str) -> urllib.request.OpenerDirector:
    """An opener for `url`; build_opener keeps its default ProxyHandler (the *_proxy variables)."""
    if urlsplit(url).scheme != "https":  # a broken CA setting must not block plain HTTP
        return urllib.request.build_opener()
    context = ssl.create_default_context(cafile=ca_bundle())
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


def fetch_bytes(url: str) -> bytes:
    """Whole content of a small remote or local document (an index), size-capped."""
    if not is_remote(url):
        path = local_path(url)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ZooError(f"cannot read {path}: {exc.strerror or exc}") from None
    _refuse_offline(url)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with _opener(url).open(request, timeout=timeout_s()) as resp:
            data = resp.read(MAX_INDEX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ZooError(f"cannot fetch {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, *TRANSIENT, OSError) as exc:
        raise ZooError(f"cannot fetch {url}: {_reason(exc)}") from None
    if len(data) > MAX_INDEX_BYTES:
        raise ZooError(f"{url} is larger than {MAX_INDEX_BYTES} bytes; not a zoo index")
    return data


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
    hasher, have = hashlib.sha256(), 0
    if part.exists():
        have = part.stat().st_size
        if have > size:
            part.unlink()
            have = 0
        else:
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(CHUNK), b""):
                    hasher.update(block)
    bar = tqdm(total=size, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
               desc=label, leave=False, disable=quiet or not sys.stderr.isatty())
    attempt = 0
    try:
        while have < size or not part.exists():
            attempt += 1
            try:
                stream, start = _open_at(url, have)
                with stream:
                    if start != have:  # the server ignored Range: start again from zero
                        hasher, have = hashlib.sha256(), 0
                        bar.reset(total=size)
                    with open(part, "ab" if have else "wb") as out:
                        # read1 returns what arrived; read() would drop it on a broken connection.
                        for block in iter(lambda: stream.read1(CHUNK), b""):
                            if have + len(block) > size:
                                part.unlink(missing_ok=True)
                                raise IntegrityError(
                                    f"{label}: {url} sent more than the {size} bytes its entry "
                                    "declares; the partial file was deleted")
                            out.write(block)
                            hasher.update(block)
                            have += len(block)
                            bar.update(len(block))
                if have < size:
                    raise _Interrupted(f"connection closed after {have} of {size} bytes")
            except urllib.error.HTTPError as exc:
                if exc.code == 416 and have:  # our offset is past what the server has
                    part.unlink(missing_ok=True)
                    hasher, have = hashlib.sha256(), 0
                    bar.reset(total=size)
                elif exc.code < 500 or attempt >= MAX_ATTEMPTS:
                    raise ZooError(f"{label}: cannot download {url}: HTTP {exc.code} {exc.reason}"
                                   ) from None
                else:  # a server-side error may be temporary
                    time.sleep(min(0.25 * 2 ** (attempt - 1), 5.0))
            except (_Interrupted, urllib.error.URLError, *TRANSIENT) as exc:
                if isinstance(getattr(exc, "reason", None), ssl.SSLError):  # retrying cannot help
                    raise ZooError(f"{label}: cannot download {url}: {_reason(exc)}") from None
                if attempt >= MAX_ATTEMPTS:
                    raise ZooError(
                        f"{label}: download of {url} failed after {attempt} attempts ({_reason(exc)}); "
                        f"{have} bytes are kept in {part} and the next try resumes from there"
                    ) from None
                time.sleep(min(0.25 * 2 ** (attempt - 1), 5.0))
            except OSError as exc:
                raise ZooError(f"{label}: transfer of {url} to {part} failed: {exc.strerror or exc}"
                               ) from None
    finally:
        bar.close()
    actual = hasher.hexdigest()
    if actual != sha256:
        part.unlink(missing_ok=True)
        raise IntegrityError(
            f"{label}: sha256 mismatch for {url}: the entry declares {sha256} but the file "
            f"has {actual}; the downloaded file was deleted"
        )
    os.replace(part, dest)
    return dest
