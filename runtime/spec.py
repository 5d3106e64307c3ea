"""The model spec: the one definition of how pixels become keypoints.

It travels inside the exported ``.onnx`` file (``metadata_props["posezoo.spec"]``, JSON) and is
read back through onnxruntime alone, so a deployed model needs nothing beside itself. Training
builds the same object for its own evaluation, so train- and deploy-time geometry cannot drift.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .files import json_text
from .poses import DEFAULT_PCUTOFF, skeleton_indices

# 1.1: optional multi-animal sections (multi, assembly); 1.2: body; 1.3: assembly.nearest/farthest
SCHEMA_VERSION = "1.3"
METADATA_KEY = "posezoo.spec"
GRAPH_HASH_KEY = "posezoo.graph_sha256"
SPEC_HASH_KEY = "posezoo.spec_sha256"

INTERPOLATIONS = ("nearest", "linear", "area", "cubic")
RESIZE_POLICIES = ("none", "scale", "fit")


class SpecError(ValueError):
    """A spec that is missing, malformed or inconsistent; the message names the file and field."""


@dataclass
class InputSpec:
    """The graph's image input: raw frames, normalisation happens inside the graph."""

    name: str = "frames"
    layout: str = "NHWC"
    dtype: str = "uint8"
    color: str = "RGB"
    dynamic_axes: list[str] = field(default_factory=lambda: ["batch", "height", "width"])
    size: list[int] | None = None  # [height, width] when the spatial size is fixed
    size_multiple: int = 32  # dynamic sizes are padded (bottom/right) up to a multiple of this

    def validate(self, where: str) -> None:
        _check(self.layout == "NHWC", where, "input.layout", f"only NHWC is supported, got {self.layout!r}")
        _check(self.dtype == "uint8", where, "input.dtype", f"only uint8 is supported, got {self.dtype!r}")
        _check(self.color in ("RGB", "BGR"), where, "input.color", f"must be RGB or BGR, got {self.color!r}")
        _check(self.size_multiple >= 1, where, "input.size_multiple", "must be >= 1")
        unknown = set(self.dynamic_axes) - {"batch", "height", "width"}
        _check(not unknown, where, "input.dynamic_axes", f"unknown axes {sorted(unknown)}")
        spatial_dynamic = {"height", "width"} <= set(self.dynamic_axes)
        if self.size is None:
            _check(spatial_dynamic, where, "input.size", "required when height/width are not dynamic")
        else:
            _check(len(self.size) == 2 and all(s > 0 for s in self.size), where, "input.size",
                   f"must be [height, width] of positive ints, got {self.size!r}")


