"""What several command groups share: the user-facing error, backend checks, runtime options."""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import signal
import threading
from collections.abc import Iterator
from typing import Any

DEVICE_HELP = "auto, cpu, cuda, cuda:N or tensorrt (default auto: a GPU when onnxruntime has one)"
MODEL_HELP = "an exported .onnx file or zoo:NAME[@VERSION]"


class CommandError(Exception):
    """A user-facing failure: printed without a traceback, exit code 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, `timeout`, `kill`), raised where Ctrl-C would be."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Handle SIGTERM like Ctrl-C, since schedulers send it: analysis flushes what it has and the
    same command resumes; training resumes from its last snapshot."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def require_extra(module: str, extra: str) -> None:
    """Fail with the install command when an optional backend is missing."""
    if importlib.util.find_spec(module) is None:
        raise CommandError(f"this command needs {module}, which is not installed: "
                           f'pip install "posezoo[{extra}]"')


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


BODY_CHECK_HELP = ("keep every keypoint's score as the network gives it: no body-plan check (a keypoint farther "
                   "from the rest of the animal than the labelled frames allow, or both sides of a left/right "
                   "pair on one spot, otherwise scores below pcutoff; a multi-animal model otherwise assembles "
                   "no animal whose keypoints lie nearer or farther apart than in the labelled frames). Use it "
                   "when the animals are much larger or smaller in pixels than in the labelled frames")


def add_runtime_options(p: argparse.ArgumentParser, batch: int = 8) -> None:
    """Device, threads, batch size and the session settings of `PoseModel.load`."""
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--threads", type=positive, default=None,
                   help="CPU threads for inference (default: the physical cores)")
    p.add_argument("--batch-size", type=positive, default=batch, help=f"frames per inference call (default {batch})")
    p.add_argument("--no-spin", action="store_true",
                   help="inference threads sleep instead of spinning between batches, leaving the CPU to "
                        "acquisition software beside the analysis (measured: 3-7%% fewer frames/s)")
    p.add_argument("--optimization", choices=("none", "basic", "extended", "all"), default="all",
                   help="onnxruntime graph optimisation level (default all; lower levels measured 1.5-1.7x "
                        "slower, for debugging only)")
    p.add_argument("--no-arena", action="store_true",
                   help="no onnxruntime CPU memory arena: less memory held (ResNet-50: 25%% less), 5-12%% slower")
    p.add_argument("--no-static", action="store_true",
                   help="run every batch through the general dynamic-shape session instead of one fixed to the "
                        "frame size and batch size (measured 3-5%% slower end to end)")
    p.add_argument("--no-body-check", action="store_true", help=BODY_CHECK_HELP)


def load_model(ref: str, args: argparse.Namespace) -> Any:
    """The PoseModel named on the command line, with the options of `add_runtime_options`."""
    from posezoo.runtime.model import PoseModel

    return PoseModel.load(ref, device=args.device, threads=args.threads, spin=not args.no_spin,
                          optimization=args.optimization, arena=not args.no_arena, static=not args.no_static,
                          body_check=not args.no_body_check)
