"""The error vocabulary shared by pullers, runtimes, the adapter and the coordinator.

Each error carries the gRPC status code a caller should see. Pullers and
runtimes raise these (never a raw SDK error); the adapter turns them into a
gRPC status in one place. Messages must never contain a secret.
"""

from __future__ import annotations

import grpc


class SidecarError(Exception):
    """Base class: a failure with the gRPC status code that describes it."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidRequest(SidecarError):
    """The request itself is malformed; nothing was attempted."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(SidecarError):
    """The model (or its files) does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(SidecarError):
    """An id is taken by something different (the coordinator's registerModel and setVModel)."""

    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(SidecarError):
    """Storage refused the credentials."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(SidecarError):
    """Storage or the model server cannot be reached; worth retrying elsewhere."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(SidecarError):
    """Out of disk, memory or another bounded resource."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(SidecarError):
    """The model cannot be served by this runtime as it is (e.g. unsupported format)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class RuntimeLoadFailed(SidecarError):
    """The model server tried to load the model and failed; carries its reason."""

    code = grpc.StatusCode.INTERNAL
