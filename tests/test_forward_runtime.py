"""The `forward` runtime (standalone puller) against a real custom runtime: the
simple-string server's own mmesh.ModelRuntime service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from simple_string_helpers import address, make_model, simple_string_server

from mesh_sidecar.errors import InvalidRequest, NotFound, Unavailable
from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.runtimes.base import ModelFiles, RuntimeSettings
from mesh_sidecar.runtimes.forward import ForwardAdapter, runtime_info
from mesh_sidecar.runtimes.registry import RUNTIMES
from mesh_sidecar.testing.processes import ServerHandle, free_port


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with simple_string_server(
        "--capacity-bytes",
        "200000000",
        "--default-model-size",
        "10000",
        "--max-loading-concurrency",
        "3",
        "--loading-timeout-ms",
        "12345",
        "--max-concurrency",
        "2",
        "--log-level",
        "DEBUG",
    ) as running:
        yield running


@pytest.fixture
async def adapter(server: ServerHandle, tmp_path: Path) -> AsyncIterator[ForwardAdapter]:
    a = ForwardAdapter(RuntimeSettings(address=address(server), root_model_dir=tmp_path))
    yield a
    await a.close()


def files(model_id: str, path: Path) -> ModelFiles:
    return ModelFiles(
        model_id=model_id,
        model_type="string",
        model_type_version=None,
        path=path,
        disk_size_bytes=1,
        request_model_type="rt:simple-string",
        model_key={"model_type": {"name": "string"}, "disk_size_bytes": 1},
    )


def infer(address: str, model: str, element: bytes) -> bytes:
    with triton.InferenceServerClient(address) as client:
        tensor = triton.InferInput("INPUT", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([element], dtype=np.object_))
        return bytes(client.infer(model, [tensor]).as_numpy("OUTPUT")[0])


def test_registry_finds_it_by_name() -> None:
    assert RUNTIMES.get("forward") is ForwardAdapter


async def test_describe_is_the_servers_runtime_status(adapter: ForwardAdapter) -> None:
    assert await adapter.is_ready()
    info = await adapter.describe()
    assert info.version == "0.1.0"
    assert {k: list(v) for k, v in info.method_infos.items()} == {
        "inference.GRPCInferenceService/ModelInfer": [1],
        "inference.GRPCInferenceService/ModelMetadata": [1],
    }
    assert info.allow_any_method is False
    assert info.capacity_bytes == 200_000_000
    assert info.default_model_size == 10_000
    assert info.max_loading_concurrency == 3
    assert info.loading_timeout_ms == 12_345
    assert info.limit_model_concurrency is True
    assert await adapter.list_loaded() == []


async def test_load_forwards_and_answers_the_servers_size(
    adapter: ForwardAdapter, server: ServerHandle, tmp_path: Path
) -> None:
    model = make_model(tmp_path, "pulled", "fwd:")
    result = await adapter.load(files("fwd-1", model))
    assert result.size_bytes is not None and result.size_bytes > len("fwd:")
    assert result.max_concurrency == 2
    assert await adapter.model_size("fwd-1") == result.size_bytes
    assert infer(address(server), "fwd-1", b"z") == b"fwd:z"
    # The server saw the request as rewritten for it: its model type, the local
    # path, and the modelKey as JSON.
    logged = server.process.output()
    assert (
        f"loadModel 'fwd-1' type 'rt:simple-string' path {model} "
        "modelKey fields ['disk_size_bytes', 'model_type']"
    ) in logged
    await adapter.unload("fwd-1")
    # NOT_FOUND from the server counts as unloaded.
    await adapter.unload("fwd-1")
    with pytest.raises(NotFound, match="fwd-1"):
        await adapter.model_size("fwd-1")


async def test_server_errors_keep_their_code_and_message(
    adapter: ForwardAdapter, tmp_path: Path
) -> None:
    with pytest.raises(NotFound) as exc:
        await adapter.load(files("absent", tmp_path / "absent"))
    assert exc.value.code == grpc.StatusCode.NOT_FOUND
    assert "does not exist" in str(exc.value)
    with pytest.raises(InvalidRequest, match="a model name is required"):
        await adapter.load(files("", make_model(tmp_path, "m", "x")))


async def test_unreachable_server(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    adapter = ForwardAdapter(RuntimeSettings(address=address, root_model_dir=tmp_path))
    try:
        assert not await adapter.is_ready()
        with pytest.raises(Unavailable, match=address):
            await adapter.describe()
        with pytest.raises(Unavailable):
            await adapter.load(files("m", make_model(tmp_path, "m", "x")))
        with pytest.raises(Unavailable):
            await adapter.unload("m")
        with pytest.raises(Unavailable):
            await adapter.model_size("m")
    finally:
        await adapter.close()


def test_runtime_info_leaves_unset_figures_to_the_sidecar() -> None:
    status = pb.RuntimeStatusResponse(status=pb.RuntimeStatusResponse.READY, runtimeVersion="v9")
    info = runtime_info(status)
    assert info.version == "v9"
    assert info.capacity_bytes is None
    assert info.default_model_size is None
    assert info.max_loading_concurrency is None
    assert info.loading_timeout_ms is None
    assert dict(info.method_infos) == {}
    assert info.limit_model_concurrency is False