@dataclass
class PreprocessSpec:
    """Host-side geometry, applied by the runtime before the graph and undone on its output.

    Order: crop (optional, DeepLabCut's x1, x2, y1, y2) -> resize -> pad bottom/right.
    ``resize``: "none"; "scale" multiplies both sides by ``scale``; "fit" letterboxes into the fixed
    ``input.size`` keeping the aspect ratio. Pixel centres are aligned (as cv2.resize does).
    """

    resize: str = "scale"
    scale: float = 1.0
    interpolation: str = "area"
    pad_value: int = 0
    crop: list[int] | None = None

    def validate(self, where: str) -> None:
        _check(self.resize in RESIZE_POLICIES, where, "preprocess.resize",
               f"must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        _check(self.interpolation in INTERPOLATIONS, where, "preprocess.interpolation",
               f"must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        _check(self.scale > 0, where, "preprocess.scale", f"must be > 0, got {self.scale}")
        _check(0 <= self.pad_value <= 255, where, "preprocess.pad_value", "must be in 0..255")
        if self.crop is not None:
            ok = len(self.crop) == 4 and self.crop[1] > self.crop[0] and self.crop[3] > self.crop[2]
            _check(ok, where, "preprocess.crop", f"must be [x1, x2, y1, y2] with x2 > x1, y2 > y1, got {self.crop}")


@dataclass
class OutputSpec:
    name: str
    shape: list[Any]
    meaning: str = ""


@dataclass
class DecodeSpec:
    """What the graph bakes in, recorded for reference and for the framework-side decoder."""

    method: str = "argmax+locref"
    stride: int = 8
    offset: float = 3.5  # heatmap cell (r, c) stands for input pixel (c*stride+offset, r*stride+offset)
    locref_scale: float = 7.2


@dataclass
class MultiAnimalSpec:
    """A bottom-up multi-animal graph: besides ``keypoints`` (the best peak per keypoint) it
    outputs ``candidates`` (batch, keypoints + unique keypoints, ``candidates``, 3) = the highest
    local maxima per keypoint, x, y, score in input-tensor pixels, and ``affinities`` (batch,
    edges, candidates, candidates): the part-affinity score of every candidate pair of each
    ``graph`` edge (its first keypoint's candidates are the rows); with ``identity`` also
    ``identity`` (batch, keypoints + unique keypoints, candidates, individuals) probabilities."""

    individuals: list[str]
    graph: list[list[str]]
    max_animals: int
    candidates: int
    unique_keypoints: list[str] = field(default_factory=list)
    identity: bool = False
    paf_samples: int = 8

    def validate(self, where: str, keypoints: list[str]) -> None:
        _check(bool(self.individuals) and len(set(self.individuals)) == len(self.individuals), where,
               "multi.individuals", "must list distinct individual names")
        _check(1 <= self.max_animals <= len(self.individuals), where, "multi.max_animals",
               f"must be 1..{len(self.individuals)} (the individuals), got {self.max_animals}")
        _check(self.candidates >= self.max_animals, where, "multi.candidates", "must be >= max_animals")
        _check(not set(self.unique_keypoints) & set(keypoints), where, "multi.unique_keypoints",
               "must not repeat the multi-animal keypoints")
        for i, pair in enumerate(self.graph):
            ok = len(pair) == 2 and pair[0] != pair[1] and all(p in keypoints for p in pair)
            _check(ok, where, f"multi.graph[{i}]", f"must be two different keypoint names, got {pair!r}")
        _check(self.paf_samples >= 2, where, "multi.paf_samples", "must be >= 2")


@dataclass
class AssemblySpec:
    """How the runtime groups candidates into animals (DeepLabCut's assembler parameters)."""

    min_score: float = 0.1  # candidates below this score are ignored (DeepLabCut's assembly pcutoff)
    min_affinity: float = 0.05  # weaker links are never made
    min_links: int = 2  # an animal held together by fewer links is dropped (single keypoints survive)
    max_overlap: float = 0.8  # animals sharing more of their keypoint boxes are suppressed (the weaker)
    # The nearest and farthest keypoints i and j of one animal may lie apart (frame pixels: the
    # labelled extremes with a margin; null where not labelled together often enough), or None:
    # candidates are assembled by affinity alone, as DeepLabCut does.
    nearest: list[list[float | None]] | None = None
    farthest: list[list[float | None]] | None = None

    def validate(self, where: str, n_keypoints: int) -> None:
        _check(0 <= self.min_score <= 1, where, "assembly.min_score", "must be in [0, 1]")
        _check(self.min_links >= 0, where, "assembly.min_links", "must be >= 0")
        _check(0 < self.max_overlap <= 1, where, "assembly.max_overlap", "must be in (0, 1]")
        _check((self.nearest is None) == (self.farthest is None), where, "assembly.nearest",
               "and assembly.farthest come together")
        for key in ("nearest", "farthest"):
            _check_distances(getattr(self, key), where, f"assembly.{key}", n_keypoints, positive=key == "farthest")


def _check_distances(matrix: list[list[float | None]] | None, where: str, key: str, k: int, *,
                     positive: bool) -> None:
    """A keypoint-by-keypoint matrix of distances (frame pixels) or nulls; None passes."""
    if matrix is None:
        return
    ok = len(matrix) == k and all(isinstance(row, list) and len(row) == k for row in matrix)
    _check(ok, where, key, f"must be a {k}x{k} matrix (one row and column per keypoint)")
    ok = all(v is None or isinstance(v, (int, float)) and not isinstance(v, bool) and (v > 0 if positive else v >= 0)
             for row in matrix for v in row)
    _check(ok, where, key, f"must hold {'positive' if positive else 'non-negative'} distances or null")


@dataclass
class BodySpec:
    """What the labelled frames say about one animal's build, in frame pixels, for the runtime's
    body-plan check (`posezoo.runtime.body`): ``limit[i][j]`` the farthest keypoints i and j may
    lie apart (None: not labelled together often enough to say); ``pairs`` the left/right pairs
    and ``pair_limit`` the nearest their two sides may come."""

    limit: list[list[float | None]]
    pairs: list[list[str]] = field(default_factory=list)
    pair_limit: list[float] = field(default_factory=list)

    def validate(self, where: str, keypoints: list[str]) -> None:
        _check_distances(self.limit, where, "body.limit", len(keypoints), positive=True)
        for i, pair in enumerate(self.pairs):
            ok = len(pair) == 2 and pair[0] != pair[1] and all(p in keypoints for p in pair)
            _check(ok, where, f"body.pairs[{i}]", f"must be two different keypoint names, got {pair!r}")
        _check(len(self.pair_limit) == len(self.pairs), where, "body.pair_limit", "must have one entry per pair")


@dataclass
class Spec:
    name: str
    keypoints: list[str]
    input: InputSpec = field(default_factory=InputSpec)
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    outputs: dict[str, OutputSpec] = field(default_factory=dict)
    decode: DecodeSpec = field(default_factory=DecodeSpec)
    skeleton: list[list[str]] = field(default_factory=list)
    pcutoff: float = DEFAULT_PCUTOFF
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION
    multi: MultiAnimalSpec | None = None  # several animals per frame (bottom-up); None = one animal
    assembly: AssemblySpec | None = None
    body: BodySpec | None = None  # the body-plan check of a single-animal model; None = none

    def __post_init__(self) -> None:
        if not self.outputs:
            k = len(self.keypoints)
            self.outputs = {"keypoints": OutputSpec("keypoints", ["batch", k, 3],
                                                    "x, y, score per keypoint in input-tensor pixels")}

    # -- validation ---------------------------------------------------------------------------
    def validate(self, where: str = "<spec>") -> "Spec":
        _check(bool(self.keypoints), where, "keypoints", "must list at least one keypoint")
        _check(len(set(self.keypoints)) == len(self.keypoints), where, "keypoints", "names must be unique")
        for i, pair in enumerate(self.skeleton):
            ok = len(pair) == 2 and all(p in self.keypoints for p in pair)
            _check(ok, where, f"skeleton[{i}]", f"must be two keypoint names, got {pair!r}")
        _check(0.0 <= self.pcutoff <= 1.0, where, "pcutoff", f"must be in [0, 1], got {self.pcutoff}")
        _check("keypoints" in self.outputs, where, "outputs.keypoints", "the keypoints output is required")
        self.input.validate(where)
        self.preprocess.validate(where)
        if self.input.size is not None and "height" not in self.input.dynamic_axes:
            _check(self.preprocess.resize in ("fit", "none"), where, "preprocess.resize",
                   "a fixed input size needs resize 'fit' (or 'none' with frames of exactly that size)")
        _check(self.decode.stride >= 1, where, "decode.stride", "must be >= 1")
        if self.multi is not None:
            self.multi.validate(where, self.keypoints)
            for key in ("candidates", "affinities") + (("identity",) if self.multi.identity else ()):
                _check(key in self.outputs, where, f"outputs.{key}", "is required for a multi-animal model")
            _check(self.assembly is not None, where, "assembly", "is required for a multi-animal model")
            self.assembly.validate(where, len(self.keypoints))  # type: ignore[union-attr]
        if self.body is not None:
            self.body.validate(where, self.keypoints)
        return self

    @property
    def individuals(self) -> list[str]:
        """The individuals results are written under ([""] = one unnamed animal)."""
        return list(self.multi.individuals) if self.multi is not None else [""]

    @property
    def unique_keypoints(self) -> list[str]:
        return list(self.multi.unique_keypoints) if self.multi is not None else []

    # -- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("multi", "assembly", "body"):  # optional sections are left out when unused
            if out[key] is None:
                del out[key]
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json_text(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "<spec>") -> "Spec":
        if not isinstance(data, Mapping):
            raise SpecError(f"{where}: the spec must be a JSON object, got {type(data).__name__}")
        version = _get(data, "schema_version", str, where)
        major = version.split(".")[0]
        if major != SCHEMA_VERSION.split(".")[0]:
            raise SpecError(f"{where}: spec schema_version {version} is not supported by this posezoo "
                            f"(understands {SCHEMA_VERSION}); upgrade posezoo or re-export the model")
        outputs_raw = _get(data, "outputs", dict, where)
        outputs = {key: _build(OutputSpec, val, where, f"outputs.{key}") for key, val in outputs_raw.items()}
        spec = cls(
            schema_version=version,
            name=_get(data, "name", str, where),
            keypoints=_get(data, "keypoints", list, where),
            skeleton=[list(p) for p in _get(data, "skeleton", list, where)],
            pcutoff=float(_get(data, "pcutoff", (int, float), where)),
            input=_build(InputSpec, _get(data, "input", dict, where), where, "input"),
            preprocess=_build(PreprocessSpec, _get(data, "preprocess", dict, where), where, "preprocess"),
            outputs=outputs,
            decode=_build(DecodeSpec, _get(data, "decode", dict, where), where, "decode"),
            provenance=_get(data, "provenance", dict, where),
            multi=_build(MultiAnimalSpec, data["multi"], where, "multi") if data.get("multi") is not None else None,
            assembly=(_build(AssemblySpec, data["assembly"], where, "assembly")
                      if data.get("assembly") is not None else None),
            body=_build(BodySpec, data["body"], where, "body") if data.get("body") is not None else None,
        )
        for i, name in enumerate(spec.keypoints):
            _check(isinstance(name, str), where, f"keypoints[{i}]", f"must be a string, got {name!r}")
        return spec.validate(where)

    @classmethod
    def from_json(cls, text: str, where: str = "<spec>") -> "Spec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{where}: the embedded spec is not valid JSON ({exc})") from None
        return cls.from_dict(data, where)

    def skeleton_indices(self) -> list[tuple[int, int]]:
        return skeleton_indices(self.keypoints, self.skeleton)


