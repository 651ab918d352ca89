"""The `simple-string` runtime: drives the simple-string server over KServe V2 gRPC.

The server loads the pulled files where they are (no repository layout): the
load request names the model by its id and passes the pulled path in the
`path` parameter. Messages and stub come from tritonclient's generated KServe
V2 modules; the stub is used directly because tritonclient's client cannot
send the `path` parameter nor the index's `ready` filter.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, ClassVar

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from mesh_sidecar.errors import RuntimeLoadFailed, Unavailable
from mesh_sidecar.runtimes.base import (
    KSERVE_V2_METHOD_INFOS,
    LoadResult,
    ModelFiles,
    RuntimeAdapter,
    RuntimeInfo,
    RuntimeSettings,
    model_server_channel,
)
from mesh_sidecar.runtimes.rpc_errors import error_from_rpc, rpc_code, rpc_details

#: Deadline of the quick calls (readiness, metadata, index); loads have none:
#: ModelMesh enforces its own loading timeout by cancelling the call.
PROBE_TIMEOUT_SECONDS = 5.0


class SimpleStringAdapter(RuntimeAdapter):
    """Runtime adapter for `mesh-sidecar simple-string-server`."""

    name: ClassVar[str] = "simple-string"

    def __init__(self, settings: RuntimeSettings) -> None:
        super().__init__(settings)
        self._channel: Any = None
        self._stub: Any = None

    def _client(self) -> Any:
        # grpc.aio channels belong to the running event loop: create on first use.
        if self._stub is None:
            self._channel = model_server_channel(self.settings.address)
            self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        return self._stub

    async def _connected(self, context: str) -> None:
        """Wait briefly for a connection: a server that just restarted is reached as soon as
        it listens, instead of failing the call while the channel is between attempts."""
        self._client()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await self._channel.channel_ready()
        except TimeoutError:
            raise Unavailable(
                f"{context}: the simple-string server at {self.settings.address} is unreachable"
            ) from None

    async def is_ready(self) -> bool:
        """ServerReady; False while the server cannot be reached."""
        try:
            response = await self._client().ServerReady(
                service_pb2.ServerReadyRequest(), timeout=PROBE_TIMEOUT_SECONDS
            )
        except grpc.RpcError:
            return False
        return bool(response.ready)

    async def describe(self) -> RuntimeInfo:
        """The server's version (ServerMetadata) and the KServe V2 method infos."""
        try:
            meta = await self._client().ServerMetadata(
                service_pb2.ServerMetadataRequest(), timeout=PROBE_TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, "server metadata", self.settings.address) from None
        return RuntimeInfo(version=meta.version, method_infos=KSERVE_V2_METHOD_INFOS)

    async def list_loaded(self) -> list[str]:
        """Names of the models the server has loaded (RepositoryIndex, ready only)."""
        try:
            index = await self._client().RepositoryIndex(
                service_pb2.RepositoryIndexRequest(ready=True), timeout=PROBE_TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, "repository index", self.settings.address) from None
        return [m.name for m in index.models if m.state == "READY"]

    async def load(self, model: ModelFiles) -> LoadResult:
        """RepositoryModelLoad of the pulled path under the model id."""
        request = service_pb2.RepositoryModelLoadRequest(model_name=model.model_id)
        request.parameters["path"].string_param = str(model.path)
        await self._connected(f"load of model {model.model_id!r}")
        try:
            await self._client().RepositoryModelLoad(request)
        except grpc.RpcError as exc:
            if rpc_code(exc) == grpc.StatusCode.UNAVAILABLE:
                raise error_from_rpc(
                    exc, f"load of model {model.model_id!r}", self.settings.address
                ) from None
            # The server tried and failed (no model.txt, too big, unreadable): INTERNAL
            # with the server's own reason, whatever code it answered.
            raise RuntimeLoadFailed(
                f"simple-string server failed to load model {model.model_id!r}: {rpc_details(exc)}"
            ) from None
        return LoadResult()

    async def unload(self, model_id: str) -> None:
        """RepositoryModelUnload; a model the server does not have is already unloaded."""
        request = service_pb2.RepositoryModelUnloadRequest(model_name=model_id)
        try:
            await self._client().RepositoryModelUnload(request)
        except grpc.RpcError as exc:
            if rpc_code(exc) == grpc.StatusCode.NOT_FOUND:
                return
            raise error_from_rpc(
                exc, f"unload of model {model_id!r}", self.settings.address
            ) from None

    async def close(self) -> None:
        """Close the channel to the server."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None

    @classmethod
    def server_command(cls, port: int, root_model_dir: Path) -> list[str] | None:
        """`mesh-sidecar simple-string-server --port PORT` with this interpreter."""
        return [
            sys.executable,
            "-m",
            "mesh_sidecar.adapter.cli",
            "simple-string-server",
            "--port",
            str(port),
        ]
