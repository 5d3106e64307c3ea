"""Serve a zoo directory over HTTP with Range support, so clients can resume downloads, and
its web site (`posezoo.zoo.site`) at `/` beside index.json.

For sharing inside a lab network or for tests; it binds to 127.0.0.1 unless told otherwise.
Put a real web server (or object storage) in front of it for anything public.
"""
from __future__ import annotations

import logging
import os
import posixpath
import re
import sys
import tempfile
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

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
    """Static files with single-range GET/HEAD; directory listings are disabled.

    With `site_directory`, a path is looked up there first, then in the zoo directory, and a
    directory that holds index.html serves it: the site's pages at `/` beside the zoo's files.
    """

    protocol_version = "HTTP/1.1"

    def __init__(self, *args, site_directory: str | None = None, **kwargs) -> None:
        self.site_directory = site_directory  # set first: the base class handles the request
        super().__init__(*args, **kwargs)

    def _parts(self) -> list[str] | None:
        """The URL path's segments; None when one is hidden (.lock, .git, temporary files)."""
        path = posixpath.normpath(unquote(urlsplit(self.path).path, errors="surrogatepass"))
        parts = [p for p in path.split("/") if p and p != "."]
        if any(p.startswith(".") or os.sep in p or (os.altsep and os.altsep in p) for p in parts):
            return None
        return parts

    def _find(self) -> tuple[Path, bool] | None:
        """(file, whether the URL named its folder), looked up in the site, then the zoo."""
        parts = self._parts()
        if parts is None:
            return None
        roots = [self.site_directory] if self.site_directory else []
        for root in [*roots, self.directory]:
            path = Path(root).joinpath(*parts)
            folder = path.is_dir()
            if folder:
                path = path / "index.html"
            if path.is_file():
                return path, folder
        return None

    def send_head(self):  # type: ignore[override]
        found = self._find()
        if found is None:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        path, folder = found
        url_path = urlsplit(self.path).path
        if folder and not url_path.endswith("/"):
            # /models/x -> /models/x/, so the page's relative links resolve against its folder
            self.send_response(HTTPStatus.MOVED_PERMANENTLY)
            self.send_header("Location", url_path + "/")
            self.send_header("Content-Length", "0")
            self.end_headers()
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
                handler: type[ZooRequestHandler] = ZooRequestHandler,
                site_dir: str | Path | None = None) -> ThreadingHTTPServer:
    """A ready (not yet serving) HTTP server for `zoo_dir` (and the site in `site_dir`, served
    over it at `/`); port 0 picks a free port."""
    root = Path(zoo_dir).expanduser().resolve()
    if not (root / "index.json").is_file():
        raise ZooError(f"{root}: not a zoo directory (no index.json); create one with `posezoo zoo publish`")
    site = str(Path(site_dir).expanduser().resolve()) if site_dir is not None else None
    server = ThreadingHTTPServer((host, port), partial(handler, directory=str(root), site_directory=site))
    server.daemon_threads = True
    return server


def serve(zoo_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, site: bool = True) -> None:
    """Serve until interrupted (Ctrl-C). With `site`, the zoo's web site is built afresh into a
    temporary directory (the zoo directory is not written to) and served at `/`."""
    from .site import build_site

    with tempfile.TemporaryDirectory(prefix="posezoo-site-") as tmp:
        if site:
            try:
                build_site(zoo_dir, tmp, beside_index=True)
            except ZooError as exc:  # the pages are a convenience; downloads must keep working
                print(f"warning: serving without the web site: {exc}", file=sys.stderr, flush=True)
                site = False
        server = make_server(zoo_dir, host, port, site_dir=tmp if site else None)
        url_host = f"[{host}]" if ":" in host else host
        print(f"serving {Path(zoo_dir).resolve()} at http://{url_host}:{server.server_address[1]}/ "
              "(Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