def read_spec(path: str | Path) -> Spec:
    """Read the spec embedded in an .onnx file (through onnxruntime; no `onnx` needed)."""
    from .session import open_session  # local: keeps `import spec` free of onnxruntime

    session = open_session(path, providers=["CPUExecutionProvider"])
    return spec_from_session(session, path)


def spec_from_session(session: Any, path: str | Path) -> Spec:
    """The spec of an open model file, after checking that neither it nor the graph was edited."""
    from .onnxfile import check_fingerprints

    meta = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in meta:
        raise SpecError(f"{path}: this ONNX file carries no posezoo spec (metadata key {METADATA_KEY!r}); "
                        "export it with `posezoo export` or embed a spec with posezoo.runtime.spec.embed_spec")
    check_fingerprints(path, meta, METADATA_KEY, GRAPH_HASH_KEY, SPEC_HASH_KEY)
    return Spec.from_json(meta[METADATA_KEY], str(path))


def embed_spec(model: Any, spec: Spec) -> Any:
    """Write ``spec`` and the fingerprints of it and of the graph into an ``onnx.ModelProto``'s
    metadata_props. Duck-typed so the runtime need not import ``onnx``; replaces earlier entries.
    """
    from .onnxfile import graph_sha256_of_model, text_sha256

    spec.validate()
    ours = (METADATA_KEY, GRAPH_HASH_KEY, SPEC_HASH_KEY)
    keep = [(p.key, p.value) for p in model.metadata_props if p.key not in ours]
    del model.metadata_props[:]
    text = spec.to_json()
    for key, value in keep + [(METADATA_KEY, text), (GRAPH_HASH_KEY, graph_sha256_of_model(model)),
                              (SPEC_HASH_KEY, text_sha256(text))]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


