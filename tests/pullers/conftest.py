"""Fixtures of the puller tests (the real storage servers are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from mesh_sidecar.pullers.base import PullerSettings


@pytest.fixture
def settings() -> PullerSettings:
    return PullerSettings()
