"""The environment is read once, typed, and a bad value stops start-up with exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mesh_sidecar.adapter.config import ConfigError, load_settings


def test_defaults_are_the_go_sidecars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINER_MEM_REQ_BYTES", str(1024**3))
    s = load_settings()
    assert (s.adapter_port, s.runtime_port, s.mem_buffer_bytes) == (8085, 8001, 268435456)
    assert (s.loading_concurrency, s.loadtime_timeout, s.default_modelsize) == (1, 30000, 1000000)
    assert (s.modelsize_multiplier, s.runtime_version) == (1.25, "v1")
    assert str(s.root_model_dir) == "/models"
    assert str(s.storage_config_dir) == "/storage-config"
    assert str(s.pvc_mounts_dir) == "/pvc_mounts"
    assert s.capacity_bytes == 1024**3 - 268435456


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "CONTAINER_MEM_REQ_BYTES"),
        ({"CONTAINER_MEM_REQ_BYTES": "lots"}, "CONTAINER_MEM_REQ_BYTES"),
        ({"CONTAINER_MEM_REQ_BYTES": "-1"}, "CONTAINER_MEM_REQ_BYTES"),
        ({"CONTAINER_MEM_REQ_BYTES": "1000", "MEM_BUFFER_BYTES": "2000"}, "MEM_BUFFER_BYTES"),
        ({"CONTAINER_MEM_REQ_BYTES": "1073741824", "ADAPTER_PORT": "99999"}, "ADAPTER_PORT"),
        (
            {"CONTAINER_MEM_REQ_BYTES": "1073741824", "LOADING_CONCURRENCY": "0"},
            "LOADING_CONCURRENCY",
        ),
        (
            {"CONTAINER_MEM_REQ_BYTES": "1073741824", "DEFAULT_MODELSIZE": "100"},
            "DEFAULT_MODELSIZE",
        ),
        (
            {"CONTAINER_MEM_REQ_BYTES": "1073741824", "MODELSIZE_MULTIPLIER": "x"},
            "MODELSIZE_MULTIPLIER",
        ),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    monkeypatch.delenv("CONTAINER_MEM_REQ_BYTES", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_serve_exits_2_with_one_sentence() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "mesh_sidecar.adapter.cli", "serve", "--runtime", "simple-string"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "mesh-sidecar: configuration error: CONTAINER_MEM_REQ_BYTES is required but not set"
    )
