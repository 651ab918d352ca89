"""pytest plugin of mesh-sidecar: fixtures that start real sidecars and model servers.

Installed with the package (entry point `pytest11`), so a runtime plugin's own
tests can use these fixtures directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class SidecarDirs:
    """The dirs a sidecar works with, fresh for each test."""

    root_model_dir: Path
    storage_config_dir: Path
    pvc_mounts_dir: Path


@pytest.fixture
def sidecar_dirs(tmp_path: Path) -> Iterator[SidecarDirs]:
    """Empty ROOT_MODEL_DIR, STORAGE_CONFIG_DIR and PVC_MOUNTS_DIR under tmp_path."""
    dirs = SidecarDirs(tmp_path / "models", tmp_path / "storage-config", tmp_path / "pvc")
    for path in (dirs.root_model_dir, dirs.storage_config_dir, dirs.pvc_mounts_dir):
        path.mkdir()
    yield dirs
