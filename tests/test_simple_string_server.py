"""The simple-string server, driven as a user would: tritonclient and the ModelRuntime stub."""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from simple_string_helpers import address, make_model, simple_string_server
from tritonclient.grpc import service_pb2, service_pb2_grpc

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.mmesh import model_runtime_pb2_grpc as pb_grpc
from mesh_sidecar.testing.processes import ServerHandle


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("repository")


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerHandle]:
    with simple_string_server(
        "--model-repository",
        str(repo),
        "--capacity-bytes",
        "100000000",
        "--max-concurrency",
        "3",
    ) as running:
        yield running


@pytest.fixture
def client(server: ServerHandle) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(address(server))
    yield c
    c.close()


@pytest.fixture
def v2(server: ServerHandle) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(address(server)) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture
def runtime(server: ServerHandle) -> Iterator[pb_grpc.ModelRuntimeStub]:
    with grpc.insecure_channel(address(server)) as channel:
        yield pb_grpc.ModelRuntimeStub(channel)


def infer(client: triton.InferenceServerClient, model: str, *elements: bytes) -> list[bytes]:
    tensor = triton.InferInput("INPUT", [len(elements)], "BYTES")
    tensor.set_data_from_numpy(np.array(elements, dtype=np.object_))
    result = client.infer(model, [tensor])
    return [bytes(e) for e in result.as_numpy("OUTPUT")]


def load_with_path(v2: service_pb2_grpc.GRPCInferenceServiceStub, name: str, path: Path) -> None:
    request = service_pb2.RepositoryModelLoadRequest(model_name=name)
    request.parameters["path"].string_param = str(path)
    v2.RepositoryModelLoad(request)


def status_of(exc: pytest.ExceptionInfo[triton.InferenceServerException]) -> str:
    return str(exc.value.status())


# --- KServe V2 -------------------------------------------------------------------


def test_server_says_who_it_is(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "simple-string"
    assert meta.version == "0.1.0"


def test_load_from_repository_infer_and_unload(
    client: triton.InferenceServerClient, repo: Path
) -> None:
    make_model(repo, "greeter", "hello ")
    assert not client.is_model_ready("greeter")
    client.load_model("greeter")
    assert client.is_model_ready("greeter")
    assert infer(client, "greeter", b"world", b"") == [b"hello world", b"hello "]
    client.unload_model("greeter")
    assert not client.is_model_ready("greeter")
    with pytest.raises(triton.InferenceServerException) as exc:
        infer(client, "greeter", b"x")
    assert status_of(exc) == "StatusCode.NOT_FOUND"


def test_load_takes_the_path_parameter_dir_or_file(
    client: triton.InferenceServerClient,
    v2: service_pb2_grpc.GRPCInferenceServiceStub,
    tmp_path: Path,
) -> None:
    load_with_path(v2, "from-dir", make_model(tmp_path, "anything", "dir:"))
    single = tmp_path / "single.txt"
    single.write_bytes(b"file:")
    load_with_path(v2, "from-file", single)
    assert infer(client, "from-dir", b"a") == [b"dir:a"]
    assert infer(client, "from-file", b"a") == [b"file:a"]


def test_reload_picks_up_new_text(
    client: triton.InferenceServerClient,
    v2: service_pb2_grpc.GRPCInferenceServiceStub,
    tmp_path: Path,
) -> None:
    model = make_model(tmp_path, "m", "one ")
    load_with_path(v2, "reloaded", model)
    (model / "model.txt").write_text("two ")
    load_with_path(v2, "reloaded", model)
    assert infer(client, "reloaded", b"x") == [b"two x"]


def test_infer_with_contents_and_a_2d_shape(
    v2: service_pb2_grpc.GRPCInferenceServiceStub, tmp_path: Path
) -> None:
    load_with_path(v2, "contents", make_model(tmp_path, "c", "+"))
    request = service_pb2.ModelInferRequest(model_name="contents", id="req-7")
    tensor = request.inputs.add(name="whatever", datatype="BYTES", shape=[2, 2])
    tensor.contents.bytes_contents.extend([b"a", b"b", b"c", b"d"])
    response = v2.ModelInfer(request)
    assert response.id == "req-7"
    [out] = response.outputs
    assert (out.name, out.datatype, list(out.shape)) == ("OUTPUT", "BYTES", [2, 2])
    encoded = response.raw_output_contents[0]
    assert encoded == b"".join(struct.pack("<I", 2) + b"+" + c for c in (b"a", b"b", b"c", b"d"))


def test_model_metadata(client: triton.InferenceServerClient, repo: Path) -> None:
    make_model(repo, "described", "x")
    client.load_model("described")
    meta = client.get_model_metadata("described")
    assert meta.name == "described"
    assert list(meta.versions) == ["1"]
    assert [(t.name, t.datatype) for t in meta.outputs] == [("OUTPUT", "BYTES")]
    with pytest.raises(triton.InferenceServerException) as exc:
        client.get_model_metadata("never-loaded")
    assert status_of(exc) == "StatusCode.NOT_FOUND"


def test_repository_index_with_ready_filter(
    v2: service_pb2_grpc.GRPCInferenceServiceStub, repo: Path
) -> None:
    make_model(repo, "indexed-loaded", "x")
    make_model(repo, "indexed-idle", "x")
    v2.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name="indexed-loaded"))
    index = v2.RepositoryIndex(service_pb2.RepositoryIndexRequest())
    everything = {m.name: m.state for m in index.models}
    assert everything["indexed-loaded"] == "READY"
    assert everything["indexed-idle"] == "UNAVAILABLE"
    ready = v2.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True)).models
    names = {m.name for m in ready}
    assert "indexed-loaded" in names
    assert "indexed-idle" not in names
    assert {m.state for m in ready} == {"READY"}


