"""The mlserver runtime against a real MLServer 1.7.1 (from `make install`'s `.venv-mlserver`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from mesh_sidecar.errors import InvalidRequest, RuntimeLoadFailed
from mesh_sidecar.runtimes.base import ModelFiles, RuntimeSettings
from mesh_sidecar.runtimes.layout import apply_layout
from mesh_sidecar.runtimes.mlserver import MLServerAdapter
from mesh_sidecar.testing.mlserver import (
    IRIS_FLOWERS,
    IRIS_SPECIES,
    MLServerHandle,
    mlserver_available,
    run_mlserver,
    train_iris_model,
)
from mesh_sidecar.testing.processes import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not mlserver_available(), reason="run `make install` for MLServer"),
]

FLOWERS = np.array(IRIS_FLOWERS, dtype=np.float64)
SPECIES = IRIS_SPECIES


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def iris_joblib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_iris_model(tmp_path_factory.mktemp("trained") / "iris.joblib")


@pytest.fixture(scope="module")
def mlserver(models_root: Path) -> Iterator[MLServerHandle]:
    with run_mlserver(models_root) as handle:
        yield handle


@pytest.fixture
async def adapter(mlserver: MLServerHandle, models_root: Path) -> AsyncIterator[MLServerAdapter]:
    runtime = MLServerAdapter(RuntimeSettings(address=mlserver.address, root_model_dir=models_root))
    yield runtime
    await runtime.close()


def _pulled(models_root: Path, model_id: str) -> Path:
    path = models_root / model_id
    path.mkdir()
    return path


async def _lay_out_and_load(adapter: MLServerAdapter, model: ModelFiles) -> None:
    """What the sidecar does between the pull and the answer."""
    repo = adapter.repository_path(model.model_id)
    assert repo is not None
    apply_layout(adapter.plan_layout(model), repo)
    await adapter.load(model)


def _predict(mlserver: MLServerHandle, model_id: str) -> np.ndarray:
    """Ask MLServer directly, as ModelMesh forwards inference to it."""
    with triton_grpc.InferenceServerClient(mlserver.address) as client:
        data = triton_grpc.InferInput("input-0", list(FLOWERS.shape), "FP64")
        data.set_data_from_numpy(FLOWERS)
        result = client.infer(model_id, [data])
        output = result.get_response().outputs[0].name
        answer: np.ndarray = result.as_numpy(output)
        return answer


async def test_ready_version_and_routed_methods(adapter: MLServerAdapter) -> None:
    assert await adapter.is_ready()
    info = await adapter.describe()
    assert info.version == "1.7.1"
    assert info.method_infos["inference.GRPCInferenceService/ModelInfer"] == [1]
    assert info.method_infos["inference.GRPCInferenceService/ModelMetadata"] == [1]


async def test_not_ready_when_nothing_listens(models_root: Path) -> None:
    runtime = MLServerAdapter(
        RuntimeSettings(address=f"127.0.0.1:{free_port()}", root_model_dir=models_root)
    )
    assert not await runtime.is_ready()
    await runtime.close()


async def test_sklearn_without_settings(
    adapter: MLServerAdapter, mlserver: MLServerHandle, models_root: Path, iris_joblib: Path
) -> None:
    pulled = _pulled(models_root, "iris-plain")
    (pulled / "model.joblib").write_bytes(iris_joblib.read_bytes())
    await _lay_out_and_load(adapter, ModelFiles("iris-plain", "sklearn", None, pulled, 1))

    assert "iris-plain" in await adapter.list_loaded()
    assert _predict(mlserver, "iris-plain").ravel().tolist() == SPECIES


async def test_single_file_of_any_name(
    adapter: MLServerAdapter, mlserver: MLServerHandle, models_root: Path, iris_joblib: Path
) -> None:
    pulled = _pulled(models_root, "iris-file")
    (pulled / "classifier-v3.bin").write_bytes(iris_joblib.read_bytes())
    await _lay_out_and_load(
        adapter, ModelFiles("iris-file", "sklearn", None, pulled / "classifier-v3.bin", 1)
    )
    assert _predict(mlserver, "iris-file").ravel().tolist() == SPECIES


async def test_own_settings_custom_name_relative_uri_extra_parameters(
    adapter: MLServerAdapter, mlserver: MLServerHandle, models_root: Path, iris_joblib: Path
) -> None:
    pulled = _pulled(models_root, "iris-own")
    (pulled / "weights").mkdir()
    (pulled / "weights" / "flowers.joblib").write_bytes(iris_joblib.read_bytes())
    settings = {
        "name": "what-the-user-called-it",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {
            "uri": "./weights/flowers.joblib",
            "extra": {"predict_fn": "predict_proba"},
        },
    }
    (pulled / "model-settings.json").write_text(json.dumps(settings))
    await _lay_out_and_load(adapter, ModelFiles("iris-own", "sklearn", None, pulled, 1))

    # Served under the model id; predict_proba (kept from the user's settings)
    # answers one probability per species instead of a label.
    probabilities = _predict(mlserver, "iris-own")
    assert probabilities.shape == (3, 3)
    assert probabilities.argmax(axis=1).tolist() == SPECIES
    with pytest.raises(InferenceServerException):
        _predict(mlserver, "what-the-user-called-it")


async def test_lightgbm(
    adapter: MLServerAdapter,
    mlserver: MLServerHandle,
    models_root: Path,
    tmp_path: Path,
) -> None:
    pulled = _pulled(models_root, "iris-lgbm")
    train_iris_model(pulled / "model.bst", kind="lightgbm")
    await _lay_out_and_load(adapter, ModelFiles("iris-lgbm", "lightgbm", None, pulled, 1))
    assert _predict(mlserver, "iris-lgbm").argmax(axis=1).tolist() == SPECIES


async def test_failed_load_carries_mlserver_reason(
    adapter: MLServerAdapter, models_root: Path
) -> None:
    pulled = _pulled(models_root, "broken")
    (pulled / "model.joblib").write_text("this is not a pickled model")
    with pytest.raises(RuntimeLoadFailed) as failure:
        await _lay_out_and_load(adapter, ModelFiles("broken", "sklearn", None, pulled, 1))
    prefix, _, reason = str(failure.value).partition(": ")
    assert prefix == "MLServer could not load model 'broken'"
    assert reason  # joblib's own words, whatever they are
    assert "broken" not in await adapter.list_loaded()


async def test_missing_runtime_reaches_the_caller(
    adapter: MLServerAdapter, models_root: Path
) -> None:
    pulled = _pulled(models_root, "no-runtime")
    (pulled / "MLmodel").write_text("flavors: {}")
    model = ModelFiles("no-runtime", "mlflow", None, pulled, 1)  # mlserver-mlflow not installed
    with pytest.raises(RuntimeLoadFailed, match="mlserver_mlflow"):
        await _lay_out_and_load(adapter, model)


async def test_unload_and_reload(
    adapter: MLServerAdapter, mlserver: MLServerHandle, models_root: Path, iris_joblib: Path
) -> None:
    pulled = _pulled(models_root, "iris-again")
    (pulled / "model.joblib").write_bytes(iris_joblib.read_bytes())
    model = ModelFiles("iris-again", "sklearn", None, pulled, 1)
    await _lay_out_and_load(adapter, model)

    await adapter.unload("iris-again")
    assert "iris-again" not in await adapter.list_loaded()
    with pytest.raises(InferenceServerException):
        _predict(mlserver, "iris-again")
    await adapter.unload("iris-again")  # not loaded any more: quietly succeeds
    await adapter.unload("never-loaded")

    await adapter.load(model)  # the laid-out dir is still there
    assert _predict(mlserver, "iris-again").ravel().tolist() == SPECIES


async def test_unknown_type_is_refused_before_mlserver(
    adapter: MLServerAdapter, models_root: Path
) -> None:
    pulled = _pulled(models_root, "onnx-model")
    (pulled / "model.onnx").write_text("x")
    with pytest.raises(InvalidRequest, match="known: catboost, huggingface, lightgbm"):
        adapter.plan_layout(ModelFiles("onnx-model", "onnx", None, pulled, 1))


async def test_repository_module_finds_models_by_dir_name(
    adapter: MLServerAdapter, mlserver: MLServerHandle, models_root: Path, iris_joblib: Path
) -> None:
    # ModelDirRepository reads <root>/<name>/model-settings.json only: a model whose
    # dir is named otherwise is not found (MLServer's glob would have found it).
    elsewhere = models_root / "_mlserver_models" / "some-dir"
    elsewhere.mkdir()
    (elsewhere / "model.joblib").write_bytes(iris_joblib.read_bytes())
    settings = {"name": "by-settings-name", "implementation": "mlserver_sklearn.SKLearnModel"}
    (elsewhere / "model-settings.json").write_text(json.dumps(settings))
    with pytest.raises(RuntimeLoadFailed, match="Model by-settings-name not found"):
        await adapter.load(ModelFiles("by-settings-name", "sklearn", None, elsewhere, 1))
    with pytest.raises(RuntimeLoadFailed, match="not found"):
        await adapter.load(ModelFiles("../some-dir", "sklearn", None, elsewhere, 1))


async def test_stock_mlserver_with_parallel_workers(tmp_path: Path, iris_joblib: Path) -> None:
    """MLServer as it ships: its own repository, one inference worker process."""
    with run_mlserver(tmp_path, parallel_workers=1, fast_repository=False) as stock:
        runtime = MLServerAdapter(RuntimeSettings(address=stock.address, root_model_dir=tmp_path))
        pulled = _pulled(tmp_path, "iris-stock")
        (pulled / "model.joblib").write_bytes(iris_joblib.read_bytes())
        await _lay_out_and_load(runtime, ModelFiles("iris-stock", "sklearn", None, pulled, 1))
        assert _predict(stock, "iris-stock").ravel().tolist() == SPECIES
        await runtime.unload("iris-stock")
        assert await runtime.list_loaded() == []
        await runtime.close()


DOUBLE_RUNTIME = """
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class DoubleModel(MLModel):
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        doubled = NumpyCodec.decode_input(payload.inputs[0]) * 2
        return InferenceResponse(
            model_name=self.name, outputs=[NumpyCodec.encode_output("doubled", doubled)]
        )
