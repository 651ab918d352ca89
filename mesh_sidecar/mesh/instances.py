"""One serving instance as the coordinator sees it: a sidecar and its model server.

The coordinator talks to the sidecar only through `mmesh.ModelRuntime` (the
same calls ModelMesh makes) and sends inference straight to the model server
as raw bytes.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc

from mesh_sidecar.errors import SidecarError, Unavailable
from mesh_sidecar.mesh.registry import ModelSpec
from mesh_sidecar.mmesh import model_runtime_pb2 as rt_pb2
from mesh_sidecar.mmesh import model_runtime_pb2_grpc as rt_grpc

#: ModelMesh's deadline for predictModelSize.
PREDICT_SIZE_TIMEOUT_S = 0.5
#: ModelMesh's deadline for modelSize.
MODEL_SIZE_TIMEOUT_S = 30.0
# Large enough for big inference payloads; gRPC's 4 MiB default is too small.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 512 * 1024 * 1024),
    ("grpc.max_receive_message_length", 512 * 1024 * 1024),
    # A connection that goes idle would look like a lost one (see connection_lost).
    ("grpc.client_idle_timeout_ms", 2**31 - 1),
]


class RuntimeCallFailed(SidecarError):
    """A ModelRuntime call failed; carries the code the sidecar answered."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RuntimeLimits:
    """What a sidecar's READY runtimeStatus says about its instance."""

    capacity_bytes: int
    default_model_size: int
    max_loading_concurrency: int
    loading_timeout_ms: int
    method_infos: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    allow_any_method: bool = False
    runtime_version: str = ""

    @classmethod
    def from_status(cls, status: rt_pb2.RuntimeStatusResponse) -> RuntimeLimits:
        return cls(
            capacity_bytes=status.capacityInBytes,
            default_model_size=max(8192, status.defaultModelSizeInBytes),
            max_loading_concurrency=max(1, status.maxLoadingConcurrency),
            loading_timeout_ms=max(100, status.modelLoadingTimeoutMs),
            method_infos={
                name: tuple(info.idInjectionPath) for name, info in status.methodInfos.items()
            },
            allow_any_method=status.allowAnyMethod,
            runtime_version=status.runtimeVersion,
        )


