"""pytest plugin of mesh-sidecar: fixtures that start real sidecars and model servers.

Installed with the package (entry point `pytest11`), so a runtime plugin's own
tests can use these fixtures directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mesh_sidecar.testing.processes import ServerHandle, run_simple_string_server

if TYPE_CHECKING:
    from mesh_sidecar.testing.mlserver import MLServerHandle


@dataclass(frozen=True)
class SidecarDirs:
    """The dirs a sidecar works with, fresh for each test."""

    root_model_dir: Path
    storage_config_dir: Path
    pvc_mounts_dir: Path

    def as_args(self) -> tuple[Path, Path, Path]:
        """(ROOT_MODEL_DIR, STORAGE_CONFIG_DIR, PVC_MOUNTS_DIR), as `run_sidecar` takes them."""
        return self.root_model_dir, self.storage_config_dir, self.pvc_mounts_dir


@pytest.fixture
def sidecar_dirs(tmp_path: Path) -> SidecarDirs:
    """Empty ROOT_MODEL_DIR, STORAGE_CONFIG_DIR and PVC_MOUNTS_DIR under tmp_path."""
    dirs = SidecarDirs(tmp_path / "models", tmp_path / "storage-config", tmp_path / "pvc")
    for path in dirs.as_args():
        path.mkdir()
    return dirs


@pytest.fixture
def simple_string_server() -> Iterator[ServerHandle]:
    """A real simple-string model server on a free port."""
    with run_simple_string_server() as server:
        yield server


@pytest.fixture
def mlserver_server(sidecar_dirs: SidecarDirs) -> Iterator[MLServerHandle]:
    """A real MLServer serving `sidecar_dirs.root_model_dir/_mlserver_models`.

    Skips the test when `make install` has not built MLServer's venv.
    """
    # Imported here: a test run that never asks for MLServer does not pay for it.
    from mesh_sidecar.testing.mlserver import mlserver_available, run_mlserver

    if not mlserver_available():
        pytest.skip("MLServer's venv is missing: run `make install`")
    with run_mlserver(sidecar_dirs.root_model_dir) as server:
        yield server


# The embedded coordinator's fixture lives in its own module.
from mesh_sidecar.testing.mesh import mesh  # noqa: E402, F401
