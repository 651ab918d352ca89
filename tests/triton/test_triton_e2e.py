"""`mesh-sidecar serve --runtime triton` in front of a real Triton, models from a PVC."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.testing.checks import files_under
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import SidecarHandle, run_sidecar
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

KEY = json.dumps({"storage_key": "localpvc", "model_type": {"name": "python"}})


@pytest.fixture(scope="module")
def dirs(triton_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SidecarDirs:
    """The shared Triton's ROOT_MODEL_DIR, and a PVC `claim1` holding the test models."""
    base = tmp_path_factory.mktemp("e2e")
    dirs = SidecarDirs(triton_root, base / "storage-config", base / "pvc")
    dirs.storage_config_dir.mkdir()
    (dirs.storage_config_dir / "localpvc").write_text(json.dumps({"type": "pvc", "name": "claim1"}))
    models = dirs.pvc_mounts_dir / "claim1" / "models"
    write_model(models / "add", {1: 1.0})
    write_model(models / "two", {1: 1.0, 2: 100.0})
    write_failing_model(models / "broken", "weights are corrupt")
    models.joinpath("single").mkdir()
    models.joinpath("single", "adder.py").write_text(add_model_source(10))
    schemas = dirs.pvc_mounts_dir / "claim1" / "schemas"
    schemas.mkdir()
    (schemas / "adder.json").write_text(json.dumps(SCHEMA))
    return dirs


@pytest.fixture(scope="module")
def sidecar(triton: TritonServer, dirs: SidecarDirs) -> Iterator[SidecarHandle]:
    with run_sidecar("triton", triton.grpc_port, *dirs.as_args()) as handle:
        yield handle


def load(sidecar: SidecarHandle, model_id: str, path: str, key: str = KEY) -> int:
    answer = sidecar.stub.loadModel(
        pb.LoadModelRequest(modelId=model_id, modelType="rt:triton", modelPath=path, modelKey=key),
        timeout=60,
    )
    size: int = answer.sizeInBytes
    return size


def unload(sidecar: SidecarHandle, model_id: str) -> None:
    sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId=model_id), timeout=60)


def repository(dirs: SidecarDirs) -> list[str]:
    return files_under(dirs.root_model_dir / "_triton_models")


def test_runtime_status_comes_from_triton(sidecar: SidecarHandle) -> None:
    status = sidecar.status
    assert status.status == pb.RuntimeStatusResponse.READY
    assert status.runtimeVersion == "2.51.0"
    infer_path = status.methodInfos["inference.GRPCInferenceService/ModelInfer"]
    assert list(infer_path.idInjectionPath) == [1]


def test_load_infer_unload(sidecar: SidecarHandle, triton: TritonServer, dirs: SidecarDirs) -> None:
    size = load(sidecar, "add-e2e", "models/add")
    pulled = dirs.pvc_mounts_dir / "claim1" / "models" / "add"
    disk = sum(p.stat().st_size for p in pulled.rglob("*") if p.is_file())
    assert size == int(disk * 1.25)
    assert infer_add(triton.grpc_address, "add-e2e", [1, 2]) == [2, 3]
    assert repository(dirs) == ["add-e2e", "add-e2e/1", "add-e2e/config.pbtxt"]
    laid_out = dirs.root_model_dir / "_triton_models" / "add-e2e"
    assert (laid_out / "1").is_symlink()  # linked, not copied
    assert "named-in-storage" not in (laid_out / "config.pbtxt").read_text()

    unload(sidecar, "add-e2e")
    assert index_states(triton.grpc_address).get("add-e2e") != "READY"
    assert repository(dirs) == []
    assert not (dirs.root_model_dir / "add-e2e").exists()


def test_highest_version_serves(sidecar: SidecarHandle, triton: TritonServer) -> None:
    load(sidecar, "two-e2e", "models/two")
    try:
        assert infer_add(triton.grpc_address, "two-e2e", [1]) == [101]
    finally:
        unload(sidecar, "two-e2e")


def test_single_file_with_schema_from_the_model_key(
    sidecar: SidecarHandle, triton: TritonServer
) -> None:
    key = json.dumps(
        {"storage_key": "localpvc", "model_type": "python", "schema_path": "schemas/adder.json"}
    )
    load(sidecar, "single-e2e", "models/single", key)
    try:
        assert infer_add(triton.grpc_address, "single-e2e", [1]) == [11]
    finally:
        unload(sidecar, "single-e2e")


def test_failing_model_reports_tritons_reason_and_leaves_nothing(
    sidecar: SidecarHandle, triton: TritonServer, dirs: SidecarDirs
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        load(sidecar, "broken-e2e", "models/broken")
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert "weights are corrupt" in (raised.value.details() or "")
    assert repository(dirs) == []
    assert not (dirs.root_model_dir / "broken-e2e").exists()
    assert index_states(triton.grpc_address).get("broken-e2e") != "READY"
    unload(sidecar, "broken-e2e")  # ModelMesh always follows a failed load with an unload


def test_id_triton_cannot_serve_is_refused_before_pulling(
    sidecar: SidecarHandle, dirs: SidecarDirs
) -> None:
    before = files_under(dirs.root_model_dir)
    with pytest.raises(grpc.RpcError) as raised:
        load(sidecar, "has space", "models/add")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Triton model name" in (raised.value.details() or "")
    assert files_under(dirs.root_model_dir) == before


def test_restarted_sidecar_purges_triton_and_disk(
    triton: TritonServer, dirs: SidecarDirs, sidecar: SidecarHandle
) -> None:
    with run_sidecar("triton", triton.grpc_port, *dirs.as_args()) as first:
        load(first, "left-behind", "models/add")
        first.process.stop(signal.SIGKILL)  # no chance to clean up
    assert index_states(triton.grpc_address)["left-behind"] == "READY"
    assert (dirs.root_model_dir / "left-behind").exists()
    # READY only once the previous sidecar's model is out of Triton and off the disk.
    with run_sidecar("triton", triton.grpc_port, *dirs.as_args()):
        assert index_states(triton.grpc_address).get("left-behind") != "READY"
        assert repository(dirs) == []
        assert not (dirs.root_model_dir / "left-behind").exists()
