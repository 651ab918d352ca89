"""The standalone puller, beyond tests/test_forward_e2e.py: what the custom server
is sent (the request rewritten for local files), the figures it answers, and the
purge a restarted sidecar finds."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as triton
from simple_string_helpers import simple_string_server

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.simple_string.models import model_size
from mesh_sidecar.testing.checks import files_under, infer_text
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import ServerHandle, SidecarHandle, run_sidecar

pytestmark = pytest.mark.slow

KEY = json.dumps({"storage_key": "localpvc", "model_type": {"name": "string"}})


@pytest.fixture
def custom_server() -> Iterator[ServerHandle]:
    with simple_string_server("--max-concurrency", "4", "--log-level", "DEBUG") as server:
        yield server


def address(server: ServerHandle) -> str:
    return f"127.0.0.1:{server.port}"


def load(sidecar: SidecarHandle, model_id: str, path: str) -> pb.LoadModelResponse:
    return sidecar.stub.loadModel(
        pb.LoadModelRequest(modelId=model_id, modelType="rt:custom", modelPath=path, modelKey=KEY),
        timeout=30,
    )


def test_the_server_gets_the_request_rewritten_and_answers_its_own_figures(
    custom_server: ServerHandle, sidecar_dirs: SidecarDirs, pvc_model: Path
) -> None:
    with run_sidecar("forward", custom_server.port, *sidecar_dirs.as_args()) as sidecar:
        assert sidecar.status.limitModelConcurrency
        assert sidecar.status.runtimeVersion == "0.1.0"
        loaded = load(sidecar, "m1", "models/m1")
        assert loaded.sizeInBytes == model_size(b"hello ")  # the server's figure, not disk x 1.25
        assert loaded.maxConcurrency == 4
        assert infer_text(address(custom_server), "m1", ["world"]) == ["hello world"]
        # Its own modelType, the pulled dir, and a modelKey without the storage fields.
        local = sidecar_dirs.root_model_dir / "m1"
        assert (
            f"loadModel 'm1' type 'rt:custom' path {local} "
            "modelKey fields ['disk_size_bytes', 'model_type']"
        ) in custom_server.process.output()


def test_a_restarted_sidecar_finds_the_server_purged(
    custom_server: ServerHandle, sidecar_dirs: SidecarDirs, pvc_model: Path
) -> None:
    dirs = sidecar_dirs.as_args()
    with run_sidecar("forward", custom_server.port, *dirs) as first:
        load(first, "m1", "models/m1")
        first.process.stop(signal.SIGKILL)  # no chance to clean up
    assert infer_text(address(custom_server), "m1", ["x"]) == ["hello x"]
    with run_sidecar("forward", custom_server.port, *dirs):
        assert files_under(sidecar_dirs.root_model_dir) == []
        with pytest.raises(triton.InferenceServerException, match="not loaded"):
            infer_text(address(custom_server), "m1", ["x"])
