"""`posezoo zoo ...`: list, info, pull, pack, publish, site, serve (the work is in posezoo.zoo)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from posezoo.runtime.files import json_text
from posezoo.zoo import cache
from posezoo.zoo.card import human_size, model_card
from posezoo.zoo.entry import ZooEntry
from posezoo.zoo.errors import ZooError
from posezoo.zoo.names import parse_ref, version_key
from posezoo.zoo.resolve import Catalogue, find_entry, load_catalogue, pull, resolve_model

from .common import positive, require_extra


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cache_state(entry: ZooEntry) -> bool:
    cached = cache.cached_entry(entry.name, entry.version)
    return cached is not None and cache.same_files(cached, entry) and cache.is_complete(cached)


def _all_entries(catalogue: Catalogue) -> list[tuple[ZooEntry, bool]]:
    """Index entries plus cached versions no source lists any more (useful offline)."""
    rows = [(e, _cache_state(e)) for e in catalogue.entries]
    listed = {e.ref for e in catalogue.entries}
    rows += [(e, True) for e in cache.cached_entries() if e.ref not in listed]
    return sorted(rows, key=lambda r: (r[0].name, version_key(r[0].version)))


def _warn(problems: list[str]) -> None:
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)


def cmd_list(args: argparse.Namespace) -> int:
    catalogue = load_catalogue()
    rows = _all_entries(catalogue)
    _warn(catalogue.problems)
    if args.json:
        doc = [{**e.to_dict(), "cached": c, "source": e.source} for e, c in rows]
        print(json_text(doc))
        return 0
    if not rows:
        print("no models found in the zoo sources")
        return 0

    def keypoints(e: ZooEntry) -> str:
        names = ", ".join(e.keypoints)
        return f"{len(e.keypoints)} ({names[:37] + '...' if len(names) > 40 else names})"

    table = [[e.name, e.version, keypoints(e), human_size(e.size), "yes" if c else "no"] for e, c in rows]
    print(_table(table, ["NAME", "VERSION", "KEYPOINTS", "SIZE", "CACHED"]))
    return 0


def _entry_for(ref: str) -> ZooEntry:
    """The index entry, or the cached one when no source lists it (offline)."""
    try:
        return find_entry(ref)
    except ZooError:
        name, version = parse_ref(ref)
        versions = [e for e in cache.cached_versions(name) if version in (None, e.version)]
        if not versions:
            raise
        return versions[-1]


def cmd_info(args: argparse.Namespace) -> int:
    entry = _entry_for(args.ref)
    cached = _cache_state(entry)
    path = cache.model_path(entry)
    if args.json:
        print(json_text({**entry.to_dict(), "source": entry.source, "cached": cached,
                          "path": str(path) if cached else None}, indent=2))
        return 0
    spec: dict[str, Any] | None = None
    if cached:
        from posezoo.runtime.spec import read_spec

        spec = read_spec(path).to_dict()
    print(model_card(entry, spec))
    print(f"Source: {entry.source}")
    print(f"Cached: {path}" if cached else f"Not cached (run `posezoo zoo pull {entry.ref}`)")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    if args.force:
        path = pull(find_entry(args.ref), quiet=args.quiet, force=True)
    else:
        path = resolve_model(args.ref, quiet=args.quiet)
    print(path)
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from posezoo.zoo.packing import pack

    metrics = None
    if args.metrics:
        try:
            metrics = json.loads(Path(args.metrics).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ZooError(f"{args.metrics}: cannot read metrics JSON: {exc}") from None
        if not isinstance(metrics, dict):
            raise ZooError(f"{args.metrics}: metrics must be a JSON object")
    model, sample = Path(args.model), args.sample
    if (model / "run.json").is_file():  # a training run: export it first when it has no export
        if not (model / "exports" / "model.onnx").is_file():
            require_extra("onnx", "torch")
            from posezoo.export import export

            print(f"{model} has no export yet: exporting it (with the parity gate)")
            export(model)
        if sample is None:
            from posezoo.training.run import load_run

            run = load_run(model)
            sample = run.project.image_path((list(run.split.test) or list(run.split.train))[0])
    out = pack(model, args.output, name=args.name, version=args.version, description=args.description,
               license=args.license, training_data=args.training_data, metrics=metrics, species=args.species,
               view=args.view, sample_image=sample, measure_speed=not args.no_speed, threads=args.threads,
               with_weights=args.with_weights, force=args.force)
    print(f"packed {out} (publish it with `posezoo zoo publish {out} ZOO_DIR`)")
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    from posezoo.zoo.site import build_site

    page = build_site(args.zoo_dir, args.output, zoo_url=args.zoo_url)
    print(f"wrote {page} (open it in a browser, or copy {page.parent} to any web server)")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from posezoo.zoo.packing import publish

    entry = publish(args.entry_dir, args.zoo_dir, force=args.force)
    print(f"published {entry.ref} to {Path(args.zoo_dir) / 'index.json'}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from posezoo.zoo.serve import serve

    serve(args.zoo_dir, host=args.host, port=args.port)
    return 0


def add_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `zoo` command (with its sub-commands) to an argparse subparsers object."""
    zoo = subparsers.add_parser(
        "zoo", help="list, download, pack, publish and serve shared models, and the zoo's web site",
        description="The model zoo. Sources: POSEZOO_ZOO (comma- or os.pathsep-separated URLs "
                    "or directories), else `zoo_sources` in $POSEZOO_HOME/config.yaml, then the "
                    "built-in index. Cache: $POSEZOO_HOME/models. POSEZOO_OFFLINE=1 uses the "
                    "cache only; POSEZOO_CA_BUNDLE sets the TLS trust store.")
    sub = zoo.add_subparsers(dest="zoo_command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="models from all sources, and whether they are cached")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("info", help="print a model's card")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    p.add_argument("--json", action="store_true", help="print the entry as JSON")
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("pull", help="download and verify a model into the cache")
    p.add_argument("ref", metavar="NAME[@VERSION]", help="latest version when omitted")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_pull)

    p = sub.add_parser(
        "pack", help="make a zoo entry from an exported model or a training run (exported first when it has none)",
        description="RUN_OR_ONNX is an exported .onnx file, a training run directory (exported first, with the "
                    "parity gate, when it has no exports/model.onnx yet) or a directory that holds exactly one "
                    ".onnx file (model.onnx is preferred when there are several). Name, keypoints, skeleton, "
                    "metrics and provenance come from the model's embedded spec; a sample frame is drawn with "
                    "the predicted keypoints and the CPU frames/s are measured for the card.")
    p.add_argument("model", metavar="RUN_OR_ONNX")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="entry directory to write")
    p.add_argument("--name", help="entry name (default: the spec's name)")
    p.add_argument("--version", default="1.0.0", help="entry version (default: %(default)s)")
    p.add_argument("--description", default="", help="one-paragraph description")
    p.add_argument("--license", default="", help="license of the weights, e.g. CC-BY-4.0")
    p.add_argument("--training-data", default=None,
                   help="what it was trained on (default: the spec's provenance dataset)")
    p.add_argument("--metrics", metavar="JSON", help="metrics JSON file (default: from the spec)")
    p.add_argument("--species", default="", help="animal, e.g. mouse or 'Mus musculus'")
    p.add_argument("--view", default="", help="camera view: top, side, bottom, front...")
    p.add_argument("--sample", metavar="IMAGE", help="frame drawn with predicted keypoints for the card "
                   "(default for a run: its first test image)")
    p.add_argument("--no-speed", action="store_true", help="skip the CPU frames/s measurement (about 1 s)")
    p.add_argument("--threads", type=positive, default=None,
                   help="threads for the speed figure (default: the physical cores)")
    p.add_argument("--with-weights", action="store_true",
                   help="also pack the run's training snapshot (RUN_OR_ONNX must be the run), so others can "
                        "fine-tune from the entry with `posezoo train PROJECT --init zoo:NAME`")
    p.add_argument("--force", action="store_true", help="write into a non-empty DIR")
    p.set_defaults(handler=cmd_pack)

    p = sub.add_parser("publish", help="copy a packed entry into a zoo directory and index it")
    p.add_argument("entry_dir", metavar="ENTRY_DIR")
    p.add_argument("zoo_dir", metavar="ZOO_DIR")
    p.add_argument("--force", action="store_true", help="replace an existing NAME@VERSION")
    p.set_defaults(handler=cmd_publish)

    p = sub.add_parser("site", help="write the zoo's static web site (a catalogue and a card per model)",
                       description="Plain HTML and CSS with relative links and nothing fetched from elsewhere: "
                                   "open it from disk or copy SITE_DIR to any web server.")
    p.add_argument("zoo_dir", metavar="ZOO_DIR")
    p.add_argument("--output", "-o", metavar="SITE_DIR", default=None,
                   help="default: ZOO_DIR itself, beside index.json")
    p.add_argument("--zoo-url", default=None, help="address ZOO_DIR is served from, for download links and "
                   "commands when SITE_DIR is published apart from it")
    p.set_defaults(handler=cmd_site)

    p = sub.add_parser("serve", help="serve a zoo directory over HTTP: its web site at /, index and models "
                                     "beside it (resumable downloads)")
    p.add_argument("zoo_dir", metavar="ZOO_DIR")
    p.add_argument("--port", type=int, default=8000, help="default: %(default)s; 0 picks a free port")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: %(default)s, this machine only)")
    p.set_defaults(handler=cmd_serve)
    return zoo

