"""The `mmesh.ModelRuntime` service of the simple-string server.

This makes the server a real custom runtime: ModelMesh (or the sidecar's
`forward` runtime, the standalone puller) sends it loadModel with a local
`modelPath` and it loads the model under `modelId`, into the same store the
KServe V2 inference service reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

import mesh_sidecar
from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.mmesh import model_runtime_pb2_grpc as pb_grpc
from mesh_sidecar.simple_string.models import ModelError, ModelStore, predict_size

log = logging.getLogger(__name__)

#: ModelMesh writes the model id into field 1 of ModelInferRequest and ModelMetadataRequest.
METHOD_INFOS = {
    "inference.GRPCInferenceService/ModelInfer": [1],
    "inference.GRPCInferenceService/ModelMetadata": [1],
}


@dataclass(frozen=True)
class RuntimeLimits:
    """What the server tells ModelMesh about itself in runtimeStatus."""

    capacity_bytes: int = 1 << 30
    max_loading_concurrency: int = 8
    loading_timeout_ms: int = 30_000
    default_model_size: int = 8192
    max_concurrency: int = 0  # > 0: each model serves at most this many requests at once

    def check(self) -> None:
        """Refuse values ModelMesh would refuse (it checks these at start-up)."""
        least_capacity = max(
            2 * self.default_model_size, min(512 << 20, 10 * self.default_model_size)
        )
        problems = [
            (self.default_model_size < 8192, "the default model size must be at least 8192"),
            (self.max_loading_concurrency < 1, "the loading concurrency must be at least 1"),
            (self.loading_timeout_ms < 100, "the loading timeout must be at least 100 ms"),
            (
                self.capacity_bytes < least_capacity,
                f"the capacity must be at least {least_capacity} bytes for this default size",
            ),
            (self.max_concurrency < 0, "the per-model concurrency must not be negative"),
        ]
        for failed, sentence in problems:
            if failed:
                raise ValueError(sentence)


def _key_fields(model_key: str) -> str:
    """The top-level field names of a modelKey (never its values: they may hold secrets)."""
    try:
        parsed = json.loads(model_key) if model_key else {}
    except ValueError:
        return "(not JSON)"
    return str(sorted(parsed)) if isinstance(parsed, dict) else "(not an object)"


class SimpleStringModelRuntimeServicer(pb_grpc.ModelRuntimeServicer):
    """loadModel/unloadModel/sizes/runtimeStatus over a `ModelStore`."""

    def __init__(self, store: ModelStore, limits: RuntimeLimits) -> None:
        self.store = store
        self.limits = limits

    async def loadModel(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not request.modelPath:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"model {request.modelId!r}: modelPath is empty"
            )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "loadModel %r type %r path %s modelKey fields %s",
                request.modelId,
                request.modelType,
                request.modelPath,
                _key_fields(request.modelKey),
            )
        try:
            size = await self.store.load(request.modelId, Path(request.modelPath))
        except ModelError as exc:
            await context.abort(exc.code, f"failed to load {request.modelId!r}: {exc.message}")
        return pb.LoadModelResponse(sizeInBytes=size, maxConcurrency=self.limits.max_concurrency)

    async def unloadModel(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            await self.store.unload(request.modelId)
        except ModelError as exc:
            await context.abort(exc.code, exc.message)
        return pb.UnloadModelResponse()

    async def modelSize(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            size = self.store.size(request.modelId)
        except ModelError as exc:
            await context.abort(exc.code, exc.message)
        return pb.ModelSizeResponse(sizeInBytes=size)

    async def predictModelSize(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        size = (
            await asyncio.to_thread(predict_size, Path(request.modelPath))
            if request.modelPath
            else None
        )
        return pb.PredictModelSizeResponse(sizeInBytes=size or self.limits.default_model_size)

    async def runtimeStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        # ModelMesh asks for the status only while it starts; whatever is loaded
        # then belongs to a previous ModelMesh (or sidecar) and must go first.
        purged = self.store.purge()
        if purged:
            log.info("runtimeStatus: purged %d models before answering READY", purged)
        limits = self.limits
        return pb.RuntimeStatusResponse(
            status=pb.RuntimeStatusResponse.READY,
            capacityInBytes=limits.capacity_bytes,
            maxLoadingConcurrency=limits.max_loading_concurrency,
            modelLoadingTimeoutMs=limits.loading_timeout_ms,
            defaultModelSizeInBytes=limits.default_model_size,
            runtimeVersion=mesh_sidecar.__version__,
            methodInfos={
                name: pb.RuntimeStatusResponse.MethodInfo(idInjectionPath=path)
                for name, path in METHOD_INFOS.items()
            },
            limitModelConcurrency=limits.max_concurrency > 0,
            allowAnyMethod=False,
        )
