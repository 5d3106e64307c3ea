"""Shared fixtures: the real openfield project (skipped when ../shared/data is absent)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OPENFIELD = REPO.parent / "shared" / "data" / "openfield"


@pytest.fixture(scope="session")
def openfield_dir() -> Path:
    if not (OPENFIELD / "config.yaml").is_file():
        pytest.skip(f"real data not found at {OPENFIELD} (the ../shared/data folder is absent)")
    return OPENFIELD
