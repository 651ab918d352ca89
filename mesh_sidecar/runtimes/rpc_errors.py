"""gRPC errors of a model server, turned into the errors of `mesh_sidecar.errors`.

Runtime adapters that talk gRPC to their model server translate at this one
edge, so the caller sees the server's status code and message, never a raw
`grpc.RpcError`.
"""

from __future__ import annotations

import grpc

from mesh_sidecar.errors import (
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SidecarError,
    Unavailable,
)

_BY_CODE: dict[grpc.StatusCode, type[SidecarError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
}


def rpc_code(exc: grpc.RpcError) -> grpc.StatusCode:
    """The status code of a failed call (UNKNOWN if it has none)."""
    code = exc.code() if isinstance(exc, grpc.Call | grpc.aio.AioRpcError) else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def rpc_details(exc: grpc.RpcError) -> str:
    """The message the server gave with its status ('' if none)."""
    details = exc.details() if isinstance(exc, grpc.Call | grpc.aio.AioRpcError) else None
    return details or ""


def error_from_rpc(exc: grpc.RpcError, context: str, address: str | None = None) -> SidecarError:
    """A `SidecarError` with the call's code and `context: <server's message>`.

    UNAVAILABLE names the server's `address` when given. Codes without a class of
    their own (UNIMPLEMENTED, ABORTED, ...) keep their code on a plain `SidecarError`.
    """
    code = rpc_code(exc)
    if code == grpc.StatusCode.UNAVAILABLE and address is not None:
        return Unavailable(
            f"{context}: the model server at {address} is unreachable"
            f" ({rpc_details(exc) or 'no answer'})"
        )
    message = f"{context}: {rpc_details(exc) or code.name}"
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(message)
    error = SidecarError(message)
    error.code = code
    return error
