"""`build_site(zoo_dir, output)`: a zoo directory becomes a static web site people can browse.

Layout (every link relative, so the site works opened from disk or copied to any web server):

    index.html                          the catalogue: every model, searchable and filterable
    models/NAME/index.html              the latest version's card, with every version listed
    models/NAME/VERSION/index.html      each version's card
    models/NAME/VERSION/sample.jpg      the sample frame (copied when the site is elsewhere)

Written into the zoo directory itself (the default), the pages sit beside index.json and the
model files, so `posezoo zoo serve` and any static server show them at `/`. Written elsewhere,
download links point back at the zoo (relative, or below `zoo_url` when the publisher gives
the address the zoo is served from).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from posezoo.runtime.files import copy_atomic, sha256_file, write_text_atomic

from .entry import ZooEntry
from .errors import IntegrityError, ZooError
from .pages import Links, card, catalogue
from .sources import INDEX_NAME, parse_index


def read_zoo(zoo_dir: Path) -> list[tuple[ZooEntry, list[str]]]:
    """Entries of a zoo directory's index, each with its files' URLs as written (relative to
    the index), after the same validation every client applies."""
    index = zoo_dir / INDEX_NAME
    if not index.is_file():
        raise ZooError(f"{zoo_dir}: not a zoo directory (no {INDEX_NAME}); create one with "
                       "`posezoo zoo publish`")
    data = index.read_bytes()
    parse_index(data, str(index))  # schema version, names, URLs, duplicates
    out = []
    for raw in json.loads(data)["entries"]:
        entry = ZooEntry.from_dict(raw, source=str(index))
        out.append((entry, [f.url for f in entry.files]))
    return out


def _copy_sample(entry: ZooEntry, url: str, zoo: Path, site: Path) -> None:
    """Copy the sample picture into the site after checking it against the entry's sha256."""
    record = next(f for f in entry.files if f.name == entry.sample["file"])
    src = zoo.joinpath(*url.split("/"))
    if not src.is_file():
        raise ZooError(f"{src}: listed by {entry.ref} in {zoo / INDEX_NAME} but missing")
    if src.stat().st_size != record.size or sha256_file(src) != record.sha256:
        raise IntegrityError(f"{src}: does not match the sha256 in {zoo / INDEX_NAME}; re-publish {entry.ref}")
    dest = site.joinpath(*url.split("/"))
    if dest.resolve() != src.resolve():
        copy_atomic(src, dest)


def build_site(zoo_dir: str | Path, output: str | Path | None = None, *, zoo_url: str | None = None,
               beside_index: bool | None = None) -> Path:
    """Write the site for `zoo_dir` into `output` (default: the zoo directory); returns the
    catalogue page. `zoo_url`: the address the zoo is served from, for download links and
    commands of a site published apart from its zoo. `beside_index`: the site will be served at
    the zoo's root (as `posezoo zoo serve` does) although written elsewhere."""
    zoo = Path(zoo_dir).expanduser().resolve()
    site = Path(output).expanduser().resolve() if output is not None else zoo
    entries = read_zoo(zoo)
    if site.exists() and not site.is_dir():
        raise ZooError(f"{site}: exists and is not a directory")
    if beside_index is None:
        beside_index = site == zoo
    if zoo_url:
        zoo_root = zoo_url if zoo_url.endswith("/") else zoo_url + "/"
    elif beside_index:
        zoo_root = ""
    else:
        zoo_root = Path(os.path.relpath(zoo, site)).as_posix().rstrip("/") + "/"

    models: dict[str, list[tuple[ZooEntry, list[str]]]] = {}
    for entry, urls in sorted(entries, key=lambda item: item[0].sort_key()):
        models.setdefault(entry.name, []).append((entry, urls))
    by_name = {name: [e for e, _ in items] for name, items in models.items()}

    write_text_atomic(site / "index.html", catalogue(by_name, Links("", zoo_root)))
    for name, items in models.items():
        versions = by_name[name]
        for entry, urls in items:
            sample = dict(zip((f.name for f in entry.files), urls)).get(entry.sample.get("file", ""))
            if sample and not urlsplit(sample).scheme:  # local to the zoo: copy, never hotlink
                _copy_sample(entry, sample, zoo, site)
            write_text_atomic(site / "models" / name / entry.version / "index.html",
                              card(entry, versions, Links("../../../", zoo_root), urls))
        latest, urls = items[-1]
        write_text_atomic(site / "models" / name / "index.html",
                          card(latest, versions, Links("../../", zoo_root), urls))
    return site / "index.html"

