"""Shared pytest fixtures for the whole suite (kept small and generic)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: Environment variable naming a folder of small real-image subsets, one sub-folder per public dataset in
#: its published layout (shenzhen/, montgomery/, jsrt/, kermany_pediatric/, doppler_tte47/; see README.md).
TEST_DATA_ENV = "UREP_TEST_DATA"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder named by `$UREP_TEST_DATA`; skips the test when it is unset or not a folder."""
    value = os.environ.get(TEST_DATA_ENV)
    if not value:
        pytest.skip(f"real-image test: set {TEST_DATA_ENV} to a folder holding the public datasets' subsets in "
                    "their published layout (shenzhen/, montgomery/, jsrt/, kermany_pediatric/, doppler_tte47/; "
                    "see README.md)")
    folder = Path(value).expanduser()
    if not folder.is_dir():
        pytest.skip(f"{TEST_DATA_ENV}={value} is not a folder")
    return folder
