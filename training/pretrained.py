"""Reading public weights files for ``model.init: imagenet``.

The file is found through `posezoo.runtime.model.resolve_model_path` (``imagenet:NETWORK``, which
the zoo resolves: pinned, verified, cached, see `posezoo.zoo.pretrained`). Both backends read it
with `read_torch_zip`: plain numpy, so a TF-only install needs no torch, and the restricted
unpickler runs nothing a weights file names. Each backend maps torchvision's names onto its network.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from posezoo.runtime.model import resolve_model_path

from .run import RunError


def imagenet_weights(network: str) -> dict[str, np.ndarray]:
    """torchvision-named arrays of ``network``'s ImageNet backbone, downloaded when not cached."""
    return read_torch_zip(resolve_model_path(f"imagenet:{network}"))


# ------------------------------------------------------------------------------- reading


_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
           "ByteStorage": np.uint8, "BoolStorage": np.bool_}


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                    *_: Any) -> np.ndarray:
    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=[s * storage.itemsize for s in stride])
    return np.array(view)  # a writable copy of its own


class _Unpickler(pickle.Unpickler):
    """Unpickles a state dict of tensors and nothing else: every other global is refused."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name.endswith("Storage"):
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid: Any) -> np.ndarray:
        kind, storage, key = pid[0], pid[1], pid[2]
        if kind != "storage" or not isinstance(storage, str):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        if storage not in _DTYPES:
            raise pickle.UnpicklingError(f"tensors of torch.{storage} are not supported")
        dtype = np.dtype(_DTYPES[storage]).newbyteorder("<")  # torch writes little-endian
        return np.frombuffer(self.archive.read(f"{self.prefix}/data/{key}"), dtype=dtype)


def read_torch_zip(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save``'d state dict (zip format) as numpy arrays, by name."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise RunError(f"{path}: not a torch weights file (no single data.pkl inside)")
            prefix = pickles[0].rsplit("/", 1)[0]
            state = _Unpickler(archive, prefix, archive.read(pickles[0])).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, KeyError, EOFError, ValueError, OSError) as exc:
        raise RunError(f"{path}: not a readable torch weights file ({exc}); delete it to download it again") from None
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise RunError(f"{path}: not a state dict of tensors")
    return dict(state)
