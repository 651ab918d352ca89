"""The `forward` runtime: the standalone puller in front of a custom model server.

A custom ServingRuntime without a built-in adapter runs a model server that
serves `mmesh.ModelRuntime` itself on RUNTIME_PORT. The sidecar pulls the
model, and this adapter forwards the load (rewritten for the local files),
unload, size and status calls to that server. Its status codes and messages
reach ModelMesh unchanged.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import grpc

from mesh_sidecar.errors import FailedPrecondition, Unavailable
from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.mmesh import model_runtime_pb2_grpc as pb_grpc
from mesh_sidecar.runtimes.base import (
    LoadResult,
    ModelFiles,
    RuntimeAdapter,
    RuntimeInfo,
    RuntimeSettings,
    model_server_channel,
)
from mesh_sidecar.runtimes.rpc_errors import error_from_rpc, rpc_code

#: Deadline of runtimeStatus and modelSize (ModelMesh gives modelSize 30 s);
#: loads and unloads have none: ModelMesh cancels a load itself when it times out.
STATUS_TIMEOUT_SECONDS = 5.0
SIZE_TIMEOUT_SECONDS = 30.0


def runtime_info(status: Any) -> RuntimeInfo:
    """A READY RuntimeStatusResponse as RuntimeInfo; zeros mean "not set" in proto3,
    so they leave the sidecar's configured values in place."""
    return RuntimeInfo(
        version=status.runtimeVersion,
        method_infos={
            name: list(info.idInjectionPath) for name, info in status.methodInfos.items()
        },
        allow_any_method=status.allowAnyMethod,
        capacity_bytes=status.capacityInBytes or None,
        max_loading_concurrency=status.maxLoadingConcurrency or None,
        loading_timeout_ms=status.modelLoadingTimeoutMs or None,
        default_model_size=status.defaultModelSizeInBytes or None,
        limit_model_concurrency=status.limitModelConcurrency,
    )


class ForwardAdapter(RuntimeAdapter):
    """Forwards ModelRuntime calls to a custom model server that serves them itself.

    The server purges whatever it had loaded before it answers READY (the
    ModelRuntime contract), so `list_loaded` has nothing to report. Every
    runtimeStatus call may purge the server: the framework calls `is_ready` and
    `describe` only while it starts.
    """

    name: ClassVar[str] = "forward"
    # mmesh.ModelRuntime has no call that lists loaded models.
    lists_loaded_models: ClassVar[bool] = False

    def __init__(self, settings: RuntimeSettings) -> None:
        super().__init__(settings)
        self._channel: Any = None
        self._stub: Any = None

    def _client(self) -> Any:
        # grpc.aio channels belong to the running event loop: create on first use.
        if self._stub is None:
            self._channel = model_server_channel(self.settings.address)
            self._stub = pb_grpc.ModelRuntimeStub(self._channel)
        return self._stub

    async def _status(self) -> Any:
        return await self._client().runtimeStatus(
            pb.RuntimeStatusRequest(), timeout=STATUS_TIMEOUT_SECONDS
        )

    async def is_ready(self) -> bool:
        """runtimeStatus answers READY. False while STARTING or unreachable;
        FAILING is final and raises FailedPrecondition."""
        try:
            status = await self._status()
        except grpc.RpcError:
            return False
        if status.status == pb.RuntimeStatusResponse.FAILING:
            raise FailedPrecondition(f"the model server at {self.settings.address} reports FAILING")
        return bool(status.status == pb.RuntimeStatusResponse.READY)

    async def describe(self) -> RuntimeInfo:
        """RuntimeInfo from the server's READY runtimeStatus."""
        try:
            status = await self._status()
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, "runtimeStatus", self.settings.address) from None
        if status.status != pb.RuntimeStatusResponse.READY:
            state = pb.RuntimeStatusResponse.Status.Name(status.status)
            raise Unavailable(f"the model server at {self.settings.address} is {state}")
        return runtime_info(status)

    async def list_loaded(self) -> list[str]:
        """Nothing: the server purged itself before it answered READY."""
        return []

    async def load(self, model: ModelFiles) -> LoadResult:
        """loadModel with the local path and the rewritten modelKey; the server's answer."""
        request = pb.LoadModelRequest(
            modelId=model.model_id,
            modelType=model.request_model_type,
            modelPath=str(model.path),
            modelKey=json.dumps(model.model_key),
        )
        try:
            response = await self._client().loadModel(request)
        except grpc.RpcError as exc:
            raise error_from_rpc(
                exc, f"loadModel {model.model_id!r}", self.settings.address
            ) from None
        return LoadResult(
            size_bytes=response.sizeInBytes or None,
            max_concurrency=response.maxConcurrency or None,
        )

    async def unload(self, model_id: str) -> None:
        """unloadModel; NOT_FOUND from the server counts as unloaded."""
        try:
            await self._client().unloadModel(pb.UnloadModelRequest(modelId=model_id))
        except grpc.RpcError as exc:
            if rpc_code(exc) == grpc.StatusCode.NOT_FOUND:
                return
            raise error_from_rpc(exc, f"unloadModel {model_id!r}", self.settings.address) from None

    async def model_size(self, model_id: str) -> int | None:
        """modelSize from the server; None (disk size x multiplier) if it answers 0."""
        try:
            response = await self._client().modelSize(
                pb.ModelSizeRequest(modelId=model_id), timeout=SIZE_TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, f"modelSize {model_id!r}", self.settings.address) from None
        size: int = response.sizeInBytes
        return size or None

    async def close(self) -> None:
        """Close the channel to the server."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None
