"""posezoo's model zoo: indexes of shared models, a verified download cache, pack/publish/serve.

Light by design: standard library, platformdirs, tqdm and posezoo.runtime only (never torch or
TensorFlow). `resolve_model("zoo:NAME[@VERSION]")` is what `PoseModel.load` calls, through the
`posezoo.resolvers` entry point declared in pyproject.toml.
"""
from .cache import cache_root, cached_entries
from .entry import ZooEntry, ZooFile
from .errors import IntegrityError, NotCachedError, ZooError
from .packing import pack, publish
from .resolve import Catalogue, find_entry, load_catalogue, pull, resolve_model
from .serve import make_server
from .sources import INDEX_SCHEMA_VERSION, configured_sources, load_index, zoo_home

__all__ = [
    "INDEX_SCHEMA_VERSION", "Catalogue", "IntegrityError", "NotCachedError", "ZooEntry", "ZooError",
    "ZooFile", "cache_root", "cached_entries", "configured_sources", "find_entry", "load_catalogue",
    "load_index", "pull", "resolve_model", "zoo_home", "pack", "publish", "make_server",
]

