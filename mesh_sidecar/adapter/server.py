"""The mmesh.ModelRuntime gRPC service, and the one place errors become gRPC status."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2

from mesh_sidecar.adapter.config import Settings
from mesh_sidecar.adapter.models import LoadRequest, ModelManager
from mesh_sidecar.errors import SidecarError
from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.mmesh import model_runtime_pb2_grpc as pb_grpc
from mesh_sidecar.redact import redact
from mesh_sidecar.runtimes.base import RuntimeAdapter, RuntimeInfo

log = logging.getLogger("mesh_sidecar.server")

Status = pb.RuntimeStatusResponse
#: How often the sidecar checks that the model server still has the models it loaded.
RESTORE_CHECK_SECONDS = 2.0
T = TypeVar("T")


class ReadinessTracker:
    """STARTING until the model server is ready and stale models are purged, then READY."""

    def __init__(
        self, runtime: RuntimeAdapter, models: ModelManager, health: Any | None = None
    ) -> None:
        self.runtime = runtime
        self.models = models
        self.health = health
        self.info: RuntimeInfo | None = None
        self.ready = asyncio.Event()

    async def run(self, interval: float = 0.25) -> None:
        """Wait for the server, purge, describe; retry on failure until it works."""
        while True:
            try:
                await self.runtime.wait_ready(interval)
                await self.models.purge()
                self.info = await self.runtime.describe()
            except SidecarError as exc:
                log.warning(
                    "model server not ready yet",
                    extra={"event": "startup", "reason": redact(str(exc))},
                )
                await asyncio.sleep(interval)
                continue
            break
        self.ready.set()
        if self.health is not None:
            await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
            await self.health.set("mmesh.ModelRuntime", health_pb2.HealthCheckResponse.SERVING)
        log.info("runtime ready", extra={"event": "ready", "runtime_version": self.info.version})
        await self.watch()

    async def watch(self, interval: float = RESTORE_CHECK_SECONDS) -> None:
        """After READY: bring back the models a restarted model server lost."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.models.restore_lost()
            except SidecarError as exc:  # the server is down right now: check again later
                log.debug("model server not reachable", extra={"reason": redact(str(exc))})


class ModelRuntimeServicer(pb_grpc.ModelRuntimeServicer):
    """Serves ModelMesh's calls by delegating to the ModelManager."""

    def __init__(self, settings: Settings, models: ModelManager, readiness: ReadinessTracker):
        self.settings = settings
        self.models = models
        self.readiness = readiness

    @asynccontextmanager
    async def _call(
        self, event: str, model_id: str, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[dict[str, Any]]:
        """Logs the call and turns every failure into a gRPC status, once."""
        started = time.monotonic()
        fields: dict[str, Any] = {"event": event, "model_id": model_id}
        code = grpc.StatusCode.OK
        message = ""
        try:
            yield fields
        except SidecarError as exc:
            code, message = exc.code, redact(str(exc))
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            log.exception("unexpected failure", extra={"event": event, "model_id": model_id})
            code = grpc.StatusCode.INTERNAL
            message = redact(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            fields.update(
                duration_ms=round((time.monotonic() - started) * 1000, 3),
                outcome="ok" if code == grpc.StatusCode.OK else "error",
                code=code.name,
            )
            if message:
                fields["error"] = message
            if event in ("load", "unload"):
                counter = (
                    self.models.metrics.loads if event == "load" else self.models.metrics.unloads
                )
                counter.labels(code.name).inc()
            log.log(
                logging.INFO if code == grpc.StatusCode.OK else logging.WARNING, event, extra=fields
            )
        if code != grpc.StatusCode.OK:
            shown = model_id if len(model_id) <= 128 else model_id[:64] + "..."
            await context.abort(code, f"model {shown!r}: {message}")

    async def loadModel(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with self._call("load", request.modelId, context) as fields:
            model = await self.models.load(_load_request(request))
            fields["size_bytes"] = model.size_bytes
            return pb.LoadModelResponse(
                sizeInBytes=model.size_bytes, maxConcurrency=model.max_concurrency
            )

    async def unloadModel(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with self._call("unload", request.modelId, context):
            await self.models.unload(request.modelId)
            return pb.UnloadModelResponse()

    async def modelSize(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with self._call("size", request.modelId, context):
            return pb.ModelSizeResponse(sizeInBytes=await self.models.size(request.modelId))

    async def predictModelSize(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async with self._call("predict_size", request.modelId, context):
            size = await self.models.predict_size(_load_request(request))
            return pb.PredictModelSizeResponse(sizeInBytes=size)

    async def runtimeStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        info = self.readiness.info
        if not self.readiness.ready.is_set() or info is None:
            return Status(status=Status.STARTING)
        s = self.settings
        limit = s.limit_per_model_concurrency > 0
        return Status(
            status=Status.READY,
            capacityInBytes=_pick(info.capacity_bytes, s.capacity_bytes),
            maxLoadingConcurrency=_pick(info.max_loading_concurrency, s.loading_concurrency),
            modelLoadingTimeoutMs=_pick(info.loading_timeout_ms, s.loadtime_timeout),
            defaultModelSizeInBytes=_pick(info.default_model_size, s.default_modelsize),
            runtimeVersion=info.version or s.runtime_version,
            methodInfos={
                name: Status.MethodInfo(idInjectionPath=list(path))
                for name, path in info.method_infos.items()
            },
            limitModelConcurrency=_pick(info.limit_model_concurrency, limit),
            allowAnyMethod=info.allow_any_method,
        )


def _pick(from_runtime: T | None, configured: T) -> T:
    return configured if from_runtime is None else from_runtime


def _load_request(request: Any) -> LoadRequest:
    return LoadRequest(
        model_id=request.modelId,
        model_type=request.modelType,
        model_path=request.modelPath,
        model_key=request.modelKey,
    )
