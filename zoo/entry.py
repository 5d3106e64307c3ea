"""Zoo entries: one model version with its files, as listed in an index.json.

An entry is plain data. It is parsed strictly (unknown keys are kept, not trusted) because
indexes come from the network: every name, version, file name and URL is validated here,
before anything is downloaded or written.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from posezoo.runtime.model import WEIGHTS_STEM

from .errors import ZooError
from .names import validate_file_name, validate_name, validate_version, version_key

SHA256_RE = re.compile(r"[0-9a-f]{64}")
URL_SCHEMES = ("http", "https", "file")


@dataclass(frozen=True)
class ZooFile:
    """One file of an entry; `url` is absolute or relative to the index that lists it."""

    name: str
    url: str
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_dict(cls, data: object, where: str) -> "ZooFile":
        if not isinstance(data, dict):
            raise ZooError(f"a file record must be an object, got {type(data).__name__} ({where})")
        name = validate_file_name(data.get("name"), where)
        url = data.get("url", name)
        check_url(url, f"{where}, file {name!r}")
        sha = data.get("sha256")
        if not isinstance(sha, str) or not SHA256_RE.fullmatch(sha.lower()):
            raise ZooError(f"file {name!r} has no valid sha256 (64 hex digits) ({where})")
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ZooError(f"file {name!r} has no valid size (a non-negative integer) ({where})")
        return cls(name=name, url=url, sha256=sha.lower(), size=size)


def check_url(url: object, where: str) -> str:
    """Accept absolute http(s)/file URLs and plain relative paths; refuse `..` and absolute paths."""
    if not isinstance(url, str) or not url:
        raise ZooError(f"url must be a non-empty string ({where})")
    parts = urlsplit(url)
    if parts.scheme:
        if parts.scheme not in URL_SCHEMES:
            raise ZooError(f"url {url!r} uses unsupported scheme {parts.scheme!r} ({where})")
        if parts.scheme != "file" and not parts.netloc:
            raise ZooError(f"url {url!r} has no host ({where})")
        return url
    if parts.netloc or url.startswith(("/", "\\")) or "\\" in url or re.match(r"[A-Za-z]:", url):
        raise ZooError(f"relative url {url!r} must not be an absolute path ({where})")
    if any(seg in ("..", ".") for seg in parts.path.split("/")):
        raise ZooError(f"relative url {url!r} must not contain '.' or '..' segments ({where})")
    return url


@dataclass
class ZooEntry:
    """One published model version: what it detects, how good it is, and which files it has."""

    name: str
    version: str
    files: list[ZooFile]
    description: str = ""
    keypoints: list[str] = field(default_factory=list)
    skeleton: list[Any] = field(default_factory=list)
    license: str = ""
    training_data: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    spec_schema_version: str = "1.0"
    created: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    # Optional since index schema 1 (absent in older entries): what the card and site show.
    species: str = ""
    view: str = ""  # camera view: top, side, bottom, front...
    speed: dict[str, Any] = field(default_factory=dict)  # CPU frames/s measured at pack time
    sample: dict[str, Any] = field(default_factory=dict)  # sample frame file + its predictions
    extra: dict[str, Any] = field(default_factory=dict)
    # Where the entry was read from (an index URL or path); not serialized.
    source: str = field(default="", compare=False)

    KNOWN = (
        "name", "version", "files", "description", "keypoints", "skeleton", "license",
        "training_data", "metrics", "spec_schema_version", "created", "provenance",
        "species", "view", "speed", "sample",
    )
    OPTIONAL = ("species", "view", "speed", "sample")  # written only when set

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def model_file(self) -> ZooFile:
        """The entry's .onnx file (validation guarantees there is exactly one)."""
        return next(f for f in self.files if f.name.endswith(".onnx"))

    @property
    def weights_file(self) -> ZooFile | None:
        """The training snapshot packed with ``--with-weights`` (``weights.*``), which
        ``posezoo train --init zoo:NAME`` fine-tunes from; None when the entry has none."""
        return next((f for f in self.files if f.name.startswith(WEIGHTS_STEM)), None)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def sort_key(self) -> tuple:
        return (self.name, version_key(self.version))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "keypoints": list(self.keypoints),
            "skeleton": list(self.skeleton),
            "license": self.license,
            "training_data": self.training_data,
            "metrics": dict(self.metrics),
            "spec_schema_version": self.spec_schema_version,
            "created": self.created,
            "provenance": dict(self.provenance),
            "files": [f.to_dict() for f in self.files],
        }
        data.update({key: getattr(self, key) for key in self.OPTIONAL if getattr(self, key)})
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: object, source: str = "") -> "ZooEntry":
        where = source or "entry"
        if not isinstance(data, dict):
            raise ZooError(f"an entry must be a JSON object, got {type(data).__name__} ({where})")
        name = validate_name(data.get("name"), where)
        version = validate_version(data.get("version"), f"{where}, entry {name!r}")
        where = f"{where}, entry {name}@{version}"
        raw_files = data.get("files")
        if not isinstance(raw_files, list) or not raw_files:
            raise ZooError(f"entry has no 'files' list ({where})")
        files = [ZooFile.from_dict(f, where) for f in raw_files]
        names = [f.name for f in files]
        if len(set(names)) != len(names):
            raise ZooError(f"entry lists the same file name twice ({where})")
        onnx = [n for n in names if n.endswith(".onnx")]
        if len(onnx) != 1:
            raise ZooError(f"entry must list exactly one .onnx file, found {onnx or 'none'} ({where})")
        keypoints = data.get("keypoints", [])
        if not isinstance(keypoints, list) or not all(isinstance(k, str) for k in keypoints):
            raise ZooError(f"'keypoints' must be a list of strings ({where})")
        spec_version = data.get("spec_schema_version", "1.0")
        if isinstance(spec_version, int) and not isinstance(spec_version, bool):
            spec_version = str(spec_version)
        if not isinstance(spec_version, str) or not re.fullmatch(r"\d+(\.\d+)*", spec_version):
            raise ZooError(f"'spec_schema_version' must look like \"1.0\", got {spec_version!r} ({where})")
        for key, kind in (("metrics", dict), ("provenance", dict), ("skeleton", list),
                          ("speed", dict), ("sample", dict)):
            if key in data and not isinstance(data[key], kind):
                raise ZooError(f"'{key}' must be a JSON {kind.__name__} ({where})")
        for key in ("description", "license", "created", "species", "view"):
            if key in data and not isinstance(data[key], str):
                raise ZooError(f"'{key}' must be a string ({where})")
        sample = data.get("sample") or {}
        if sample and sample.get("file") not in names:
            raise ZooError(f"'sample.file' must name one of the entry's files, got "
                           f"{sample.get('file')!r} ({where})")
        return cls(
            name=name,
            version=version,
            files=files,
            description=data.get("description", ""),
            keypoints=list(keypoints),
            skeleton=list(data.get("skeleton", [])),
            license=data.get("license", ""),
            training_data=data.get("training_data"),
            metrics=dict(data.get("metrics", {})),
            spec_schema_version=spec_version,
            created=data.get("created", ""),
            provenance=dict(data.get("provenance", {})),
            species=data.get("species", ""),
            view=data.get("view", ""),
            speed=dict(data.get("speed", {})),
            sample=dict(sample),
            extra={k: v for k, v in data.items() if k not in cls.KNOWN},
            source=source,
        )
