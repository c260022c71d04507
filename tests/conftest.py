"""Shared pytest fixtures for the whole suite (kept small and generic)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: Real small image subsets, outside the repository: `<repo>/../shared/data` (see its README).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of `../shared/data`; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (see the project's shared/data README)")
    return SHARED_DATA
