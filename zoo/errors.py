"""Exceptions raised by the zoo; each message names the source, entry or file at fault."""
from __future__ import annotations


class ZooError(Exception):
    """Any zoo failure a user can act on (bad index, bad name, missing model, network)."""


class IntegrityError(ZooError):
    """A downloaded or published file does not match the sha256/size its entry declares."""


class NotCachedError(ZooError):
    """Offline mode (POSEZOO_OFFLINE=1) asked for a model that is not in the local cache."""