class LoadSlots:
    """At most `limit` loads at once; a load a waiting request needs goes first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._urgent: collections.deque[asyncio.Future[None]] = collections.deque()
        self._background: collections.deque[asyncio.Future[None]] = collections.deque()

    def waiting(self) -> int:
        return sum(1 for f in (*self._urgent, *self._background) if not f.done())

    def promote(self, ticket: asyncio.Future[None]) -> None:
        """Move a waiting background load to the front queue."""
        if ticket in self._background and not ticket.done():
            self._background.remove(ticket)
            self._urgent.append(ticket)

    def _grant_next(self) -> None:
        while self.active < self.limit:
            queue = self._urgent or self._background
            if not queue:
                return
            ticket = queue.popleft()
            if ticket.done():  # cancelled while waiting
                continue
            self.active += 1
            ticket.set_result(None)

    @asynccontextmanager
    async def slot(self, ticket: asyncio.Future[None], urgent: bool) -> AsyncIterator[None]:
        """Hold one loading slot; `ticket` is a fresh future the caller may promote."""
        (self._urgent if urgent else self._background).append(ticket)
        self._grant_next()
        try:
            await ticket
        except asyncio.CancelledError:
            if ticket.done() and not ticket.cancelled():
                self.active -= 1  # granted just as we were cancelled
                self._grant_next()
            raise
        try:
            yield
        finally:
            self.active -= 1
            self._grant_next()


async def _wait_until_lost(channel: grpc.aio.Channel) -> None:
    """Return when a channel that was connected stops being connected."""
    state = channel.get_state(try_to_connect=True)
    while True:
        await channel.wait_for_state_change(state)
        previous, state = state, channel.get_state(try_to_connect=True)
        if previous is grpc.ChannelConnectivity.READY and state is not previous:
            return


def _failure(exc: grpc.aio.AioRpcError, what: str) -> RuntimeCallFailed:
    code = exc.code()
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return RuntimeCallFailed(f"{what} timed out", code)
    return RuntimeCallFailed(f"{what} failed: {exc.details() or code.name}", code)


class Instance:
    """A sidecar (management) and its model server (data plane), addressed by host:port."""

    def __init__(self, name: str, adapter_address: str, runtime_address: str) -> None:
        self.name = name
        self.adapter_address = adapter_address
        self.runtime_address = runtime_address
        self.limits: RuntimeLimits | None = None
        self.healthy = False
        self.slots = LoadSlots(1)
        self.mgmt_channel = grpc.aio.insecure_channel(adapter_address, options=CHANNEL_OPTIONS)
        self._runtime = rt_grpc.ModelRuntimeStub(self.mgmt_channel)
        self.data_channel = grpc.aio.insecure_channel(runtime_address, options=CHANNEL_OPTIONS)
        self._forwarders: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}

    def __repr__(self) -> str:
        return f"Instance({self.name}, {self.adapter_address}, {self.runtime_address})"

    async def status(self, wait_s: float) -> rt_pb2.RuntimeStatusResponse:
        """One runtimeStatus call."""
        try:
            response: rt_pb2.RuntimeStatusResponse = await self._runtime.runtimeStatus(
                rt_pb2.RuntimeStatusRequest(), timeout=wait_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc, f"runtimeStatus of {self.name}") from exc
        return response

    async def handshake(self, wait_s: float, interval: float = 0.2) -> RuntimeLimits:
        """Poll runtimeStatus until READY (STARTING or UNAVAILABLE: keep waiting)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        last = "no answer"
        while loop.time() < deadline:
            try:
                status = await self.status(wait_s=max(0.1, min(2.0, deadline - loop.time())))
            except RuntimeCallFailed as exc:
                last = str(exc)
            else:
                if status.status == rt_pb2.RuntimeStatusResponse.READY:
                    limits = RuntimeLimits.from_status(status)
                    self.limits = limits
                    self.slots.limit = limits.max_loading_concurrency
                    self.healthy = True
                    return limits
                if status.status == rt_pb2.RuntimeStatusResponse.FAILING:
                    raise Unavailable(f"instance {self.name} reports FAILING")
                last = "STARTING"
            await asyncio.sleep(interval)
        raise Unavailable(f"instance {self.name} not READY after {wait_s:.0f}s ({last})")

    async def predict_size(self, model_id: str, spec: ModelSpec) -> int | None:
        """The sidecar's size estimate before a load; None when it has none."""
        request = rt_pb2.PredictModelSizeRequest(
            modelId=model_id, modelType=spec.type, modelPath=spec.path, modelKey=spec.key
        )
        try:
            response = await self._runtime.predictModelSize(request, timeout=PREDICT_SIZE_TIMEOUT_S)
        except grpc.aio.AioRpcError:
            return None  # UNIMPLEMENTED or slow: ModelMesh falls back to the default size
        size: int = response.sizeInBytes
        return size or None

    async def load(self, model_id: str, spec: ModelSpec, wait_s: float) -> int:
        """loadModel, cancelled after `wait_s` seconds; the model's size in bytes."""
        request = rt_pb2.LoadModelRequest(
            modelId=model_id, modelType=spec.type, modelPath=spec.path, modelKey=spec.key
        )
        try:
            response = await self._runtime.loadModel(request, timeout=wait_s)
            size: int = response.sizeInBytes
            if size == 0:
                answer = await self._runtime.modelSize(
                    rt_pb2.ModelSizeRequest(modelId=model_id), timeout=MODEL_SIZE_TIMEOUT_S
                )
                size = answer.sizeInBytes
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc, f"loading {model_id} on {self.name}") from exc
        return size

    async def unload(self, model_id: str, wait_s: float = 30.0) -> None:
        """unloadModel; NOT_FOUND counts as unloaded."""
        try:
            request = rt_pb2.UnloadModelRequest(modelId=model_id)
            await self._runtime.unloadModel(request, timeout=wait_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:
                raise _failure(exc, f"unloading {model_id} from {self.name}") from exc

    async def connection_lost(self) -> str:
        """Wait until the connection to the sidecar or to the model server drops; which one.

        A sidecar that restarts purges its models, and a model server that restarts
        forgets them, so either means the copies there are gone, even when the
        process is back before the next health probe.
        """
        channels = {"sidecar": self.mgmt_channel, "model server": self.data_channel}
        watchers = {
            asyncio.ensure_future(_wait_until_lost(channel)): role
            for role, channel in channels.items()
        }
        try:
            done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for watcher in watchers:
                watcher.cancel()
        return watchers[done.pop()]

    def forwarder(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
        """A raw-bytes unary call of `method` ("/pkg.Service/Method") on the model server."""
        call = self._forwarders.get(method)
        if call is None:
            # No (de)serializers: bytes in, bytes out. Registering the method
            # with the channel once saves gRPC work on every call.
            call = self.data_channel.unary_unary(method, _registered_method=True)
            self._forwarders[method] = call
        return call

    async def close(self) -> None:
        await self.mgmt_channel.close()
        await self.data_channel.close()