"""


async def test_custom_python_runtime_shipped_with_the_model(
    adapter: MLServerAdapter, mlserver: MLServerHandle, models_root: Path
) -> None:
    # MLServer imports `implementation` from the settings file's dir, where the
    # layout links the model's own module.
    pulled = _pulled(models_root, "doubler")
    (pulled / "double_runtime.py").write_text(DOUBLE_RUNTIME)
    settings = {"name": "doubler", "implementation": "double_runtime.DoubleModel"}
    (pulled / "model-settings.json").write_text(json.dumps(settings))
    await _lay_out_and_load(adapter, ModelFiles("doubler", "custom", None, pulled, 1))
    assert _predict(mlserver, "doubler").tolist() == (FLOWERS * 2).tolist()


async def test_implementation_from_the_model_key(
    adapter: MLServerAdapter, mlserver: MLServerHandle, models_root: Path, iris_joblib: Path
) -> None:
    pulled = _pulled(models_root, "iris-by-key")
    (pulled / "model.joblib").write_bytes(iris_joblib.read_bytes())
    key = {"model_type": {"name": "custom", "implementation": "mlserver_sklearn.SKLearnModel"}}
    model = ModelFiles("iris-by-key", "custom", None, pulled, 1, model_key=key)
    await _lay_out_and_load(adapter, model)
    assert _predict(mlserver, "iris-by-key").ravel().tolist() == SPECIES
