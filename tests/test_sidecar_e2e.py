"""The ModelRuntime contract end to end: a real sidecar in front of a real simple-string server."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import ServerHandle, SidecarHandle, run_sidecar

pytestmark = pytest.mark.slow

KEY = json.dumps({"storage_key": "localpvc", "model_type": {"name": "string"}})


def load(
    sidecar: SidecarHandle, model_id: str = "m1", path: str = "models/m1", key: str = KEY
) -> pb.LoadModelResponse:
    return sidecar.stub.loadModel(
        pb.LoadModelRequest(modelId=model_id, modelType="string", modelPath=path, modelKey=key),
        timeout=30,
    )


def infer(port: int, model_id: str, text: str) -> str:
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    data = triton.InferInput("INPUT", [1], "BYTES")
    data.set_data_from_numpy(np.array([text.encode()], dtype=np.object_))
    result = client.infer(model_id, [data])
    client.close()
    out = result.as_numpy("OUTPUT")
    assert out is not None
    value = out[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_status_reports_the_configured_figures(sidecar: SidecarHandle) -> None:
    status = sidecar.status
    assert status.status == pb.RuntimeStatusResponse.READY
    assert status.capacityInBytes == 2 * 1024**3 - 268435456
    assert status.maxLoadingConcurrency == 1
    assert status.modelLoadingTimeoutMs == 30000
    assert status.defaultModelSizeInBytes == 1000000
    assert status.runtimeVersion
    assert list(
        status.methodInfos["inference.GRPCInferenceService/ModelInfer"].idInjectionPath
    ) == [1]


def test_load_infer_size_unload(
    sidecar: SidecarHandle, simple_string_server: ServerHandle, sidecar_dirs: SidecarDirs
) -> None:
    loaded = load(sidecar)
    assert loaded.sizeInBytes == int(len("hello ") * 1.25)
    assert infer(simple_string_server.port, "m1", "world") == "hello world"
    size = sidecar.stub.modelSize(pb.ModelSizeRequest(modelId="m1"), timeout=5)
    assert size.sizeInBytes == loaded.sizeInBytes
    assert (sidecar_dirs.root_model_dir / "m1" / "model.txt").is_symlink()

    again = load(sidecar)  # a repeated load answers the same size without pulling again
    assert again.sizeInBytes == loaded.sizeInBytes

    sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId="m1"), timeout=10)
    assert files_under(sidecar_dirs.root_model_dir) == []
    with pytest.raises(grpc.RpcError) as err:
        infer(simple_string_server.port, "m1", "world")
    assert "m1" in str(err.value)
    # The PVC's files are never touched.
    assert (sidecar_dirs.pvc_mounts_dir / "claim1/models/m1/model.txt").read_text() == "hello "


def test_unloading_an_unknown_model_succeeds(sidecar: SidecarHandle) -> None:
    sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId="never-loaded"), timeout=10)


def test_model_size_of_an_unknown_model_is_not_found(sidecar: SidecarHandle) -> None:
    with pytest.raises(grpc.RpcError) as err:
        sidecar.stub.modelSize(pb.ModelSizeRequest(modelId="nope"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (json.dumps({"storage_key": "localpvc", "disk_size_bytes": 8000}), 10000),
        (KEY, int(len("hello ") * 1.25)),  # from the storage's listing
        (json.dumps({"storage_key": "localpvc"}), None),
    ],
)
def test_predict_model_size(sidecar: SidecarHandle, key: str, expected: int | None) -> None:
    path = "models/m1" if expected is not None else "models/absent"
    answer = sidecar.stub.predictModelSize(
        pb.PredictModelSizeRequest(modelId="m1", modelPath=path, modelKey=key), timeout=0.5
    )
    assert answer.sizeInBytes == (expected if expected is not None else 1000000)


BAD_REQUESTS = [
    ("m1", "models/m1", "{not json", grpc.StatusCode.INVALID_ARGUMENT),
    ("m1", "models/m1", '{"storage_key":"nope"}', grpc.StatusCode.INVALID_ARGUMENT),
    ("m1", "models/m1", '{"storage_key":"notype"}', grpc.StatusCode.INVALID_ARGUMENT),
    ("m1", "../claim2/m1", KEY, grpc.StatusCode.INVALID_ARGUMENT),
    ("m1", "models/escape", KEY, grpc.StatusCode.INVALID_ARGUMENT),
    ("", "models/m1", KEY, grpc.StatusCode.INVALID_ARGUMENT),
    ("a/b", "models/m1", KEY, grpc.StatusCode.INVALID_ARGUMENT),
    ("..", "models/m1", KEY, grpc.StatusCode.INVALID_ARGUMENT),
    ("nul\x00id", "models/m1", KEY, grpc.StatusCode.INVALID_ARGUMENT),
    ("x" * 256, "models/m1", KEY, grpc.StatusCode.INVALID_ARGUMENT),
    ("m1", "models/absent", KEY, grpc.StatusCode.NOT_FOUND),
    ("m1", "models/broken", KEY, grpc.StatusCode.INTERNAL),
]


@pytest.mark.parametrize(("model_id", "path", "key", "code"), BAD_REQUESTS)
def test_bad_loads_have_clear_codes_and_leave_nothing(
    sidecar: SidecarHandle,
    sidecar_dirs: SidecarDirs,
    tmp_path: Path,
    model_id: str,
    path: str,
    key: str,
    code: grpc.StatusCode,
) -> None:
    (sidecar_dirs.storage_config_dir / "notype").write_text('{"name": "claim1"}')
    claim = sidecar_dirs.pvc_mounts_dir / "claim1"
    (claim / "models" / "escape").symlink_to(tmp_path)
    (claim / "models" / "broken").mkdir()  # no model.txt: the server refuses it
    before = files_under(tmp_path)
    with pytest.raises(grpc.RpcError) as err:
        load(sidecar, model_id, path, key)
    assert err.value.code() == code
    if model_id and code != grpc.StatusCode.INVALID_ARGUMENT:
        assert model_id in err.value.details()
    assert files_under(sidecar_dirs.root_model_dir) == []
    assert files_under(tmp_path) == before


def test_start_up_purges_what_a_previous_sidecar_left(
    simple_string_server: ServerHandle, sidecar_dirs: SidecarDirs, pvc_model: Path
) -> None:
    dirs = (
        sidecar_dirs.root_model_dir,
        sidecar_dirs.storage_config_dir,
        sidecar_dirs.pvc_mounts_dir,
    )
    with run_sidecar("simple-string", simple_string_server.port, *dirs) as first:
        load(first)
        first.process.stop(signal.SIGKILL)  # no chance to clean up
    assert (sidecar_dirs.root_model_dir / "m1").exists()
    with run_sidecar("simple-string", simple_string_server.port, *dirs):
        assert files_under(sidecar_dirs.root_model_dir) == []
        with pytest.raises(grpc.RpcError) as err:
            infer(simple_string_server.port, "m1", "x")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_cancelled_load_leaves_nothing(sidecar: SidecarHandle, sidecar_dirs: SidecarDirs) -> None:
    # Many files make the pull long enough to cancel it midway.
    big = sidecar_dirs.pvc_mounts_dir / "claim1" / "models" / "big"
    big.mkdir()
    (big / "model.txt").write_text("big ")
    for i in range(20000):
        (big / f"f{i}").write_bytes(b"")
    future = sidecar.stub.loadModel.future(
        pb.LoadModelRequest(modelId="big", modelPath="models/big", modelKey=KEY)
    )
    time.sleep(0.2)
    future.cancel()
    sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId="big"), timeout=30)
    assert files_under(sidecar_dirs.root_model_dir) == []


def test_sigterm_drains_and_exits_zero(
    simple_string_server: ServerHandle, sidecar_dirs: SidecarDirs, pvc_model: Path
) -> None:
    dirs = (
        sidecar_dirs.root_model_dir,
        sidecar_dirs.storage_config_dir,
        sidecar_dirs.pvc_mounts_dir,
    )
    with run_sidecar("simple-string", simple_string_server.port, *dirs) as handle:
        load(handle)
        os.kill(handle.process.popen.pid, signal.SIGTERM)
        assert handle.process.popen.wait(30) == 0
        log_lines = [
            json.loads(line)
            for line in handle.process.output().splitlines()
            if line.startswith("{")
        ]
    loads = [line for line in log_lines if line.get("event") == "load"]
    assert loads[0]["model_id"] == "m1"
    assert loads[0]["outcome"] == "ok"
    assert loads[0]["code"] == "OK"
    assert loads[0]["duration_ms"] >= 0
