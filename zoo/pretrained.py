"""Public weights files the zoo fetches for training: ``imagenet:NETWORK`` references.

``posezoo train --init imagenet`` resolves ``imagenet:<its network>`` here (through the
``posezoo.resolvers`` entry point, as ``zoo:NAME`` is for models): the file comes from its
canonical public place with the zoo's verified download (pinned sha256 and size, resumed when
cut, ``POSEZOO_OFFLINE`` = this cache only, proxies and ``POSEZOO_CA_BUNDLE`` as for models) into
``<POSEZOO_HOME>/pretrained/``. Reading the file is training's job.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posezoo.runtime.lock import file_lock

from .errors import NotCachedError, ZooError
from .fetch import download, offline
from .sources import zoo_home

SCHEME = "imagenet"


@dataclass(frozen=True)
class WeightsFile:
    """A public weights file, pinned by content."""

    url: str
    sha256: str
    size: int

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


#: network name -> torchvision's ImageNet-1k weights of that backbone (IMAGENET1K_V1).
IMAGENET: dict[str, WeightsFile] = {
    "resnet50": WeightsFile("https://download.pytorch.org/models/resnet50-0676ba61.pth",
                            "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a", 102530333),
}


def resolve_imagenet(ref: str, quiet: bool = False) -> Path:
    """``imagenet:NETWORK`` -> the verified local copy of that backbone's ImageNet weights."""
    network = ref.removeprefix(f"{SCHEME}:")
    if network not in IMAGENET:
        names = ", ".join(IMAGENET)
        raise ZooError(f"{ref}: there are no public ImageNet weights for the {network!r} network (the default `lite` "
                       f"is resnet_slim); there are for: {names} (--model {next(iter(IMAGENET))} --init imagenet). "
                       "Or train from scratch, or start from an earlier run or a zoo model (--init RUN_DIR, "
                       "--init zoo:NAME)")
    return fetch(IMAGENET[network], quiet=quiet)


def fetch(weights: WeightsFile, quiet: bool = False) -> Path:
    """The verified local copy of ``weights`` (downloaded once; a partial download resumes)."""
    dest = zoo_home() / "pretrained" / weights.name
    if _complete(dest, weights):
        return dest
    if offline():
        raise NotCachedError(f"POSEZOO_OFFLINE is set and {dest} is missing: download {weights.url} (sha256 "
                             f"{weights.sha256}) to that path on a machine with network, or unset POSEZOO_OFFLINE")
    with file_lock(dest.with_name(dest.name + ".lock"), weights.name):
        if not _complete(dest, weights):  # another process may have just fetched it
            download(weights.url, dest, sha256=weights.sha256, size=weights.size,
                     label=f"ImageNet weights {weights.name}", quiet=quiet)
    return dest


def _complete(dest: Path, weights: WeightsFile) -> bool:
    # `download` renames a file into place only after its sha256 matched: the size tells the rest
    return dest.is_file() and dest.stat().st_size == weights.size
