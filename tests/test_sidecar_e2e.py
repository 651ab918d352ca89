"""The ModelRuntime contract end to end: a real sidecar in front of a real simple-string server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.testing.checks import files_under, infer_text
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import (
    SIDECAR,
    ServerHandle,
    SidecarHandle,
    free_port,
    run_sidecar,
)

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
    return infer_text(f"127.0.0.1:{port}", model_id, [text])[0]


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
    with pytest.raises(InferenceServerException) as err:
        infer(simple_string_server.port, "m1", "world")
    assert err.value.status() == "StatusCode.NOT_FOUND"
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
    dirs = sidecar_dirs.as_args()
    with run_sidecar("simple-string", simple_string_server.port, *dirs) as first:
        load(first)
        first.process.stop(signal.SIGKILL)  # no chance to clean up
    assert (sidecar_dirs.root_model_dir / "m1").exists()
    with run_sidecar("simple-string", simple_string_server.port, *dirs):
        assert files_under(sidecar_dirs.root_model_dir) == []
        with pytest.raises(InferenceServerException) as err:
            infer(simple_string_server.port, "m1", "x")
        assert err.value.status() == "StatusCode.NOT_FOUND"


def log_events(handle: SidecarHandle, event: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in handle.process.output().splitlines() if line[:1] == "{"]
    return [line for line in lines if line.get("event") == event]


def test_cancelled_load_cleans_up_by_itself(
    sidecar: SidecarHandle, sidecar_dirs: SidecarDirs
) -> None:
    # 30,000 files make the pull take far longer than the 0.2 s before the cancel.
    big = sidecar_dirs.pvc_mounts_dir / "claim1" / "models" / "big"
    big.mkdir()
    (big / "model.txt").write_text("big ")
    for i in range(30000):
        (big / f"f{i}").write_bytes(b"")
    future = sidecar.stub.loadModel.future(
        pb.LoadModelRequest(modelId="big", modelPath="models/big", modelKey=KEY)
    )
    time.sleep(0.2)
    future.cancel()
    deadline = time.monotonic() + 30
    while not log_events(sidecar, "load") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e["code"] for e in log_events(sidecar, "load")] == ["CANCELLED"]
    # No unloadModel was sent: the cancelled load removed its own files.
    assert files_under(sidecar_dirs.root_model_dir) == []
    load(sidecar, "m1")  # and the sidecar goes on working


def test_sigterm_drains_and_exits_zero(
    simple_string_server: ServerHandle, sidecar_dirs: SidecarDirs, pvc_model: Path
) -> None:
    dirs = sidecar_dirs.as_args()
    with run_sidecar("simple-string", simple_string_server.port, *dirs) as handle:
        load(handle)
        os.kill(handle.process.popen.pid, signal.SIGTERM)
        assert handle.process.popen.wait(30) == 0
        loads = log_events(handle, "load")
    assert loads[0]["model_id"] == "m1"
    assert loads[0]["outcome"] == "ok"
    assert loads[0]["code"] == "OK"
    assert loads[0]["duration_ms"] >= 0


def test_health_and_metrics(
    simple_string_server: ServerHandle, sidecar_dirs: SidecarDirs, pvc_model: Path
) -> None:
    metrics_port = free_port()
    with run_sidecar(
        "simple-string",
        simple_string_server.port,
        *sidecar_dirs.as_args(),
        extra_env={"METRICS_PORT": str(metrics_port)},
    ) as handle:
        health = health_pb2_grpc.HealthStub(handle.channel)
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        load(handle)
        with pytest.raises(grpc.RpcError):
            load(handle, "m2", "models/absent")
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    assert 'mesh_sidecar_loads_total{code="OK"} 1.0' in text
    assert 'mesh_sidecar_loads_total{code="NOT_FOUND"} 1.0' in text
    assert 'mesh_sidecar_pulled_bytes_total{storage_type="pvc"} 6.0' in text
    assert "mesh_sidecar_models_loaded 1.0" in text
    assert "mesh_sidecar_load_seconds_count 1.0" in text


def test_runtimes_command_lists_built_ins() -> None:
    proc = subprocess.run([*SIDECAR, "runtimes"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    rows = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines()}
    assert rows["simple-string"] == "built-in"
    assert rows["forward"] == "built-in"
