"""The error vocabulary shared by pullers, runtimes, the adapter and the coordinator.

Each error carries the gRPC status code a caller should see. Pullers and
runtimes raise these (never a raw SDK error); the adapter turns them into a
gRPC status in one place. Messages must never contain a secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc


class _StatusCode:
    """`grpc.StatusCode.<name>`, looked up on first use: `mesh-sidecar pull` raises these
    errors but never needs grpc, whose import costs 20 ms and 25 MB."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> grpc.StatusCode:
        import grpc

        code: grpc.StatusCode = getattr(grpc.StatusCode, self.name)
        return code


class SidecarError(Exception):
    """Base class: a failure with the gRPC status code that describes it."""

    code = _StatusCode("INTERNAL")


class InvalidRequest(SidecarError):
    """The request itself is malformed; nothing was attempted."""

    code = _StatusCode("INVALID_ARGUMENT")


class NotFound(SidecarError):
    """The model (or its files) does not exist."""

    code = _StatusCode("NOT_FOUND")


class AlreadyExists(SidecarError):
    """An id is taken by something different (the coordinator's registerModel and setVModel)."""

    code = _StatusCode("ALREADY_EXISTS")


class PermissionDenied(SidecarError):
    """Storage refused the credentials."""

    code = _StatusCode("PERMISSION_DENIED")


class Unavailable(SidecarError):
    """Storage or the model server cannot be reached; worth retrying elsewhere."""

    code = _StatusCode("UNAVAILABLE")


class ResourceExhausted(SidecarError):
    """Out of disk, memory or another bounded resource."""

    code = _StatusCode("RESOURCE_EXHAUSTED")


class FailedPrecondition(SidecarError):
    """The model cannot be served by this runtime as it is (e.g. unsupported format)."""

    code = _StatusCode("FAILED_PRECONDITION")


class RuntimeLoadFailed(SidecarError):
    """The model server tried to load the model and failed; carries its reason."""

    code = _StatusCode("INTERNAL")
