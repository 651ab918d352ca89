"""Fixtures of this repository's tests: a sample PVC model and a sidecar in front of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import ServerHandle, SidecarHandle, run_sidecar


@pytest.fixture
def pvc_model(sidecar_dirs: SidecarDirs) -> Path:
    """Claim `claim1` with models/m1 (text "hello "), and storage key `localpvc` for it."""
    model = sidecar_dirs.pvc_mounts_dir / "claim1" / "models" / "m1"
    model.mkdir(parents=True)
    (model / "model.txt").write_text("hello ")
    (sidecar_dirs.storage_config_dir / "localpvc").write_text(
        json.dumps({"type": "pvc", "name": "claim1"})
    )
    return model


@pytest.fixture
def sidecar(
    simple_string_server: ServerHandle, sidecar_dirs: SidecarDirs, pvc_model: Path
) -> Iterator[SidecarHandle]:
    """`mesh-sidecar serve --runtime simple-string`, READY."""
    with run_sidecar(
        "simple-string",
        simple_string_server.port,
        sidecar_dirs.root_model_dir,
        sidecar_dirs.storage_config_dir,
        sidecar_dirs.pvc_mounts_dir,
    ) as handle:
        yield handle
