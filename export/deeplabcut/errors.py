"""The one error type of the DeepLabCut importer (a ValueError, so the CLI reports it as bad input)."""
from __future__ import annotations


class DeepLabCutModelError(ValueError):
    """A path that is not a usable DeepLabCut model; the message names the file, what was found
    there and what is supported."""
