"""Azure Blob Storage, with azure-storage-blob.

Config (type `azure`): `account_name`, `container` (the modelKey's `bucket` overrides
it); auth by `connection_string`, or `account_key`, or `sas_token`, or a service
principal (`client_id` + `client_secret` + `tenant_id`, and `authority_host` for a
private cloud's Entra ID), or none (anonymous). The endpoint is `account_url`, else
the connection string's, else `https://<account_name>.blob.core.windows.net`.
`certificate`: PEM CA of a private endpoint (and of its authority). Blobs with a
Content-MD5 are checked against it. Tuning: `max_attempts` (5, azure-storage's
retry with the pullers' backoff), `connect_timeout` (10 s), `read_timeout` (60 s),
`max_concurrency` (4 ranges per big blob).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ContainerClient, ExponentialRetry

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
    backoff_delay,
    config_key,
    config_number,
)
from mesh_sidecar.pullers.tls import pem_file
from mesh_sidecar.redact import redact

CLIENT_FIELDS = (
    "account_name",
    "account_url",
    "container",
    "bucket",
    "connection_string",
    "account_key",
    "sas_token",
    "client_id",
    "client_secret",
    "tenant_id",
    "authority_host",
    "certificate",
    "max_attempts",
    "connect_timeout",
    "read_timeout",
)


def container_name(config: Mapping[str, Any]) -> str:
    """The container: the modelKey's `bucket` wins over the config's `container`."""
    name = config.get("bucket") or config.get("container")
    if not name:
        raise InvalidRequest("no container: set `container` in the storage config")
    return str(name)


class _Retry(ExponentialRetry):
    """azure-storage's retry, waiting as the other pullers do (0.2 s, doubling, at most 5 s),
    and never for a refused credential.

    Its own waits (18, 24, 42, 96 s, ..., each give or take 3 s) held a load that
    was bound to fail for 84 s after three 503 answers, and it retried a token
    request Entra ID had refused as if it were a network fault: a wrong secret
    failed only after minutes.
    """

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        return backoff_delay(settings["count"] - 1)  # "count" is 1 before the first retry

    def increment(
        self,
        settings: dict[str, Any],
        request: Any,
        response: Any = None,
        error: AzureError | None = None,
    ) -> bool:
        if isinstance(error, ClientAuthenticationError):
            return False
        return bool(super().increment(settings, request, response, error))


def build_client(config: Mapping[str, Any]) -> ContainerClient:
    """A container client from the config's endpoint and credentials."""
    options: dict[str, Any] = {
        "retry_policy": _Retry(retry_total=int(config_number(config, "max_attempts", 5))),
        "connection_timeout": config_number(config, "connect_timeout", 10),
        "read_timeout": config_number(config, "read_timeout", 60),
    }
    if config.get("certificate"):
        options["connection_verify"] = pem_file(str(config["certificate"]))
    container = container_name(config)
    if config.get("connection_string"):
        try:
            return ContainerClient.from_connection_string(
                str(config["connection_string"]), container, **options
            )
        except ValueError:
            raise InvalidRequest("the storage config's connection_string is malformed") from None
    account = config.get("account_name")
    url = config.get("account_url") or (
        f"https://{account}.blob.core.windows.net" if account else None
    )
    if not url:
        raise InvalidRequest(
            "azure storage needs `account_name`, `account_url` or a connection string"
        )
    credential: Any = None
    if config.get("account_key"):
        if not account:
            raise InvalidRequest("`account_key` needs `account_name`")
        credential = AzureNamedKeyCredential(str(account), str(config["account_key"]))
    elif config.get("sas_token"):
        credential = AzureSasCredential(str(config["sas_token"]).lstrip("?"))
    elif config.get("client_id") or config.get("client_secret") or config.get("tenant_id"):
        if not (
            config.get("client_id") and config.get("client_secret") and config.get("tenant_id")
        ):
            raise InvalidRequest("client_id, client_secret and tenant_id go together")
        from azure.identity import ClientSecretCredential

        authority: dict[str, Any] = {}
        if config.get("authority_host"):
            # A private cloud's authority is not in Microsoft's directory of
            # authorities: asking that directory about it would fail.
            authority = {
                "authority": str(config["authority_host"]),
                "disable_instance_discovery": True,
            }
        credential = ClientSecretCredential(
            str(config["tenant_id"]),
            str(config["client_id"]),
            str(config["client_secret"]),
            connection_verify=options.get("connection_verify", True),
            **authority,
        )
    return ContainerClient(str(url), container, credential=credential, **options)


class AzurePuller(ObjectStorePuller):
    """Pulls a prefix or a single blob from Azure Blob Storage (or Azurite, or Azure Stack)."""

    type = "azure"

    def _client(self, source: StorageSource) -> ContainerClient:
        key = config_key(source.config, CLIENT_FIELDS)
        return self.client_for(key, lambda: build_client(source.config))

    def location(self, source: StorageSource) -> tuple[str, str]:
        return container_name(source.config), source.path.strip("/")

    def list_objects(self, source: StorageSource, prefix: str) -> Iterable[StoredObject]:
        for blob in self._client(source).list_blobs(name_starts_with=prefix or None):
            md5 = blob.content_settings.content_md5 if blob.content_settings else None
            yield StoredObject(blob.name, int(blob.size or 0), bytes(md5).hex() if md5 else None)

    def download(self, source: StorageSource, item: PlannedDownload, ctx: PullContext) -> None:
        blob = self._client(source).get_blob_client(item.obj.key)
        concurrency = int(config_number(source.config, "max_concurrency", 4)) or 1
        digest = hashlib.md5(usedforsecurity=False) if item.obj.md5 else None
        with open(item.target, "wb") as raw:
            writer = ProgressWriter(raw, ctx, digest)
            blob.download_blob(max_concurrency=concurrency).readinto(writer)
        if digest is None:
            return
        if not writer.in_order:  # a big blob came in parallel ranges: hash the file
            digest = hashlib.md5(usedforsecurity=False)
            with open(item.target, "rb") as data:
                while chunk := data.read(1024 * 1024):
                    ctx.check()
                    digest.update(chunk)
        if digest.hexdigest() != item.obj.md5:
            raise Unavailable(f"{item.obj.key!r}: checksum mismatch (Content-MD5)")

    def translate(self, exc: Exception, source: StorageSource, what: str) -> SidecarError:
        where = f"azure container {source.config.get('bucket') or source.config.get('container')!r}"
        where += f" path {source.path.strip('/')!r}"
        if isinstance(exc, Stopped):
            return Unavailable(f"{what} {where}: cancelled")
        if isinstance(exc, ClientAuthenticationError):
            return PermissionDenied(f"{what} {where}: credentials refused")
        if isinstance(exc, ResourceNotFoundError):
            return NotFound(f"{what} {where}: {getattr(exc, 'error_code', None) or 'not found'}")
        if isinstance(exc, HttpResponseError):
            status = exc.status_code or 0
            detail = f"HTTP {status} {getattr(exc, 'error_code', None) or ''}".strip()
            if status in (401, 403):
                return PermissionDenied(f"{what} {where}: {detail}")
            if status == 404:
                return NotFound(f"{what} {where}: {detail}")
            if status in (408, 429) or status >= 500:
                return Unavailable(f"{what} {where}: {detail}")
            return InvalidRequest(f"{what} {where}: {detail}")
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            return Unavailable(f"{what} {where}: store unreachable: {redact(exc, source.config)}")
        return Unavailable(f"{what} {where}: {type(exc).__name__}: {redact(exc, source.config)}")
