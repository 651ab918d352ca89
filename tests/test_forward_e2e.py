"""The standalone puller end to end: `serve --runtime forward` in front of a real
custom runtime (the simple-string server's own mmesh.ModelRuntime service)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from simple_string_helpers import simple_string_server

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.simple_string.models import model_size
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import ServerHandle, SidecarHandle, run_sidecar

pytestmark = pytest.mark.slow

KEY = json.dumps({"storage_key": "localpvc", "model_type": {"name": "string"}})


@pytest.fixture
def custom_server() -> Iterator[ServerHandle]:
    with simple_string_server(
        "--capacity-bytes", "300000000", "--max-concurrency", "4", "--log-level", "DEBUG"
    ) as server:
        yield server


def load(sidecar: SidecarHandle, model_id: str, path: str) -> pb.LoadModelResponse:
    return sidecar.stub.loadModel(
        pb.LoadModelRequest(modelId=model_id, modelType="rt:custom", modelPath=path, modelKey=KEY),
        timeout=30,
    )


def infer(port: int, model_id: str, text: bytes) -> bytes:
    with triton.InferenceServerClient(f"127.0.0.1:{port}") as client:
        data = triton.InferInput("INPUT", [1], "BYTES")
        data.set_data_from_numpy(np.array([text], dtype=np.object_))
        out = client.infer(model_id, [data]).as_numpy("OUTPUT")
        assert out is not None
        return bytes(out[0])


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_forward_load_infer_size_unload(
    custom_server: ServerHandle, sidecar_dirs: SidecarDirs, pvc_model: Path
) -> None:
    with run_sidecar("forward", custom_server.port, *sidecar_dirs.as_args()) as sidecar:
        # runtimeStatus is the custom server's, not the sidecar's configured figures.
        assert sidecar.status.capacityInBytes == 300_000_000
        assert sidecar.status.maxLoadingConcurrency == 8
        assert sidecar.status.limitModelConcurrency
        assert sidecar.status.runtimeVersion == "0.1.0"

        loaded = load(sidecar, "m1", "models/m1")
        assert loaded.sizeInBytes == model_size(b"hello ")  # the server's own figure
        assert loaded.maxConcurrency == 4
        assert infer(custom_server.port, "m1", b"world") == b"hello world"
        size = sidecar.stub.modelSize(pb.ModelSizeRequest(modelId="m1"), timeout=5)
        assert size.sizeInBytes == loaded.sizeInBytes

        # The server was sent the request rewritten for local files: its own model
        # type, the pulled dir, and a modelKey without the storage fields.
        local = sidecar_dirs.root_model_dir / "m1"
        assert (
            f"loadModel 'm1' type 'rt:custom' path {local} "
            "modelKey fields ['disk_size_bytes', 'model_type']"
        ) in custom_server.process.output()

        sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId="m1"), timeout=10)
        assert files_under(sidecar_dirs.root_model_dir) == []
        with pytest.raises(triton.InferenceServerException, match="not loaded"):
            infer(custom_server.port, "m1", b"world")
        sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId="m1"), timeout=10)


def test_forward_keeps_the_servers_code_and_leaves_nothing(
    custom_server: ServerHandle, sidecar_dirs: SidecarDirs, pvc_model: Path
) -> None:
    (pvc_model.parent / "broken").mkdir()  # no model.txt: the server refuses it
    with run_sidecar("forward", custom_server.port, *sidecar_dirs.as_args()) as sidecar:
        with pytest.raises(grpc.RpcError) as err:
            load(sidecar, "m2", "models/broken")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "has no model.txt" in err.value.details()
        assert "m2" in err.value.details()
        assert files_under(sidecar_dirs.root_model_dir) == []


def test_a_restarted_sidecar_finds_the_server_purged(
    custom_server: ServerHandle, sidecar_dirs: SidecarDirs, pvc_model: Path
) -> None:
    dirs = sidecar_dirs.as_args()
    with run_sidecar("forward", custom_server.port, *dirs) as first:
        load(first, "m1", "models/m1")
        first.process.stop(signal.SIGKILL)  # no chance to clean up
    assert infer(custom_server.port, "m1", b"x") == b"hello x"
    with run_sidecar("forward", custom_server.port, *dirs):
        assert files_under(sidecar_dirs.root_model_dir) == []
        with pytest.raises(triton.InferenceServerException, match="not loaded"):
            infer(custom_server.port, "m1", b"x")
