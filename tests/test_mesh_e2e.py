"""The embedded coordinator end to end: `mesh-sidecar mesh --spawn N --runtime simple-string`,
driven through the mmesh.ModelMesh stubs and tritonclient, as a user would."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from mesh_sidecar.mmesh import model_mesh_pb2 as pb
from mesh_sidecar.mmesh import model_mesh_pb2_grpc as pb_grpc
from mesh_sidecar.testing.mesh import MeshHandle
from mesh_sidecar.testing.processes import (
    SIDECAR,
    ServerHandle,
    free_port,
    run_sidecar,
    start_process,
    wait_for_port,
)

pytestmark = pytest.mark.slow

KEY = json.dumps({"storage_key": "localpvc", "model_type": {"name": "string"}})
Status = pb.ModelStatusInfo
VStatus = pb.VModelStatusInfo


@pytest.fixture
def pvc_models(tmp_path: Path) -> Callable[[int], list[str]]:
    """Writes models m0..mN-1 (text "<id>:") on claim `claim1`, storage key `localpvc`."""

    def make(count: int) -> list[str]:
        (tmp_path / "storage-config").mkdir(exist_ok=True)
        (tmp_path / "storage-config" / "localpvc").write_text(
            json.dumps({"type": "pvc", "name": "claim1"})
        )
        ids = [f"m{i}" for i in range(count)]
        for model_id in ids:
            model_dir = tmp_path / "pvc" / "claim1" / "models" / model_id
            model_dir.mkdir(parents=True, exist_ok=True)
            (model_dir / "model.txt").write_text(f"{model_id}:")
        return ids

    return make


def info(model_id: str) -> pb.ModelInfo:
    return pb.ModelInfo(type="string", path=f"models/{model_id}", key=KEY)


def register(handle: MeshHandle, model_id: str, load: bool = False) -> Any:
    return handle.stub.registerModel(
        pb.RegisterModelRequest(
            modelId=model_id, modelInfo=info(model_id), loadNow=load, sync=load
        ),
        timeout=60,
    )


def infer(handle: MeshHandle, text: str = "x", **headers: str) -> str:
    client = handle.inference_client()
    data = triton.InferInput("INPUT", [1], "BYTES")
    data.set_data_from_numpy(np.array([text.encode()], dtype=np.object_))
    # The model name in the request is wrong on purpose: the coordinator writes the
    # real id at idInjectionPath [1], so a right answer proves the injection.
    result = client.infer(
        "not-the-model", [data], headers={k.replace("_", "-"): v for k, v in headers.items()}
    )
    output = result.as_numpy("OUTPUT")
    assert output is not None
    return bytes(output[0]).decode()


def status(handle: MeshHandle, model_id: str) -> Any:
    return handle.stub.getModelStatus(pb.GetStatusRequest(modelId=model_id), timeout=10)


def locations(handle: MeshHandle, model_id: str) -> set[str]:
    return {
        c.location for c in status(handle, model_id).modelCopyInfos if c.copyStatus == Status.LOADED
    }


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, pause: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(pause)


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


def infer_code(handle: MeshHandle, **headers: str) -> str:
    with pytest.raises(InferenceServerException) as err:
        infer(handle, **headers)
    return str(err.value.status())


def test_model_api_codes_and_jit_load(mesh: Callable[..., MeshHandle], pvc_models: Any) -> None:
    pvc_models(2)
    handle = mesh("simple-string", instances=2)
    stub = handle.stub

    assert register(handle, "m0").status == Status.NOT_LOADED
    assert register(handle, "m0").status == Status.NOT_LOADED  # same info again: fine
    other = pb.ModelInfo(type="string", path="models/m1", key=KEY)
    assert (
        code_of(lambda: stub.registerModel(pb.RegisterModelRequest(modelId="m0", modelInfo=other)))
        == grpc.StatusCode.ALREADY_EXISTS
    )
    assert (
        code_of(lambda: stub.registerModel(pb.RegisterModelRequest(modelId="", modelInfo=other)))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        code_of(
            lambda: stub.registerModel(
                pb.RegisterModelRequest(modelId="no-type", modelInfo=pb.ModelInfo(path="x"))
            )
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert status(handle, "nobody").status == Status.NOT_FOUND
    assert (
        code_of(lambda: stub.ensureLoaded(pb.EnsureLoadedRequest(modelId="nobody")))
        == grpc.StatusCode.NOT_FOUND
    )
    assert code_of(lambda: stub.getModelStatus(pb.GetStatusRequest())) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )

    # Just-in-time load on the first request.
    assert infer(handle, "hi", mm_model_id="m0") == "m0:hi"
    loaded = status(handle, "m0")
    assert loaded.status == Status.LOADED
    assert [c.location for c in loaded.modelCopyInfos] in (["instance-0"], ["instance-1"])
    assert loaded.modelCopyInfos[0].time > 0

    # loadNow + sync answers once loaded.
    assert register(handle, "m1", load=True).status == Status.LOADED
    assert infer(handle, mm_model_id="m1") == "m1:x"
    assert stub.ensureLoaded(pb.EnsureLoadedRequest(modelId="m1")).status == Status.LOADED

    # Routing errors.
    assert infer_code(handle) == "StatusCode.INVALID_ARGUMENT"
    assert infer_code(handle, mm_model_id="m0", mm_vmodel_id="v") == "StatusCode.INVALID_ARGUMENT"
    assert infer_code(handle, mm_model_id="nobody") == "StatusCode.NOT_FOUND"
    assert infer_code(handle, mm_vmodel_id="nobody") == "StatusCode.NOT_FOUND"

    stub.unregisterModel(pb.UnregisterModelRequest(modelId="m1"))
    stub.unregisterModel(pb.UnregisterModelRequest(modelId="m1"))  # unknown: fine
    assert status(handle, "m1").status == Status.NOT_FOUND
    assert infer_code(handle, mm_model_id="m1") == "StatusCode.NOT_FOUND"


def test_model_that_cannot_load_is_loading_failed(
    mesh: Callable[..., MeshHandle], pvc_models: Any
) -> None:
    pvc_models(1)
    handle = mesh("simple-string", instances=2)
    broken = pb.ModelInfo(type="string", path="models/not-there", key=KEY)
    answer = handle.stub.registerModel(
        pb.RegisterModelRequest(modelId="broken", modelInfo=broken, loadNow=True, sync=True)
    )
    assert answer.status == Status.LOADING_FAILED
    assert answer.errors
    # Tried on both instances, one failed copy each.
    assert sorted(c.location for c in answer.modelCopyInfos) == ["instance-0", "instance-1"]
    assert {c.copyStatus for c in answer.modelCopyInfos} == {Status.LOADING_FAILED}
    assert infer_code(handle, mm_model_id="broken") != "StatusCode.OK"
    # The other models are unaffected.
    register(handle, "m0")
    assert infer(handle, mm_model_id="m0") == "m0:x"


def test_vmodel_switches_only_once_the_target_loaded(
    mesh: Callable[..., MeshHandle], pvc_models: Any, tmp_path: Path
) -> None:
    pvc_models(3)
    handle = mesh("simple-string", instances=2)
    stub = handle.stub
    for model_id in ("m0", "m1"):
        register(handle, model_id)

    vm = stub.setVModel(
        pb.SetVModelRequest(vModelId="v", targetModelId="m0", owner="me", loadNow=True, sync=True)
    )
    assert (vm.status, vm.activeModelId, vm.targetModelId) == (VStatus.DEFINED, "m0", "m0")
    assert vm.activeModelStatus.status == Status.LOADED
    assert infer(handle, mm_vmodel_id="v") == "m0:x"

    vm = stub.setVModel(pb.SetVModelRequest(vModelId="v", targetModelId="m1", sync=True))
    assert (vm.status, vm.activeModelId) == (VStatus.DEFINED, "m1")
    assert infer(handle, mm_vmodel_id="v") == "m1:x"

    # A target that fails leaves the active model serving.
    broken = pb.ModelInfo(type="string", path="models/not-there", key=KEY)
    vm = stub.setVModel(
        pb.SetVModelRequest(vModelId="v", targetModelId="bad", modelInfo=broken, sync=True)
    )
    assert (vm.status, vm.activeModelId, vm.targetModelId) == (
        VStatus.TRANSITION_FAILED,
        "m1",
        "bad",
    )
    assert vm.targetModelStatus.status == Status.LOADING_FAILED
    assert infer(handle, mm_vmodel_id="v") == "m1:x"

    # Codes.
    assert code_of(lambda: stub.unregisterModel(pb.UnregisterModelRequest(modelId="m1"))) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    assert (
        code_of(
            lambda: stub.setVModel(
                pb.SetVModelRequest(vModelId="v", targetModelId="m0", owner="you")
            )
        )
        == grpc.StatusCode.ALREADY_EXISTS
    )
    assert (
        code_of(lambda: stub.setVModel(pb.SetVModelRequest(vModelId="v", targetModelId="nobody")))
        == grpc.StatusCode.NOT_FOUND
    )
    assert code_of(lambda: stub.setVModel(pb.SetVModelRequest(vModelId="v"))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        code_of(
            lambda: stub.setVModel(
                pb.SetVModelRequest(vModelId="new", targetModelId="m0", updateOnly=True)
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        code_of(
            lambda: stub.setVModel(
                pb.SetVModelRequest(vModelId="v", targetModelId="m0", expectedTargetModelId="m0")
            )
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )

    # Once the target can load, setting it again is a new attempt.
    missing = tmp_path / "pvc" / "claim1" / "models" / "not-there"
    missing.mkdir()
    (missing / "model.txt").write_text("fixed:")
    vm = stub.setVModel(pb.SetVModelRequest(vModelId="v", targetModelId="bad", sync=True))
    assert (vm.status, vm.activeModelId) == (VStatus.DEFINED, "bad")
    assert infer(handle, mm_vmodel_id="v") == "fixed:x"

    # An auto-deleted target goes away once the vmodel moves off it.
    vm = stub.setVModel(
        pb.SetVModelRequest(
            vModelId="v",
            targetModelId="auto",
            modelInfo=info("m2"),
            autoDeleteTargetModel=True,
            sync=True,
        )
    )
    assert (vm.status, vm.activeModelId) == (VStatus.DEFINED, "auto")
    assert status(handle, "bad").status != Status.NOT_FOUND  # not auto-delete: kept
    assert infer(handle, mm_vmodel_id="v") == "m2:x"
    stub.setVModel(pb.SetVModelRequest(vModelId="v", targetModelId="m0", sync=True))
    assert status(handle, "auto").status == Status.NOT_FOUND

    stub.deleteVModel(pb.DeleteVModelRequest(vModelId="v"))
    stub.deleteVModel(pb.DeleteVModelRequest(vModelId="v"))  # unknown: fine
    gone = stub.getVModelStatus(pb.GetVModelStatusRequest(vModelId="v"))
    assert gone.status == VStatus.NOT_FOUND
    stub.unregisterModel(pb.UnregisterModelRequest(modelId="m1"))  # no longer referenced


def test_least_recently_used_models_are_evicted(
    mesh: Callable[..., MeshHandle], pvc_models: Any
) -> None:
    ids = pvc_models(6)
    # Capacity 4 x 8 KiB units; each tiny model takes one unit.
    handle = mesh(
        "simple-string",
        instances=1,
        extra_env={
            "CONTAINER_MEM_REQ_BYTES": str(4 * 8192),
            "MEM_BUFFER_BYTES": "0",
            "DEFAULT_MODELSIZE": "8192",
        },
    )
    for model_id in ids:
        register(handle, model_id)
    for model_id in ids[:4]:
        assert infer(handle, mm_model_id=model_id) == f"{model_id}:x"
    assert infer(handle, mm_model_id="m0") == "m0:x"  # m0 is now the most recent

    assert infer(handle, mm_model_id="m4") == "m4:x"  # full: evicts m1, the oldest
    assert status(handle, "m1").status == Status.NOT_LOADED
    assert {m: status(handle, m).status for m in ("m0", "m2", "m3", "m4")} == dict.fromkeys(
        ("m0", "m2", "m3", "m4"), Status.LOADED
    )

    assert infer(handle, mm_model_id="m1") == "m1:x"  # reloaded; evicts m2
    assert status(handle, "m2").status == Status.NOT_LOADED


def test_models_move_when_a_sidecar_is_killed(
    mesh: Callable[..., MeshHandle], pvc_models: Any
) -> None:
    pvc_models(6)
    handle = mesh("simple-string", instances=2)
    register(handle, "m0", load=True)
    (where,) = locations(handle, "m0")
    victim = next(i for i in handle.instances if i.name == where)
    survivor = next(i for i in handle.instances if i.name != where)

    victim.kill_sidecar()
    wait_until(lambda: locations(handle, "m0") == {survivor.name})
    assert infer(handle, mm_model_id="m0") == "m0:x"
    # The coordinator restarts the sidecar; once READY again, the instance takes
    # new copies (it is the emptier one).
    candidates = iter(["m1", "m2", "m3", "m4", "m5"])

    def next_model_lands_on_victim() -> bool:
        model_id = next(candidates)
        register(handle, model_id, load=True)
        return locations(handle, model_id) == {victim.name}

    wait_until(next_model_lands_on_victim, timeout=60, pause=2.0)


def test_requests_survive_an_instance_crash(
    mesh: Callable[..., MeshHandle], pvc_models: Any
) -> None:
    pvc_models(1)
    handle = mesh("simple-string", instances=2)
    register(handle, "m0", load=True)
    (where,) = locations(handle, "m0")
    victim = next(i for i in handle.instances if i.name == where)

    victim.kill()  # model server and sidecar at once
    for _ in range(3):
        assert infer(handle, mm_model_id="m0") == "m0:x"
    assert locations(handle, "m0") == {i.name for i in handle.instances} - {where}


def test_a_load_that_hangs_times_out(mesh: Callable[..., MeshHandle], pvc_models: Any) -> None:
    pvc_models(1)
    handle = mesh("simple-string", instances=1, extra_args=["--load-timeout-ms", "1000"])
    (instance,) = handle.instances
    instance.signal_server(signal.SIGSTOP)  # the model server hangs, the sidecar waits on it
    try:
        answer = register(handle, "m0", load=True)
        assert answer.status == Status.LOADING_FAILED
        assert any("timed out" in error for error in answer.errors)
    finally:
        instance.signal_server(signal.SIGCONT)


def test_a_hot_model_gets_a_second_copy(mesh: Callable[..., MeshHandle], pvc_models: Any) -> None:
    pvc_models(1)
    handle = mesh("simple-string", instances=2, extra_args=["--hot-requests-per-s", "5"])
    register(handle, "m0", load=True)
    assert len(locations(handle, "m0")) == 1
    for _ in range(20):
        assert infer(handle, mm_model_id="m0") == "m0:x"
    wait_until(lambda: locations(handle, "m0") == {i.name for i in handle.instances})
    for _ in range(5):
        assert infer(handle, mm_model_id="m0") == "m0:x"


def test_instances_already_running_are_used_as_given(
    tmp_path: Path, pvc_models: Any, simple_string_server: ServerHandle
) -> None:
    pvc_models(1)
    dirs = (tmp_path / "models", tmp_path / "storage-config", tmp_path / "pvc")
    dirs[0].mkdir(exist_ok=True)
    with run_sidecar("simple-string", simple_string_server.port, *dirs) as sidecar:
        port = free_port()
        spec = f"127.0.0.1:{sidecar.adapter_port}=127.0.0.1:{simple_string_server.port}"
        proc = start_process([*SIDECAR, "mesh", "--port", str(port), "--instance", spec])
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            wait_for_port(port, proc)
            stub = pb_grpc.ModelMeshStub(channel)
            answer = stub.registerModel(
                pb.RegisterModelRequest(modelId="m0", modelInfo=info("m0"), loadNow=True, sync=True)
            )
            assert answer.status == Status.LOADED
            assert [c.location for c in answer.modelCopyInfos] == ["instance-0"]
            client = triton.InferenceServerClient(f"127.0.0.1:{port}")
            data = triton.InferInput("INPUT", [1], "BYTES")
            data.set_data_from_numpy(np.array([b"y"], dtype=np.object_))
            output = client.infer("m0", [data], headers={"mm-model-id": "m0"}).as_numpy("OUTPUT")
            assert output is not None
            assert bytes(output[0]) == b"m0:y"
        finally:
            channel.close()
            assert proc.stop(signal.SIGINT) == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 2, "--spawn N --runtime NAME, or --instance"),
        (["--spawn", "1"], 2, "--spawn N needs --runtime"),
        (["--spawn", "1", "--runtime", "no-such-runtime"], 1, "unknown runtime"),
        (["--instance", "nonsense"], 1, "ADAPTER_ADDR=RUNTIME_ADDR"),
    ],
)
def test_bad_command_lines_say_what_is_wrong(args: list[str], code: int, message: str) -> None:
    proc = start_process([*SIDECAR, "mesh", "--port", str(free_port()), *args], name="mesh")
    assert proc.popen.wait(timeout=60) == code
    assert message in proc.output()
    proc.stop()


def test_with_no_instance_requests_are_unavailable_until_one_is_back(
    mesh: Callable[..., MeshHandle], pvc_models: Any
) -> None:
    pvc_models(1)
    handle = mesh("simple-string", instances=1)
    register(handle, "m0")
    (instance,) = handle.instances
    instance.kill_sidecar()  # the coordinator starts it again after a second
    assert infer_code(handle, mm_model_id="m0") == "StatusCode.UNAVAILABLE"
    assert status(handle, "m0").status == Status.NOT_LOADED  # not held against the model

    def answers() -> bool:
        try:
            return infer(handle, mm_model_id="m0") == "m0:x"
        except InferenceServerException:
            return False

    wait_until(answers, timeout=60, pause=0.5)