def test_ready_index_follows_loads_and_unloads(
    v2: service_pb2_grpc.GRPCInferenceServiceStub, repo: Path
) -> None:
    def ready_names() -> set[str]:
        index = v2.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True))
        return {m.name for m in index.models}

    make_model(repo, "comes-and-goes", "x")
    before = ready_names()
    assert "comes-and-goes" not in before
    assert ready_names() == before  # asked again, nothing changed: the same answer
    v2.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name="comes-and-goes"))
    assert ready_names() == before | {"comes-and-goes"}
    v2.RepositoryModelUnload(service_pb2.RepositoryModelUnloadRequest(model_name="comes-and-goes"))
    assert ready_names() == before


@pytest.mark.parametrize(
    ("setup", "code", "words"),
    [
        ("missing", grpc.StatusCode.NOT_FOUND, "does not exist"),
        ("no-model-txt", grpc.StatusCode.FAILED_PRECONDITION, "has no model.txt"),
        ("too-big", grpc.StatusCode.FAILED_PRECONDITION, "byte limit"),
    ],
)
def test_bad_loads(
    v2: service_pb2_grpc.GRPCInferenceServiceStub,
    tmp_path: Path,
    setup: str,
    code: grpc.StatusCode,
    words: str,
) -> None:
    path = tmp_path / setup
    if setup == "no-model-txt":
        path.mkdir()
        (path / "other.txt").write_text("x")
    elif setup == "too-big":
        path.write_bytes(b"x" * ((1 << 20) + 1))
    with pytest.raises(grpc.RpcError) as exc:
        load_with_path(v2, f"bad-{setup}", path)
    assert exc.value.code() == code
    assert words in exc.value.details()
    ready = v2.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True)).models
    assert f"bad-{setup}" not in {m.name for m in ready}


def test_load_without_path_of_an_unsafe_name_is_refused(
    v2: service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        v2.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name="../etc"))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unload_unknown_is_not_found(client: triton.InferenceServerClient) -> None:
    with pytest.raises(triton.InferenceServerException) as exc:
        client.unload_model("never-loaded")
    assert status_of(exc) == "StatusCode.NOT_FOUND"


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("two-inputs", "exactly one BYTES input"),
        ("no-input", "exactly one BYTES input"),
        ("int32", "expected BYTES"),
        ("count-mismatch", "holds 3"),
        ("truncated-raw", "length-prefixed"),
        ("unknown-output", "unknown output"),
        ("both-contents", "either as raw_input_contents or as contents"),
    ],
)
def test_bad_infer_requests_are_invalid_argument(
    v2: service_pb2_grpc.GRPCInferenceServiceStub, tmp_path: Path, case: str, words: str
) -> None:
    load_with_path(v2, "strict", make_model(tmp_path, "strict", "s"))
    one = struct.pack("<I", 1) + b"a"
    request = service_pb2.ModelInferRequest(model_name="strict")
    if case != "no-input":
        request.inputs.add(
            name="INPUT",
            datatype="INT32" if case == "int32" else "BYTES",
            shape=[3] if case == "count-mismatch" else [1],
        )
    if case == "two-inputs":
        request.inputs.add(name="OTHER", datatype="BYTES", shape=[1])
    if case == "truncated-raw":
        request.raw_input_contents.append(struct.pack("<I", 10) + b"abc")
    else:
        request.raw_input_contents.append(one)
    if case == "unknown-output":
        request.outputs.add(name="NOPE")
    if case == "both-contents":
        request.inputs[0].contents.bytes_contents.append(b"a")
    with pytest.raises(grpc.RpcError) as exc:
        v2.ModelInfer(request)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in exc.value.details()


