"""gRPC failures of a model server, as the errors of mesh_sidecar.errors."""

from __future__ import annotations

import grpc
import pytest

from mesh_sidecar.errors import (
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SidecarError,
    Unavailable,
)
from mesh_sidecar.runtimes.rpc_errors import error_from_rpc


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidRequest),
        (grpc.StatusCode.NOT_FOUND, NotFound),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
        (grpc.StatusCode.UNAUTHENTICATED, PermissionDenied),
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhausted),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPrecondition),
    ],
)
def test_codes_with_a_class_of_their_own(code: grpc.StatusCode, cls: type[SidecarError]) -> None:
    error = error_from_rpc(rpc_error(code, "the server's reason"), "loadModel 'm1'")
    assert type(error) is cls
    assert str(error) == "loadModel 'm1': the server's reason"


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.ABORTED, grpc.StatusCode.INTERNAL],
)
def test_other_codes_are_kept(code: grpc.StatusCode) -> None:
    error = error_from_rpc(rpc_error(code, ""), "modelSize 'm1'")
    assert error.code == code
    assert str(error) == f"modelSize 'm1': {code.name}"
