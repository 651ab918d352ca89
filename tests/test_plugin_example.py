"""The plugin author's example package (examples/echo-runtime), installed as a user would.

It is installed into a temporary dir with pip (no dependencies: mesh-sidecar is
already here), then found by a fresh interpreter through the entry-point group
`mesh_sidecar.runtimes`, listed by `mesh-sidecar runtimes`, and its own tests
are run against it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "echo-runtime"
DISTRIBUTION = "mesh-sidecar-echo-runtime"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(a copy of the example's source, the environment that sees it installed)."""
    root = tmp_path_factory.mktemp("echo-runtime")
    source = root / "src"
    # A copy: building in place would leave build/ and *.egg-info in the repository.
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, source],
        check=True,
        timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    return source, env


def run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    result = subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_registry_finds_it_through_the_entry_point(
    installed: tuple[Path, dict[str, str]],
) -> None:
    _, env = installed
    out = run(
        [
            "-c",
            "from mesh_sidecar.runtimes.registry import RUNTIMES\n"
            "spec = RUNTIMES.specs()['echo']\n"
            "cls = RUNTIMES.get('echo')\n"
            "print(spec.origin, spec.target, cls.__module__, cls.__name__, cls.name)",
        ],
        env,
    )
    assert out.split() == [
        DISTRIBUTION,
        "echo_runtime.adapter:EchoAdapter",
        "echo_runtime.adapter",
        "EchoAdapter",
        "echo",
    ]


def test_mesh_sidecar_runtimes_lists_it_with_its_origin(
    installed: tuple[Path, dict[str, str]],
) -> None:
    _, env = installed
    rows = {
        line.split()[0]: line.split()[1:]
        for line in run(["-m", "mesh_sidecar.adapter.cli", "runtimes"], env).splitlines()
    }
    assert rows["echo"] == [DISTRIBUTION, "echo_runtime.adapter:EchoAdapter"]
    assert rows["simple-string"][0] == "built-in"


def test_without_the_package_the_runtime_is_unknown() -> None:
    out = run(["-m", "mesh_sidecar.adapter.cli", "runtimes"], dict(os.environ))
    assert "echo" not in out.split()


def test_its_own_tests_pass_against_the_installed_package(
    installed: tuple[Path, dict[str, str]],
) -> None:
    source, env = installed
    out = run(["-m", "pytest", "-q", "-p", "no:cacheprovider"], env, cwd=source)
    assert "3 passed" in out
