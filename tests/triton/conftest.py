"""A real Triton (nvidia-pytriton's CPU build) shared by this directory's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh_sidecar.testing.triton import TritonServer, run_triton


@pytest.fixture(scope="session")
def triton_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT_MODEL_DIR of the shared Triton; its repository is `_triton_models` inside."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def triton(triton_root: Path) -> Iterator[TritonServer]:
    """Triton in explicit model control on ROOT_MODEL_DIR/_triton_models."""
    with run_triton(triton_root / "_triton_models") as server:
        yield server
