"""`mmesh.ModelMesh`, the external API, served from the coordinator's records."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast

import grpc

from mesh_sidecar.errors import SidecarError
from mesh_sidecar.mesh.coordinator import Coordinator
from mesh_sidecar.mesh.registry import ModelRecord, ModelSpec, ModelState, VModelRecord, check_id
from mesh_sidecar.mmesh import model_mesh_pb2 as mm_pb2
from mesh_sidecar.mmesh import model_mesh_pb2_grpc as mm_grpc

T = TypeVar("T")


def model_status(model: ModelRecord | None) -> mm_pb2.ModelStatusInfo:
    """ModelStatusInfo for a model, with one copy info per copy and per recent failure."""
    if model is None:
        return mm_pb2.ModelStatusInfo(status=mm_pb2.ModelStatusInfo.NOT_FOUND)
    now = time.monotonic()
    state = model.state(now)
    info = mm_pb2.ModelStatusInfo(status=cast(Any, int(state)))
    for copy in model.copies.values():
        info.modelCopyInfos.add(
            location=copy.instance, copyStatus=int(copy.state), time=copy.since_ms
        )
    for failure in model.recent_failures(now):
        if failure.instance not in model.copies:
            info.modelCopyInfos.add(
                location=failure.instance,
                copyStatus=mm_pb2.ModelStatusInfo.LOADING_FAILED,
                time=failure.at_ms,
            )
    if state is ModelState.LOADING_FAILED:
        info.errors.extend(f.message for f in model.failures)
    return info


def _spec(info: mm_pb2.ModelInfo) -> ModelSpec:
    return ModelSpec(type=info.type, path=info.path, key=info.key)


class ModelMeshServicer(mm_grpc.ModelMeshServicer):
    """Answers mmesh.ModelMesh from a Coordinator; errors carry ModelMesh's codes."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.mesh = coordinator

    async def _call(self, context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[T]]) -> T:
        try:
            return await work()
        except SidecarError as exc:
            await _abort(context, exc)

    async def registerModel(
        self, request: mm_pb2.RegisterModelRequest, context: grpc.aio.ServicerContext
    ) -> mm_pb2.ModelStatusInfo:
        async def work() -> mm_pb2.ModelStatusInfo:
            model = await self.mesh.register(
                request.modelId,
                _spec(request.modelInfo),
                load_now=request.loadNow,
                sync=request.sync,
                last_used_ms=request.lastUsedTime,
            )
            return model_status(model)

        return await self._call(context, work)

    async def unregisterModel(
        self, request: mm_pb2.UnregisterModelRequest, context: grpc.aio.ServicerContext
    ) -> mm_pb2.UnregisterModelResponse:
        async def work() -> mm_pb2.UnregisterModelResponse:
            self.mesh.unregister(request.modelId)
            return mm_pb2.UnregisterModelResponse()

        return await self._call(context, work)

    async def getModelStatus(
        self, request: mm_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> mm_pb2.ModelStatusInfo:
        async def work() -> mm_pb2.ModelStatusInfo:
            check_id(request.modelId, "modelId")
            return model_status(self.mesh.model(request.modelId))

        return await self._call(context, work)

    async def ensureLoaded(
        self, request: mm_pb2.EnsureLoadedRequest, context: grpc.aio.ServicerContext
    ) -> mm_pb2.ModelStatusInfo:
        async def work() -> mm_pb2.ModelStatusInfo:
            model = await self.mesh.ensure_loaded(
                request.modelId, request.lastUsedTime, request.sync
            )
            return model_status(model)

        return await self._call(context, work)

    async def setVModel(
        self, request: mm_pb2.SetVModelRequest, context: grpc.aio.ServicerContext
    ) -> mm_pb2.VModelStatusInfo:
        async def work() -> mm_pb2.VModelStatusInfo:
            has_info = request.HasField("modelInfo") and request.modelInfo != mm_pb2.ModelInfo()
            vm = await self.mesh.set_vmodel(
                request.vModelId,
                request.targetModelId,
                owner=request.owner,
                spec=_spec(request.modelInfo) if has_info else None,
                update_only=request.updateOnly,
                auto_delete=request.autoDeleteTargetModel,
                load_now=request.loadNow,
                force=request.force,
                sync=request.sync,
                expected_target=request.expectedTargetModelId,
            )
            return self._vmodel_status(vm)

        return await self._call(context, work)

    async def deleteVModel(
        self, request: mm_pb2.DeleteVModelRequest, context: grpc.aio.ServicerContext
    ) -> mm_pb2.DeleteVModelResponse:
        async def work() -> mm_pb2.DeleteVModelResponse:
            self.mesh.delete_vmodel(request.vModelId, request.owner)
            return mm_pb2.DeleteVModelResponse()

        return await self._call(context, work)

    async def getVModelStatus(
        self, request: mm_pb2.GetVModelStatusRequest, context: grpc.aio.ServicerContext
    ) -> mm_pb2.VModelStatusInfo:
        async def work() -> mm_pb2.VModelStatusInfo:
            return self._vmodel_status(self.mesh.vmodel(request.vModelId, request.owner))

        return await self._call(context, work)

    def _vmodel_status(self, vm: VModelRecord | None) -> mm_pb2.VModelStatusInfo:
        if vm is None:
            return mm_pb2.VModelStatusInfo()
        info = mm_pb2.VModelStatusInfo(
            status=cast(Any, int(vm.state())),
            activeModelId=vm.active,
            targetModelId=vm.target,
            owner=vm.owner,
        )
        info.activeModelStatus.CopyFrom(model_status(self.mesh.model(vm.active)))
        if vm.in_transition():
            target = model_status(self.mesh.model(vm.target))
            # Like ModelMesh: a target in transition is LOADING, or LOADING_FAILED once given up.
            target.status = (
                mm_pb2.ModelStatusInfo.LOADING_FAILED
                if vm.target_failed
                else mm_pb2.ModelStatusInfo.LOADING
            )
            info.targetModelStatus.CopyFrom(target)
        return info


async def _abort(context: grpc.aio.ServicerContext, exc: SidecarError) -> NoReturn:
    await context.abort(exc.code, str(exc))
    raise AssertionError("unreachable: abort raises")
