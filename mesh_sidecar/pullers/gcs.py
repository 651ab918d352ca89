"""Google Cloud Storage, with google-cloud-storage.

Config (type `gcs`): `private_key` + `client_email` (+ `token_uri`, `project_id`) build
a service-account credential; without them the access is anonymous. `bucket`.
`STORAGE_EMULATOR_HOST` is honoured (the library reads it). The library checks each
download against the object's CRC32C or MD5. Tuning: `connect_timeout` (10 s),
`read_timeout` (60 s), `retry_timeout` (60 s: how long transient faults are retried,
with bounded exponential backoff).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

# google-api-core and google-auth warn on import that the pinned grpcio (see
# pyproject) predates post-quantum TLS. This client speaks HTTP, not gRPC, so the
# warning does not apply: keep it out of every pull's output.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "grpcio < 1.83.0", FutureWarning)
    warnings.filterwarnings("ignore", ".*depends on grpcio", FutureWarning)
    import google.auth.exceptions
    from google.api_core import exceptions as api_exceptions
    from google.api_core.retry import Retry
    from google.cloud import storage
    from google.cloud.storage.retry import DEFAULT_RETRY
    from google.oauth2 import service_account

from mesh_sidecar.aio import Stopped
from mesh_sidecar.errors import (
    InvalidRequest,
    NotFound,
    PermissionDenied,
    SidecarError,
    Unavailable,
)
from mesh_sidecar.pullers.base import StorageSource
from mesh_sidecar.pullers.objectstore import (
    ObjectStorePuller,
    PlannedDownload,
    ProgressWriter,
    PullContext,
    StoredObject,
    config_key,
    config_number,
)
from mesh_sidecar.redact import redact

DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
CLIENT_FIELDS = ("private_key", "client_email", "token_uri", "project_id")


def build_client(config: Mapping[str, Any]) -> storage.Client:
    """A storage client: service account from the config's fields, else anonymous."""
    email, key = config.get("client_email"), config.get("private_key")
    if not (email or key):
        return storage.Client.create_anonymous_client()
    if not (email and key):
        raise InvalidRequest("private_key and client_email go together")
    info = {
        "type": "service_account",
        "client_email": email,
        "private_key": key,
        "token_uri": config.get("token_uri") or DEFAULT_TOKEN_URI,
        "project_id": config.get("project_id") or "",
    }
    try:
        credentials = service_account.Credentials.from_service_account_info(info)
    except ValueError:
        # The parser's message may quote the key: say only what is wrong.
        raise InvalidRequest("the storage config's private_key is not a valid PEM key") from None
    return storage.Client(project=config.get("project_id") or "-", credentials=credentials)


class GcsPuller(ObjectStorePuller):
    """Pulls a prefix or a single object from Google Cloud Storage."""

    type = "gcs"

    def _client(self, source: StorageSource) -> storage.Client:
        key = config_key(source.config, CLIENT_FIELDS)
        return self.client_for(key, lambda: build_client(source.config))

    def _retry(self, source: StorageSource) -> Retry:
        return DEFAULT_RETRY.with_timeout(config_number(source.config, "retry_timeout", 60))

    def _timeout(self, source: StorageSource) -> tuple[float, float]:
        return (
            config_number(source.config, "connect_timeout", 10),
            config_number(source.config, "read_timeout", 60),
        )

    def location(self, source: StorageSource) -> tuple[str, str]:
        bucket = source.config.get("bucket")
        if not bucket:
            raise InvalidRequest("no bucket: set `bucket` in the modelKey or the storage config")
        return str(bucket), source.path.strip("/")

    def list_objects(self, source: StorageSource, prefix: str) -> Iterable[StoredObject]:
        bucket, _ = self.location(source)
        blobs = self._client(source).list_blobs(
            bucket, prefix=prefix or None, retry=self._retry(source), timeout=self._timeout(source)
        )
        for blob in blobs:
            yield StoredObject(blob.name, int(blob.size or 0))

    def download(self, source: StorageSource, item: PlannedDownload, ctx: PullContext) -> None:
        bucket, _ = self.location(source)
        blob = self._client(source).bucket(bucket).blob(item.obj.key)
        with open(item.target, "wb") as raw:
            blob.download_to_file(
                ProgressWriter(raw, ctx),
                checksum="auto",
                retry=self._retry(source),
                timeout=self._timeout(source),
            )

    def translate(self, exc: Exception, source: StorageSource, what: str) -> SidecarError:
        where = f"gs://{source.config.get('bucket')}/{source.path.strip('/')}"
        if isinstance(exc, Stopped):
            return Unavailable(f"{what} {where}: cancelled")
        if isinstance(exc, api_exceptions.RetryError) and exc.cause is not None:
            cause = exc.cause
            if isinstance(cause, Exception):
                exc = cause
        detail = redact(getattr(exc, "message", None) or exc, source.config)
        message = f"{what} {where}: {detail}"
        if isinstance(exc, api_exceptions.Unauthorized | api_exceptions.Forbidden):
            return PermissionDenied(message)
        if isinstance(exc, google.auth.exceptions.RefreshError):
            return PermissionDenied(f"{what} {where}: the service account was refused")
        if isinstance(exc, google.auth.exceptions.DefaultCredentialsError):
            return PermissionDenied(f"{what} {where}: no usable credentials")
        if isinstance(exc, api_exceptions.NotFound):
            return NotFound(message)
        if isinstance(exc, api_exceptions.BadRequest):
            return InvalidRequest(message)
        if type(exc).__name__ == "DataCorruption":  # google-resumable-media's checksum error
            return Unavailable(f"{what} {where}: checksum mismatch")
        return Unavailable(f"{what} {where}: store unreachable or failing: {detail}")
