"""TensorFlow and Keras 3, imported once with the settings the TF backend relies on.

Every module of the TF backend imports ``tf`` and ``keras`` from here, so the Keras backend is
checked (Keras 3 can run on JAX or torch, where none of our TF code would work) and the C++ log
noise is quieted before TensorFlow loads.
"""
from __future__ import annotations

import os

# Both only take effect when set before the first import; a user's own setting wins.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(f"the posezoo TF backend needs Keras on TensorFlow, but KERAS_BACKEND is "
                      f"{keras.backend.backend()!r}; unset it or set KERAS_BACKEND=tensorflow")


def configure_threads(threads: int) -> bool:
    """Use ``threads`` intra-op threads (one per physical core is fastest for convs; SMT
    siblings share the FP units). TensorFlow only accepts this before its runtime starts, so
    a process that already ran TF ops keeps its setting; returns whether it was applied."""
    threading = tf.config.threading
    if threading.get_intra_op_parallelism_threads() == threads:
        return True
    try:
        threading.set_intra_op_parallelism_threads(threads)
        threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:  # "... cannot be modified after initialization"
        return False
    return True


def _default_threads() -> int:
    from posezoo.runtime.session import physical_cores

    return physical_cores()


configure_threads(_default_threads())  # training overrides it with train.threads when set

__all__ = ["configure_threads", "keras", "tf"]
