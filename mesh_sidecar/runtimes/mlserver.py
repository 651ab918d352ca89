"""The `mlserver` runtime: drives Seldon MLServer over its KServe V2 gRPC port.

MLServer serves models from `ROOT_MODEL_DIR/_mlserver_models` (its
`MLSERVER_MODELS_DIR`), one dir per model id holding a `model-settings.json`
whose `name` is the id. The sidecar lays a model out there
(`mlserver_layout.plan_mlserver_layout`), then asks MLServer to load it by name
with RepositoryModelLoad.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from tritonclient.grpc import aio as triton_aio
from tritonclient.utils import InferenceServerException

from mesh_sidecar.errors import RuntimeLoadFailed, SidecarError, Unavailable
from mesh_sidecar.runtimes.base import (
    KSERVE_V2_METHOD_INFOS,
    LoadResult,
    ModelFiles,
    RuntimeAdapter,
    RuntimeInfo,
    RuntimeSettings,
)
from mesh_sidecar.runtimes.layout import LayoutPlan
from mesh_sidecar.runtimes.mlserver_layout import plan_mlserver_layout

T = TypeVar("T")

#: How MLServer's repository index names a loaded model's state.
READY_STATES = frozenset({"READY", "State.READY"})
# MLServer answers an unload of a model it does not know with NOT_FOUND (older
# versions: INVALID_ARGUMENT); either way the model is not loaded.
_NOT_LOADED = frozenset({"StatusCode.NOT_FOUND", "StatusCode.INVALID_ARGUMENT"})
_UNREACHABLE = frozenset({"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"})


class MLServerAdapter(RuntimeAdapter):
    """Loads and unloads models in MLServer through its repository API."""

    name = "mlserver"
    repository_dir = "_mlserver_models"

    def __init__(self, settings: RuntimeSettings) -> None:
        super().__init__(settings)
        self._client: triton_aio.InferenceServerClient | None = None

    @property
    def client(self) -> triton_aio.InferenceServerClient:
        """The V2 gRPC client, created on first use (inside the running event loop)."""
        if self._client is None:
            self._client = triton_aio.InferenceServerClient(self.settings.address)
        return self._client

    async def is_ready(self) -> bool:
        try:
            return bool(await self.client.is_server_ready())
        except InferenceServerException:
            return False

    async def describe(self) -> RuntimeInfo:
        metadata = await _call("read the server metadata", self.client.get_server_metadata())
        return RuntimeInfo(version=metadata.version, method_infos=KSERVE_V2_METHOD_INFOS)

    async def list_loaded(self) -> list[str]:
        index = await _call(
            "read the model repository index", self.client.get_model_repository_index()
        )
        return sorted({m.name for m in index.models if m.state in READY_STATES})

    def plan_layout(self, model: ModelFiles) -> LayoutPlan:
        target = self.repository_path(model.model_id)
        assert target is not None  # repository_dir is set
        return plan_mlserver_layout(model, target)

    async def load(self, model: ModelFiles) -> LoadResult:
        try:
            await self.client.load_model(model.model_id)
        except InferenceServerException as exc:
            if exc.status() in _UNREACHABLE:
                raise Unavailable(f"MLServer cannot be reached: {exc.message()}") from exc
            raise RuntimeLoadFailed(
                f"MLServer could not load model {model.model_id!r}: {exc.message()}"
            ) from exc
        return LoadResult()

    async def unload(self, model_id: str) -> None:
        try:
            await self.client.unload_model(model_id)
        except InferenceServerException as exc:
            if exc.status() in _NOT_LOADED:
                return
            raise _server_error(f"unload model {model_id!r}", exc) from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


async def _call(what: str, awaitable: Awaitable[T]) -> T:
    """Await a call to MLServer, turning its failure into one of our errors."""
    try:
        return await awaitable
    except InferenceServerException as exc:
        raise _server_error(what, exc) from exc


def _server_error(what: str, exc: InferenceServerException) -> SidecarError:
    if exc.status() in _UNREACHABLE:
        return Unavailable(f"MLServer cannot be reached to {what}: {exc.message()}")
    return SidecarError(f"MLServer failed to {what}: {exc.message()}")
