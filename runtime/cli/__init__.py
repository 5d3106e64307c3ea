"""The `posezoo` command line: a leaf that nothing imports.

Each module holds one group of commands; a handler parses its arguments, calls library functions
and prints. Backends and optional engines are imported only inside the handlers that need them,
with a message naming the extra to install when one is missing, so `posezoo --help` stays fast on
the light install.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from posezoo.runtime.version import version

from . import analysis, demo, live, models, scale, training, zoo
from .common import CommandError, Terminated, sigterm_as_interrupt

_GROUPS = (models, analysis, scale, live, training, demo, zoo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posezoo",
        description="Animal pose estimation: train on a DeepLabCut project, export one .onnx file, "
                    "analyse video anywhere. Run `posezoo COMMAND --help` for each command.")
    parser.add_argument("--version", action="version", version=f"posezoo {version()}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in _GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for a command that starts itself again
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        with sigterm_as_interrupt():
            return int(args.handler(args) or 0)
    except Terminated:
        print("posezoo: terminated (SIGTERM); what was done is kept: run the same command again to continue",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("posezoo: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # user-facing errors: message, no traceback
        if args.debug or not _is_user_error(exc):
            raise
        print(f"posezoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _is_user_error(exc: Exception) -> bool:
    from posezoo.zoo.errors import ZooError

    return isinstance(exc, (CommandError, ZooError, FileNotFoundError, ValueError, PermissionError, RuntimeError,
                            json.JSONDecodeError, OSError))