# -- helpers ------------------------------------------------------------------------------------
def _check(ok: bool, where: str, key: str, problem: str) -> None:
    if not ok:
        raise SpecError(f"{where}: spec field '{key}' {problem}")


def _get(data: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise SpecError(f"{where}: spec field '{key}' is missing")
    value = data[key]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _as_tuple(types):
        expected = " or ".join(t.__name__ for t in _as_tuple(types))
        raise SpecError(f"{where}: spec field '{key}' must be {expected}, got {type(value).__name__}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _build(cls: type, data: Any, where: str, key: str) -> Any:
    """Construct a section dataclass, refusing unknown keys and wrong basic types by name."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: spec field '{key}' must be an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise SpecError(f"{where}: spec field '{key}' has unknown keys {sorted(unknown)}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise SpecError(f"{where}: spec field '{key}.{missing[0]}' is missing")
    for name, value in data.items():
        expected = _EXPECTED.get(f"{cls.__name__}.{name}")
        if expected is not None and not (isinstance(value, expected) and not isinstance(value, bool)):
            if not (value is None and _NULLABLE.get(f"{cls.__name__}.{name}")):
                names = " or ".join(t.__name__ for t in _as_tuple(expected))
                raise SpecError(f"{where}: spec field '{key}.{name}' must be {names}, got {type(value).__name__}")
    return cls(**dict(data))


_NUM = (int, float)
_EXPECTED: dict[str, type | tuple[type, ...]] = {
    "InputSpec.name": str, "InputSpec.layout": str, "InputSpec.dtype": str, "InputSpec.color": str,
    "InputSpec.dynamic_axes": list, "InputSpec.size": list, "InputSpec.size_multiple": int,
    "PreprocessSpec.resize": str, "PreprocessSpec.scale": _NUM, "PreprocessSpec.interpolation": str,
    "PreprocessSpec.pad_value": int, "PreprocessSpec.crop": list,
    "OutputSpec.name": str, "OutputSpec.shape": list, "OutputSpec.meaning": str,
    "MultiAnimalSpec.individuals": list, "MultiAnimalSpec.graph": list, "MultiAnimalSpec.max_animals": int,
    "MultiAnimalSpec.candidates": int, "MultiAnimalSpec.unique_keypoints": list, "MultiAnimalSpec.paf_samples": int,
    "AssemblySpec.min_score": _NUM, "AssemblySpec.min_affinity": _NUM, "AssemblySpec.min_links": int,
    "AssemblySpec.max_overlap": _NUM, "AssemblySpec.nearest": list, "AssemblySpec.farthest": list,
    "BodySpec.limit": list, "BodySpec.pairs": list, "BodySpec.pair_limit": list,
    "DecodeSpec.method": str, "DecodeSpec.stride": int, "DecodeSpec.offset": _NUM, "DecodeSpec.locref_scale": _NUM,
}
_NULLABLE = {"InputSpec.size": True, "PreprocessSpec.crop": True, "AssemblySpec.nearest": True,
             "AssemblySpec.farthest": True}
