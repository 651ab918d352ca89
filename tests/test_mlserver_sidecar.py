"""`mesh-sidecar serve --runtime mlserver` end to end: PVC -> sidecar -> a real MLServer 1.7.1."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.testing.mlserver import (
    IRIS_FLOWERS,
    IRIS_SPECIES,
    MLServerHandle,
    mlserver_available,
    run_mlserver,
    train_iris_model,
)
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import SidecarHandle, run_sidecar

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not mlserver_available(), reason="run `make install` for MLServer"),
]

FLOWERS = np.array(IRIS_FLOWERS, dtype=np.float64)
SPECIES = IRIS_SPECIES
OWN_SETTINGS = {
    "name": "what-the-user-called-it",
    "implementation": "mlserver_sklearn.SKLearnModel",
    "parameters": {"uri": "./weights/flowers.joblib", "extra": {"predict_fn": "predict_proba"}},
}


def _key(model_type: str) -> str:
    return json.dumps({"storage_key": "localpvc", "model_type": {"name": model_type}})


def _make_dirs(base: Path) -> SidecarDirs:
    dirs = SidecarDirs(base / "models", base / "storage-config", base / "pvc")
    for path in dirs.as_args():
        path.mkdir()
    return dirs


def _fill_claim(dirs: SidecarDirs, iris: Path) -> None:
    """The models on claim `claim1`, as a user would upload them, and storage key `localpvc`."""
    (dirs.storage_config_dir / "localpvc").write_text(json.dumps({"type": "pvc", "name": "claim1"}))
    models = dirs.pvc_mounts_dir / "claim1" / "models"
    (models / "iris").mkdir(parents=True)
    shutil.copy(iris, models / "iris" / "model.joblib")
    (models / "iris-own" / "weights").mkdir(parents=True)
    shutil.copy(iris, models / "iris-own" / "weights" / "flowers.joblib")
    (models / "iris-own" / "model-settings.json").write_text(json.dumps(OWN_SETTINGS))
    (models / "broken").mkdir()
    (models / "broken" / "model.joblib").write_text("this is not a pickled model")
    (models / "onnx").mkdir()
    (models / "onnx" / "model.onnx").write_text("not for MLServer")


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_iris_model(tmp_path_factory.mktemp("trained") / "iris.joblib")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory, iris: Path) -> SidecarDirs:
    dirs = _make_dirs(tmp_path_factory.mktemp("e2e"))
    _fill_claim(dirs, iris)
    return dirs


@pytest.fixture(scope="module")
def mlserver(dirs: SidecarDirs) -> Iterator[MLServerHandle]:
    with run_mlserver(dirs.root_model_dir) as handle:
        yield handle


@pytest.fixture(scope="module")
def sidecar(mlserver: MLServerHandle, dirs: SidecarDirs) -> Iterator[SidecarHandle]:
    with run_sidecar("mlserver", mlserver.grpc_port, *dirs.as_args()) as handle:
        yield handle


def _load(sidecar: SidecarHandle, model_id: str, path: str, model_type: str = "sklearn") -> int:
    request = pb.LoadModelRequest(
        modelId=model_id, modelType=model_type, modelPath=path, modelKey=_key(model_type)
    )
    size: int = sidecar.stub.loadModel(request, timeout=60).sizeInBytes
    return size


def _unload(sidecar: SidecarHandle, model_id: str) -> None:
    sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId=model_id), timeout=30)


def _predict(mlserver: MLServerHandle, model_id: str) -> np.ndarray:
    """Inference goes straight to MLServer, as ModelMesh forwards it."""
    with triton_grpc.InferenceServerClient(mlserver.address) as client:
        data = triton_grpc.InferInput("input-0", list(FLOWERS.shape), "FP64")
        data.set_data_from_numpy(FLOWERS)
        result = client.infer(model_id, [data])
        answer: np.ndarray = result.as_numpy(result.get_response().outputs[0].name)
        return answer


def _ready_in_mlserver(mlserver: MLServerHandle) -> list[str]:
    with triton_grpc.InferenceServerClient(mlserver.address) as client:
        index = client.get_model_repository_index()
    return sorted(m.name for m in index.models if m.state == "State.READY")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_status(sidecar: SidecarHandle) -> None:
    assert sidecar.status.status == pb.RuntimeStatusResponse.READY
    assert sidecar.status.runtimeVersion == "1.7.1"
    methods = sidecar.status.methodInfos
    assert list(methods["inference.GRPCInferenceService/ModelInfer"].idInjectionPath) == [1]
    assert list(methods["inference.GRPCInferenceService/ModelMetadata"].idInjectionPath) == [1]


def test_sklearn_without_settings(
    sidecar: SidecarHandle, mlserver: MLServerHandle, dirs: SidecarDirs
) -> None:
    assert _load(sidecar, "iris-1", "models/iris") > 0
    assert _predict(mlserver, "iris-1").ravel().tolist() == SPECIES
    assert _ready_in_mlserver(mlserver) == ["iris-1"]

    _unload(sidecar, "iris-1")
    assert _ready_in_mlserver(mlserver) == []
    assert _files(dirs.root_model_dir) == ["_mlserver_models"]
    assert (dirs.pvc_mounts_dir / "claim1" / "models" / "iris" / "model.joblib").is_file()


def test_own_settings(sidecar: SidecarHandle, mlserver: MLServerHandle, dirs: SidecarDirs) -> None:
    _load(sidecar, "iris-own-1", "models/iris-own")
    probabilities = _predict(mlserver, "iris-own-1")
    assert probabilities.argmax(axis=1).tolist() == SPECIES
    settings = json.loads(
        (
            dirs.root_model_dir / "_mlserver_models" / "iris-own-1" / "model-settings.json"
        ).read_text()
    )
    assert settings["name"] == "iris-own-1"
    assert settings["parameters"]["extra"] == {"predict_fn": "predict_proba"}
    _unload(sidecar, "iris-own-1")
    assert _files(dirs.root_model_dir) == ["_mlserver_models"]


def test_unknown_type_is_invalid(sidecar: SidecarHandle, dirs: SidecarDirs) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        _load(sidecar, "onnx-1", "models/onnx", model_type="onnx")
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "known: catboost, huggingface, lightgbm, mlflow, sklearn, xgboost" in str(
        failure.value.details()
    )
    assert _files(dirs.root_model_dir) == ["_mlserver_models"]


def test_failed_load_reports_mlserver_reason(
    sidecar: SidecarHandle, mlserver: MLServerHandle, dirs: SidecarDirs
) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        _load(sidecar, "broken-1", "models/broken")
    assert failure.value.code() == grpc.StatusCode.INTERNAL
    assert "MLServer could not load model 'broken-1': " in str(failure.value.details())
    assert _files(dirs.root_model_dir) == ["_mlserver_models"]
    assert _ready_in_mlserver(mlserver) == []
    _unload(sidecar, "broken-1")  # ModelMesh always follows a failed load with an unload


def test_startup_purge(
    sidecar_dirs: SidecarDirs, mlserver_server: MLServerHandle, iris: Path
) -> None:
    """A restarted sidecar unloads what MLServer still serves and clears stale files."""
    dirs = sidecar_dirs
    _fill_claim(dirs, iris)
    stale = dirs.root_model_dir / "_mlserver_models" / "stale"
    stale.mkdir()
    shutil.copy(iris, stale / "model.joblib")
    (stale / "model-settings.json").write_text(
        json.dumps({"name": "stale", "implementation": "mlserver_sklearn.SKLearnModel"})
    )
    (dirs.root_model_dir / "stale-pull").mkdir()
    with triton_grpc.InferenceServerClient(mlserver_server.address) as client:
        client.load_model("stale")
    assert _ready_in_mlserver(mlserver_server) == ["stale"]

    with run_sidecar("mlserver", mlserver_server.grpc_port, *dirs.as_args()) as sidecar:
        assert sidecar.status.status == pb.RuntimeStatusResponse.READY
        assert _ready_in_mlserver(mlserver_server) == []
        assert _files(dirs.root_model_dir) == ["_mlserver_models"]
        _load(sidecar, "iris-2", "models/iris")
        assert _predict(mlserver_server, "iris-2").ravel().tolist() == SPECIES
