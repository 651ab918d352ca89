"""The `simple-string` runtime adapter, driven directly against a real simple-string server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from simple_string_helpers import address, make_model, simple_string_server

from mesh_sidecar.errors import RuntimeLoadFailed, Unavailable
from mesh_sidecar.runtimes.base import KSERVE_V2_METHOD_INFOS, ModelFiles, RuntimeSettings
from mesh_sidecar.runtimes.registry import RUNTIMES
from mesh_sidecar.runtimes.simple_string import SimpleStringAdapter
from mesh_sidecar.testing.processes import ServerHandle, free_port


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with simple_string_server() as running:
        yield running


def settings(address: str, root: Path) -> RuntimeSettings:
    return RuntimeSettings(address=address, root_model_dir=root)


@pytest.fixture
async def adapter(server: ServerHandle, tmp_path: Path) -> AsyncIterator[SimpleStringAdapter]:
    a = SimpleStringAdapter(settings(address(server), tmp_path))
    yield a
    await a.close()


def files(model_id: str, path: Path) -> ModelFiles:
    return ModelFiles(
        model_id=model_id,
        model_type="string",
        model_type_version=None,
        path=path,
        disk_size_bytes=path.stat().st_size,
    )


def infer(address: str, model: str, element: bytes) -> bytes:
    with triton.InferenceServerClient(address) as client:
        tensor = triton.InferInput("INPUT", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([element], dtype=np.object_))
        return bytes(client.infer(model, [tensor]).as_numpy("OUTPUT")[0])


def test_registry_finds_it_by_name() -> None:
    assert RUNTIMES.get("simple-string") is SimpleStringAdapter
    assert RUNTIMES.specs()["simple-string"].origin == "built-in"


async def test_ready_and_described(adapter: SimpleStringAdapter) -> None:
    assert await adapter.is_ready()
    info = await adapter.describe()
    assert info.version == "0.1.0"
    assert dict(info.method_infos) == dict(KSERVE_V2_METHOD_INFOS)


async def test_load_list_infer_unload(
    adapter: SimpleStringAdapter, server: ServerHandle, tmp_path: Path
) -> None:
    model = make_model(tmp_path, "pulled-dir", "adapted:")
    result = await adapter.load(files("adapted-1", model))
    assert result.size_bytes is None  # the framework reports disk size x multiplier
    assert "adapted-1" in await adapter.list_loaded()
    assert infer(address(server), "adapted-1", b"x") == b"adapted:x"
    await adapter.unload("adapted-1")
    assert "adapted-1" not in await adapter.list_loaded()
    # Unloading what the server does not have is not an error.
    await adapter.unload("adapted-1")


async def test_a_single_pulled_file_loads(
    adapter: SimpleStringAdapter, server: ServerHandle, tmp_path: Path
) -> None:
    single = tmp_path / "m1.txt"
    single.write_text("single:")
    await adapter.load(files("adapted-file", single))
    assert infer(address(server), "adapted-file", b"y") == b"single:y"
    await adapter.unload("adapted-file")


async def test_a_server_failure_carries_the_servers_reason(
    adapter: SimpleStringAdapter, tmp_path: Path
) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * ((1 << 20) + 1))
    with pytest.raises(RuntimeLoadFailed) as exc:
        await adapter.load(files("too-big", big))
    assert exc.value.code == grpc.StatusCode.INTERNAL
    assert "byte limit" in str(exc.value)
    assert "'too-big'" in str(exc.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeLoadFailed, match=r"has no model\.txt"):
        await adapter.load(files("no-text", empty))
    assert "too-big" not in await adapter.list_loaded()


async def test_a_vanished_path_is_a_load_failure(
    adapter: SimpleStringAdapter, tmp_path: Path
) -> None:
    model = make_model(tmp_path, "gone", "x")
    model_files = files("vanished", model)
    (model / "model.txt").unlink()
    model.rmdir()
    with pytest.raises(RuntimeLoadFailed) as exc:
        await adapter.load(model_files)
    assert exc.value.code == grpc.StatusCode.INTERNAL
    assert "does not exist" in str(exc.value)
    assert "'vanished'" in str(exc.value)


async def test_unreachable_server(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    adapter = SimpleStringAdapter(settings(address, tmp_path))
    try:
        assert not await adapter.is_ready()
        with pytest.raises(Unavailable, match="unreachable"):
            await adapter.load(files("m", make_model(tmp_path, "m", "x")))
        with pytest.raises(Unavailable):
            await adapter.list_loaded()
        with pytest.raises(Unavailable):
            await adapter.describe()
        with pytest.raises(Unavailable):
            await adapter.unload("m")
    finally:
        await adapter.close()
