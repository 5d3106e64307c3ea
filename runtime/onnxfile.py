"""Just enough of the ONNX protobuf wire format to fingerprint a model without `onnx`.

The exporter stores sha256(graph bytes) and sha256(spec text) beside the spec; the runtime
recomputes both when it reads a model, so an edited graph, an edited spec (reversed keypoint names,
another resize scale) or a spec pasted onto another model is refused instead of silently run.
"""
from __future__ import annotations

import hashlib
import mmap
from pathlib import Path
from typing import Any

_GRAPH_FIELD = 7  # ModelProto.graph
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class OnnxFileError(ValueError):
    pass


def _varint(buf: Any, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxFileError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise OnnxFileError("malformed varint")


def graph_sha256_of_file(path: str | Path) -> str:
    """sha256 of the serialized GraphProto inside an .onnx file (top-level field 7)."""
    path = Path(path)
    digest = hashlib.sha256()
    found = False
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        pos, end = 0, len(buf)
        try:
            while pos < end:
                key, pos = _varint(buf, pos)
                number, wire = key >> 3, key & 7
                if wire == _VARINT:
                    _, pos = _varint(buf, pos)
                elif wire == _I64:
                    pos += 8
                elif wire == _I32:
                    pos += 4
                elif wire == _LEN:
                    length, pos = _varint(buf, pos)
                    if pos + length > end:
                        raise OnnxFileError("a field runs past the end of the file")
                    if number == _GRAPH_FIELD:
                        digest.update(buf[pos:pos + length])
                        found = True
                    pos += length
                else:
                    raise OnnxFileError(f"unexpected wire type {wire}")
        except OnnxFileError as exc:
            raise OnnxFileError(f"{path}: not a valid ONNX file ({exc}); the file may be truncated") from None
    if not found:
        raise OnnxFileError(f"{path}: not a valid ONNX file (no graph found)")
    return digest.hexdigest()


def graph_sha256_of_model(model: Any) -> str:
    """The same fingerprint computed from an in-memory ``onnx.ModelProto``."""
    return hashlib.sha256(model.graph.SerializeToString()).hexdigest()


def text_sha256(text: str) -> str:
    """The spec's fingerprint: sha256 of its JSON text exactly as stored."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_fingerprints(path: str | Path, meta: dict[str, str], spec_key: str, graph_key: str,
                       spec_hash_key: str) -> None:
    """Refuse a file whose graph or spec changed after export (files from before the spec was
    fingerprinted carry only the graph's hash, which is still checked)."""
    from .session import ModelLoadError  # the error every model-loading failure raises

    recorded = meta.get(spec_hash_key)
    if recorded is not None and spec_key in meta and text_sha256(meta[spec_key]) != recorded:
        raise ModelLoadError(f"{path}: the embedded spec was edited after export (its sha256 differs from the "
                             "recorded one); re-export the model or download it again")
    if graph_key in meta:
        try:
            actual = graph_sha256_of_file(path)
        except OnnxFileError as exc:
            raise ModelLoadError(str(exc)) from None
        if actual != meta[graph_key]:
            raise ModelLoadError(f"{path}: the model graph was modified after export (graph sha256 "
                                 f"{actual[:12]}... != recorded {meta[graph_key][:12]}...); re-export it")
