"""The inference proxy: any unary gRPC method, routed by the mm-model-id header, as raw bytes.

The request is never decoded: the model id is written at the method's
idInjectionPath at the wire level (wire.py) and the bytes go to a model
server holding a copy, loaded just in time on a cache miss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import grpc

from mesh_sidecar.errors import InvalidRequest, SidecarError
from mesh_sidecar.mesh.coordinator import Coordinator
from mesh_sidecar.mesh.wire import inject_model_id

log = logging.getLogger("mesh_sidecar.mesh")

MODEL_ID_HEADER = "mm-model-id"
VMODEL_ID_HEADER = "mm-vmodel-id"
#: Every method of this service is routed, whatever the runtimes list.
KSERVE_V2_SERVICE = "inference.GRPCInferenceService"
# Retries after UNAVAILABLE (instance gone) or NOT_FOUND (the server lost its copy).
MAX_ATTEMPTS = 3
# Headers gRPC sets itself and must not be copied onto the outgoing call.
_TRANSPORT_HEADERS = ("user-agent", "te", "content-type")
_DROPPED_PREFIXES = ("mm-", ":", "grpc-")

Metadata = Sequence[tuple[str, str | bytes]]


def _header_value(value: str | bytes, key: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"{key} header is not valid UTF-8") from exc


def read_target(metadata: Metadata) -> tuple[str, bool]:
    """(id, is_vmodel) from mm-model-id / mm-vmodel-id (or their -bin forms).

    Neither, or both, is INVALID_ARGUMENT.
    """
    model_ids: list[str] = []
    vmodel_ids: list[str] = []
    for key, value in metadata:
        name = key.lower()
        if name in (MODEL_ID_HEADER, MODEL_ID_HEADER + "-bin"):
            model_ids.append(_header_value(value, name))
        elif name in (VMODEL_ID_HEADER, VMODEL_ID_HEADER + "-bin"):
            vmodel_ids.append(_header_value(value, name))
    if model_ids and vmodel_ids:
        raise InvalidRequest("must include only one of model id and vmodel id")
    if not model_ids and not vmodel_ids:
        raise InvalidRequest(f"must include {MODEL_ID_HEADER} or {VMODEL_ID_HEADER} header")
    ids = model_ids or vmodel_ids
    if not ids[0]:
        raise InvalidRequest("must provide non-empty model id")
    return ids[0], bool(vmodel_ids)


def forward_metadata(metadata: Metadata, model_id: str) -> tuple[tuple[str, str | bytes], ...]:
    """The caller's headers minus every mm-* header, plus mm-model-id with the concrete id."""
    kept = [
        (key, value)
        for key, value in metadata
        if not key.lower().startswith(("mm-", ":", "grpc-"))
        and key.lower() not in _TRANSPORT_HEADERS
    ]
    if model_id.isascii() and model_id.isprintable():
        kept.append((MODEL_ID_HEADER, model_id))
    else:
        kept.append((MODEL_ID_HEADER + "-bin", model_id.encode()))
    return tuple(kept)


class InferenceProxy(grpc.GenericRpcHandler):
    """Serves every method the instances accept (UNIMPLEMENTED for the rest)."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.mesh = coordinator
        # gRPC asks for a handler on every call: build one per method, once.
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        # injection_path per method, for the instances' limits of `_paths_generation`.
        self._paths: dict[str, tuple[int, ...] | None] = {}
        self._paths_generation = -1

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            if method.startswith("/mmesh.ModelMesh/"):
                return None
            handler = grpc.unary_unary_rpc_method_handler(self._handler(method))
            self._handlers[method] = handler
        return handler

    def _handler(
        self, method: str
    ) -> Callable[[bytes, grpc.aio.ServicerContext], Coroutine[Any, Any, bytes]]:
        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                return await self.forward(method, request, context)
            except SidecarError as exc:
                await context.abort(exc.code, str(exc))
                raise AssertionError("unreachable: abort raises") from exc

        return handle

    def injection_path(self, method: str) -> tuple[int, ...] | None:
        """Where the id goes for `method` ("/pkg.Service/Method"); None when not allowed."""
        if self._paths_generation != self.mesh.limits_generation:
            self._paths.clear()
            self._paths_generation = self.mesh.limits_generation
        try:
            return self._paths[method]
        except KeyError:
            path = self._paths[method] = self._find_injection_path(method)
            return path

    def _find_injection_path(self, method: str) -> tuple[int, ...] | None:
        name = method[1:]
        service = name.split("/", 1)[0]
        allowed = service == KSERVE_V2_SERVICE
        for st in self.mesh.states.values():
            limits = st.instance.limits
            if limits is None:
                continue
            if name in limits.method_infos:
                return limits.method_infos[name]
            services = {known.split("/", 1)[0] for known in limits.method_infos}
            if limits.allow_any_method or not services or service in services:
                allowed = True
        return () if allowed else None

    async def forward(
        self, method: str, request: bytes, context: grpc.aio.ServicerContext
    ) -> bytes:
        """Route one request; errors from the model server are passed through as they are."""
        path = self.injection_path(method)
        if path is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"method {method[1:]} is not served")
        metadata = context.invocation_metadata() or ()
        target, is_vmodel = read_target(metadata)
        model_id = self.mesh.resolve_vmodel(target) if is_vmodel else target
        payload = inject_model_id(request, path, model_id) if path else request
        headers = forward_metadata(metadata, model_id)
        remaining = context.time_remaining()
        timeout = remaining if remaining is not None and remaining < 1e6 else None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            instance, copy = await self.mesh.acquire(model_id)
            try:
                response: bytes = await instance.forwarder(method)(
                    payload, metadata=headers, timeout=timeout
                )
                return response
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if attempt < MAX_ATTEMPTS and code is grpc.StatusCode.UNAVAILABLE:
                    log.warning("%s unavailable for %s: retrying", instance.name, model_id)
                    await self.mesh.check_instance(instance.name)
                    continue
                if attempt < MAX_ATTEMPTS and code is grpc.StatusCode.NOT_FOUND:
                    # The model server lost the model (restarted?): drop the copy, load again.
                    await self.mesh.forget_copy(copy, model_id)
                    continue
                await context.abort(code, exc.details() or code.name)
            finally:
                self.mesh.release(copy)
        raise AssertionError("unreachable: the last attempt returns or aborts")
