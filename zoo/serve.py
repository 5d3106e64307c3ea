"""Serve a zoo directory over HTTP with Range support, so clients can resume downloads.

For sharing inside a lab network or for tests; it binds to 127.0.0.1 unless told otherwise.
Put a real web server (or object storage) in front of it for anything public.
"""
from __future__ import annotations

import logging
import os
import re
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .errors import ZooError

log = logging.getLogger(__name__)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
CHUNK = 1 << 16


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """(first, last) inclusive for one `bytes=` range; None to send the whole file;
    "unsatisfiable" when the range starts past the end. Multiple ranges get the whole file."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix range: the last N bytes
        n = int(last)
        return (max(0, size - n), size - 1) if n and size else "unsatisfiable"
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return "unsatisfiable"
    return start, end


class ZooRequestHandler(SimpleHTTPRequestHandler):
    """Static files with single-range GET/HEAD; directory listings are disabled."""

    protocol_version = "HTTP/1.1"

    def send_head(self):  # type: ignore[override]
        path = Path(self.translate_path(self.path))
        hidden = any(part.startswith(".") for part in path.relative_to(self.directory).parts)
        if hidden or not path.is_file():  # no .lock, .git, temporary files
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        try:
            fh = open(path, "rb")
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        size = os.fstat(fh.fileno()).st_size
        wanted = parse_range(self.headers.get("Range"), size)
        if wanted == "unsatisfiable":
            fh.close()
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if wanted is None:
            start, end = 0, size - 1
            self.send_response(HTTPStatus.OK)
        else:
            start, end = wanted  # type: ignore[misc]
            self.send_response(HTTPStatus.PARTIAL_CONTENT)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Length", str(max(0, end - start + 1)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", self.date_time_string(int(os.fstat(fh.fileno()).st_mtime)))
        self.end_headers()
        fh.seek(start)
        self._remaining = max(0, end - start + 1)
        return fh

    def copyfile(self, source, outputfile) -> None:  # type: ignore[override]
        """Send only the requested range; a client hanging up is not a server error."""
        remaining = self._remaining
        try:
            while remaining > 0:
                block = source.read(min(CHUNK, remaining))
                if not block:
                    break
                outputfile.write(block)
                remaining -= len(block)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib signature)
        log.info("%s %s", self.address_string(), format % args)


def make_server(zoo_dir: str | Path, host: str = "127.0.0.1", port: int = 8000,
                handler: type[ZooRequestHandler] = ZooRequestHandler) -> ThreadingHTTPServer:
    """A ready (not yet serving) HTTP server for `zoo_dir`; port 0 picks a free port."""
    root = Path(zoo_dir).expanduser().resolve()
    if not (root / "index.json").is_file():
        raise ZooError(f"{root}: not a zoo directory (no index.json); create one with `posezoo zoo publish`")
    server = ThreadingHTTPServer((host, port), partial(handler, directory=str(root)))
    server.daemon_threads = True
    return server


def serve(zoo_dir: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted (Ctrl-C)."""
    server = make_server(zoo_dir, host, port)
    url_host = f"[{host}]" if ":" in host else host
    print(f"serving {Path(zoo_dir).resolve()} at http://{url_host}:{server.server_address[1]}/ "
          "(Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