def test_unknown_version_is_not_found(
    v2: service_pb2_grpc.GRPCInferenceServiceStub, tmp_path: Path
) -> None:
    load_with_path(v2, "versioned", make_model(tmp_path, "v", "v"))
    request = service_pb2.ModelInferRequest(model_name="versioned", model_version="2")
    request.inputs.add(name="INPUT", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(struct.pack("<I", 1) + b"a")
    with pytest.raises(grpc.RpcError) as exc:
        v2.ModelInfer(request)
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


# --- mmesh.ModelRuntime -------------------------------------------------------------


def test_model_runtime_load_infer_sizes_unload(
    runtime: pb_grpc.ModelRuntimeStub, client: triton.InferenceServerClient, tmp_path: Path
) -> None:
    model = make_model(tmp_path, "pulled", "mm:")
    loaded = runtime.loadModel(
        pb.LoadModelRequest(modelId="mm-1", modelType="string", modelPath=str(model), modelKey="{}")
    )
    assert loaded.sizeInBytes > len("mm:")
    assert loaded.maxConcurrency == 3
    assert infer(client, "mm-1", b"x") == [b"mm:x"]
    size = runtime.modelSize(pb.ModelSizeRequest(modelId="mm-1")).sizeInBytes
    assert size == loaded.sizeInBytes
    predicted = runtime.predictModelSize(
        pb.PredictModelSizeRequest(modelId="mm-2", modelPath=str(model))
    ).sizeInBytes
    assert predicted == loaded.sizeInBytes
    runtime.unloadModel(pb.UnloadModelRequest(modelId="mm-1"))
    with pytest.raises(grpc.RpcError) as exc:
        runtime.unloadModel(pb.UnloadModelRequest(modelId="mm-1"))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as exc:
        runtime.modelSize(pb.ModelSizeRequest(modelId="mm-1"))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_model_runtime_predicts_the_default_size_for_an_unknown_path(
    runtime: pb_grpc.ModelRuntimeStub, tmp_path: Path
) -> None:
    predicted = runtime.predictModelSize(
        pb.PredictModelSizeRequest(modelId="x", modelPath=str(tmp_path / "absent"))
    )
    assert predicted.sizeInBytes == 8192


@pytest.mark.parametrize(
    ("model_id", "path", "code"),
    [
        ("", "some/path", grpc.StatusCode.INVALID_ARGUMENT),
        ("no-path", "", grpc.StatusCode.INVALID_ARGUMENT),
        ("absent", "/nonexistent/model", grpc.StatusCode.NOT_FOUND),
    ],
)
def test_model_runtime_bad_loads(
    runtime: pb_grpc.ModelRuntimeStub, model_id: str, path: str, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        runtime.loadModel(pb.LoadModelRequest(modelId=model_id, modelPath=path))
    assert exc.value.code() == code


def test_runtime_status_reports_flags_and_purges(
    runtime: pb_grpc.ModelRuntimeStub, client: triton.InferenceServerClient, tmp_path: Path
) -> None:
    model = make_model(tmp_path, "stale", "s")
    runtime.loadModel(pb.LoadModelRequest(modelId="stale", modelPath=str(model)))
    status = runtime.runtimeStatus(pb.RuntimeStatusRequest())
    assert status.status == pb.RuntimeStatusResponse.READY
    assert status.capacityInBytes == 100_000_000
    assert status.defaultModelSizeInBytes == 8192
    assert status.maxLoadingConcurrency == 8
    assert status.modelLoadingTimeoutMs == 30_000
    assert status.runtimeVersion == "0.1.0"
    assert status.limitModelConcurrency
    assert not status.allowAnyMethod
    assert {k: list(v.idInjectionPath) for k, v in status.methodInfos.items()} == {
        "inference.GRPCInferenceService/ModelInfer": [1],
        "inference.GRPCInferenceService/ModelMetadata": [1],
    }
    # Whatever was loaded before READY belonged to an earlier ModelMesh: gone.
    assert not client.is_model_ready("stale")
    ready = client.get_model_repository_index().models
    assert [m.name for m in ready if m.state == "READY"] == []


def test_limits_modelmesh_would_refuse_stop_the_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mesh_sidecar.adapter.cli",
            "simple-string-server",
            "--port",
            "1",
            "--default-model-size",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "default model size must be at least 8192" in result.stderr
