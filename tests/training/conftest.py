"""Fixtures of the training tests (the helpers they build on: `training_helpers.py`)."""

from __future__ import annotations

import pytest
from training_helpers import disc_phantoms


@pytest.fixture
def phantoms():
    return disc_phantoms(32, seed=0)
