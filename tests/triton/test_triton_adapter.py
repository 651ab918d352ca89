"""TritonAdapter against a real Triton with python-backend models (no sidecar around it)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mesh_sidecar.errors import InvalidRequest, RuntimeLoadFailed, Unavailable
from mesh_sidecar.runtimes.base import ModelFiles, RuntimeSettings
from mesh_sidecar.runtimes.layout import apply_layout
from mesh_sidecar.runtimes.registry import RUNTIMES
from mesh_sidecar.runtimes.triton import TritonAdapter
from mesh_sidecar.testing.processes import free_port
from mesh_sidecar.testing.triton import TritonServer
from mesh_sidecar.testing.triton_models import (
    SCHEMA,
    add_model_source,
    index_states,
    infer_add,
    write_failing_model,
    write_model,
)

pytestmark = pytest.mark.slow


@pytest.fixture
async def adapter(triton: TritonServer, triton_root: Path) -> AsyncIterator[TritonAdapter]:
    runtime = TritonAdapter(RuntimeSettings(triton.grpc_address, triton_root))
    yield runtime
    await runtime.close()


async def lay_out_and_load(
    adapter: TritonAdapter,
    model_id: str,
    path: Path,
    model_type: str = "",
    schema: Path | None = None,
) -> None:
    """What the framework does after a pull: plan, write the layout, load."""
    files = ModelFiles(model_id, model_type, None, path, 0, schema)
    adapter.check_model_id(model_id)
    repo = adapter.repository_path(model_id)
    assert repo is not None
    apply_layout(adapter.plan_layout(files), repo)
    await adapter.load(files)


async def unload_and_remove(adapter: TritonAdapter, model_id: str) -> None:
    await adapter.unload(model_id)
    repo = adapter.repository_path(model_id)
    assert repo is not None
    shutil.rmtree(repo)


def test_registered_as_triton() -> None:
    assert RUNTIMES.get("triton") is TritonAdapter
    assert TritonAdapter.repository_dir == "_triton_models"


async def test_ready_and_described(adapter: TritonAdapter) -> None:
    assert await adapter.is_ready()
    info = await adapter.describe()
    assert info.version == "2.51.0"  # the Triton inside nvidia-pytriton 0.7.0
    assert info.method_infos["inference.GRPCInferenceService/ModelInfer"] == [1]


async def test_one_version_loads_serves_and_unloads(
    adapter: TritonAdapter, triton: TritonServer, tmp_path: Path
) -> None:
    pulled = write_model(tmp_path / "pulled", {1: 1.0})
    await lay_out_and_load(adapter, "add-one", pulled)
    # The stale `name` of config.pbtxt is gone: Triton serves the model under its id.
    assert "add-one" in await adapter.list_loaded()
    assert await asyncio.to_thread(infer_add, triton.grpc_address, "add-one", [1, 2]) == [2, 3]

    await unload_and_remove(adapter, "add-one")
    # unload returns once Triton has let go of the model, not when it was asked to.
    assert index_states(triton.grpc_address).get("add-one") != "READY"
    assert "add-one" not in await adapter.list_loaded()


async def test_highest_of_two_versions_serves(
    adapter: TritonAdapter, triton: TritonServer, tmp_path: Path
) -> None:
    pulled = write_model(tmp_path / "pulled", {1: 1.0, 2: 100.0})
    await lay_out_and_load(adapter, "two-versions", pulled)
    try:
        answer = await asyncio.to_thread(infer_add, triton.grpc_address, "two-versions", [1])
        assert answer == [101]
    finally:
        await unload_and_remove(adapter, "two-versions")


async def test_single_python_file_with_schema(
    adapter: TritonAdapter, triton: TritonServer, tmp_path: Path
) -> None:
    """No config.pbtxt in storage: the schema becomes one, the file becomes 1/model.py."""
    source = tmp_path / "adder.py"
    source.write_text(add_model_source(10))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    await lay_out_and_load(adapter, "from-schema", source, "python", schema)
    try:
        answer = await asyncio.to_thread(infer_add, triton.grpc_address, "from-schema", [1])
        assert answer == [11]
    finally:
        await unload_and_remove(adapter, "from-schema")


async def test_load_failure_carries_tritons_reason(
    adapter: TritonAdapter, triton: TritonServer, tmp_path: Path
) -> None:
    pulled = write_failing_model(tmp_path / "pulled", "weights are corrupt")
    with pytest.raises(RuntimeLoadFailed) as raised:
        await lay_out_and_load(adapter, "broken", pulled)
    assert "weights are corrupt" in str(raised.value)
    assert raised.value.code.name == "INTERNAL"
    assert "broken" not in await adapter.list_loaded()
    await unload_and_remove(adapter, "broken")  # what the framework does after a failure
    assert await adapter.is_ready()  # a failed model does not make Triton unready


async def test_unload_after_a_cancelled_load_waits_for_triton(
    adapter: TritonAdapter, triton: TritonServer, tmp_path: Path
) -> None:
    """ModelMesh cancels slow loads, then unloads: Triton must end up without the model."""
    pulled = write_model(tmp_path / "pulled", {1: 1.0})
    files = ModelFiles("cancelled", "", None, pulled, 0)
    repo = adapter.repository_path("cancelled")
    assert repo is not None
    apply_layout(adapter.plan_layout(files), repo)
    loading = asyncio.create_task(adapter.load(files))
    await asyncio.sleep(0.3)  # Triton is starting the python backend's stub by now
    loading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loading
    await unload_and_remove(adapter, "cancelled")
    assert "cancelled" not in await adapter.list_loaded()
    assert index_states(triton.grpc_address).get("cancelled") != "READY"


async def test_unloading_an_unknown_model_succeeds(adapter: TritonAdapter) -> None:
    await adapter.unload("never-loaded")


@pytest.mark.parametrize("model_id", ["with space", "semi;colon", "back\\slash", "ünï", "a\tb"])
def test_ids_triton_cannot_serve_are_refused(model_id: str, tmp_path: Path) -> None:
    runtime = TritonAdapter(RuntimeSettings("127.0.0.1:1", tmp_path))
    with pytest.raises(InvalidRequest, match="cannot be a Triton model name"):
        runtime.check_model_id(model_id)


async def test_ids_of_every_allowed_character_load(
    adapter: TritonAdapter, triton: TritonServer, tmp_path: Path
) -> None:
    model_id = "Az09_.:@%+=,~-isvc"
    pulled = write_model(tmp_path / "pulled", {1: 1.0})
    await lay_out_and_load(adapter, model_id, pulled)
    try:
        assert await asyncio.to_thread(infer_add, triton.grpc_address, model_id, [0]) == [1]
    finally:
        await unload_and_remove(adapter, model_id)


async def test_unreachable_triton(tmp_path: Path) -> None:
    runtime = TritonAdapter(RuntimeSettings(f"127.0.0.1:{free_port()}", tmp_path))
    try:
        assert not await runtime.is_ready()
        with pytest.raises(Unavailable):
            await runtime.list_loaded()
        with pytest.raises(Unavailable):
            await runtime.load(ModelFiles("m", "", None, tmp_path, 0))
        with pytest.raises(Unavailable):
            await runtime.unload("m")
    finally:
        await runtime.close()
