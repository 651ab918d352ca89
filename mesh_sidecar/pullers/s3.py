"""S3 and S3-compatible stores: botocore lists, the AWS Common Runtime downloads.

Config (the storage-config secret, type `s3`): `access_key_id` + `secret_access_key`
(+ `session_token`) for static keys; neither means the default credential chain
(environment, web identity / IRSA, instance profile); `anonymous: true` for public
buckets. `endpoint_url` (path-style addressing then), `region`, `certificate`
(PEM CA of a private endpoint), `bucket` (the modelKey's `bucket` lands here) or
`default_bucket`. Tuning: `max_concurrency` (8 ranged GETs of one big object
in flight), `connect_timeout` (10 s), `read_timeout` (60 s, the listing's),
`max_attempts` (5, bounded exponential backoff on throttling, 5xx and connection
faults).

botocore lists the objects and decides each object's URL (endpoint, addressing
style). The objects are fetched by awscrt's S3 client (the AWS Common Runtime, what
the AWS CLI and s3transfer use for speed): it signs, retries, splits big objects
into parallel ranged GETs and writes each file in native threads, so neither many
small files nor one big file is bound by Python's one core. A GET that stalls is
failed and retried by the CRT after 30 s without a byte.

HTTP proxies need no code here: botocore and the CRT's S3 client (which has no proxy
argument, but reads the environment by default) both honour `HTTPS_PROXY`,
`HTTP_PROXY` and `NO_PROXY`, so the listing and the downloads take the same route.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from xml.etree import ElementTree

import botocore.exceptions
import botocore.session
from awscrt.auth import AwsCredentials, AwsCredentialsProvider
from awscrt.exceptions import AwsCrtError
from awscrt.http import HttpHeaders, HttpRequest
from awscrt.io import ClientTlsContext, TlsContextOptions
from awscrt.s3 import (
    S3ChecksumConfig,
    S3Client,
    S3Request,
    S3RequestTlsMode,
    S3RequestType,
    S3ResponseError,
    S3RetryConfig,
    S3RetryMode,
)
from botocore import UNSIGNED
from botocore.config import Config
from botocore.utils import percent_encode

from mesh_sidecar.aio import Stopped
from mesh_sidecar.errors import (
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SidecarError,
    Unavailable,
)
from mesh_sidecar.pullers.base import StorageSource
from mesh_sidecar.pullers.objectstore import (
    ObjectStorePuller,
    PlannedDownload,
    PullContext,
    StoredObject,
    config_flag,
    config_key,
    config_number,
    wait_briefly,
)
from mesh_sidecar.pullers.tls import pem_file
from mesh_sidecar.redact import redact

T = TypeVar("T")
MiB = 1024 * 1024
# Parts of a big object, and ranged GETs of one object in flight. The CRT holds
# parts while the file writes lag: in 14 pulls of 256 MiB each, 12 ranges peaked at
# 160 MB, 8 at 125 MB and were no slower (the Go sidecar's downloader runs 5); parts
# of 2 MiB or more peaked over 180 MB. A lagging disk still gives peaks near 190 MB.
# 1 MiB parts cost a third more time.
PART_SIZE = 1536 * 1024
RANGES_IN_FLIGHT = 8
# Objects in flight at once: each holds an open file while it downloads.
OBJECTS_IN_FLIGHT = 64
# The CRT sizes its connection pool from a throughput target; this one gives
# enough connections for OBJECTS_IN_FLIGHT small objects on loopback or a LAN.
THROUGHPUT_GBPS = 5.0
# Files are created ahead of their downloads in batches of this many.
CREATE_BATCH = 32
# MD5 ETags are checked up to this size: bigger objects would pay a second read of
# the whole file (the bytes are written by the CRT, not seen by Python).
MD5_CHECK_LIMIT = 16 * MiB
# Smaller files are hashed in the CRT thread that fetched them: a hop to another
# thread costs more than hashing them.
MD5_INLINE_LIMIT = 256 * 1024
CLIENT_FIELDS = (
    "access_key_id",
    "secret_access_key",
    "session_token",
    "anonymous",
    "endpoint_url",
    "region",
    "certificate",
    "max_concurrency",
    "connect_timeout",
    "read_timeout",
    "max_attempts",
)
DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidClientTokenId",
        "403",
        "401",
    }
)
MISSING_CODES = frozenset({"NoSuchBucket", "NoSuchKey", "NotFound", "404"})
THROTTLED_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"})
SINGLE_PART_ETAG = re.compile(r"^[0-9a-f]{32}$")
VALIDATE_CHECKSUMS = S3ChecksumConfig(validate_response=True)


class _Client:
    """The clients built from one storage config: botocore's for listings and
    addressing, the CRT's for downloads."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        region = str(config.get("region") or "us-east-1")
        connect_timeout = config_number(config, "connect_timeout", 10)
        attempts = max(1, int(config_number(config, "max_attempts", 5)))
        anonymous = config_flag(config, "anonymous")
        botocore_config = Config(
            region_name=region,
            connect_timeout=connect_timeout,
            read_timeout=config_number(config, "read_timeout", 60),
            retries={"mode": "standard", "max_attempts": attempts},
            # Custom endpoints (MinIO, Ceph, rclone, moto) rarely serve virtual-host buckets.
            s3={"addressing_style": "path" if config.get("endpoint_url") else "auto"},
            signature_version=UNSIGNED if anonymous else "s3v4",
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A session per client: botocore's sessions are not safe to share across threads.
        session = botocore.session.Session()
        # Timestamps stay text, as the AWS CLI's `cli_timestamp_format = none` keeps
        # them: nothing here reads LastModified, and parsing it was half the CPU of a
        # listing (0.2 s for 2,000 keys, 0.09 s without).
        parsers = session.get_component("response_parser_factory")
        parsers.set_parser_defaults(timestamp_parser=str)
        kwargs: dict[str, Any] = {"config": botocore_config}
        if config.get("endpoint_url"):
            kwargs["endpoint_url"] = str(config["endpoint_url"])
        certificate = str(config["certificate"]) if config.get("certificate") else None
        if certificate:
            kwargs["verify"] = pem_file(certificate)
        key_id, secret = config.get("access_key_id"), config.get("secret_access_key")
        token = str(config["session_token"]) if config.get("session_token") else None
        if key_id or secret:
            if not (key_id and secret):
                raise InvalidRequest("access_key_id and secret_access_key go together")
            kwargs["aws_access_key_id"] = str(key_id)
            kwargs["aws_secret_access_key"] = str(secret)
            if token:
                kwargs["aws_session_token"] = token
        self.s3 = session.create_client("s3", **kwargs)
        self.ranges = int(config_number(config, "max_concurrency", RANGES_IN_FLIGHT)) or 1
        self._paths: dict[str, tuple[str, str]] = {}

        credentials: AwsCredentialsProvider | None = None
        if anonymous:
            pass  # unsigned requests
        elif key_id and secret:
            credentials = AwsCredentialsProvider.new_static(str(key_id), str(secret), token)
        else:
            # The default chain, as botocore resolved it for the listing (refreshed when
            # near expiry). None: the listing has already failed with no credentials.
            resolved = session.get_credentials()
            if resolved is not None:
                credentials = AwsCredentialsProvider.new_delegate(_frozen(resolved))
        tls = None
        https = urlsplit(self.s3.meta.endpoint_url).scheme == "https"
        if https and certificate:
            options = TlsContextOptions()
            options.override_default_trust_store_from_path(ca_filepath=pem_file(certificate))
            tls = ClientTlsContext(options).new_connection_options()
        retries = (
            S3RetryConfig(max_retries=attempts - 1, backoff_scale_factor_ms=200, max_backoff_secs=5)
            if attempts > 1
            else S3RetryConfig(retry_mode=S3RetryMode.NONE)
        )
        self.crt = S3Client(
            region=region,
            tls_mode=S3RequestTlsMode.ENABLED if https else S3RequestTlsMode.DISABLED,
            tls_connection_options=tls,
            credential_provider=credentials,
            part_size=PART_SIZE,
            throughput_target_gbps=THROUGHPUT_GBPS,
            retry_config=retries,
            connect_timeout_ms=int(connect_timeout * 1000),
        )

    def object_url(self, bucket: str, key: str) -> tuple[str, str]:
        """(Host, path) of a GET of `key`, addressed as botocore addresses it.

        botocore resolves the endpoint and addressing style once per bucket (it
        costs more CPU than the rest of a small object's download); the key goes
        after that base, quoted as botocore quotes it.
        """
        quoted = percent_encode(key, safe="/~")
        base = self._paths.get(bucket)
        if base is None:
            url = urlsplit(
                self.s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
            )
            if not url.path.endswith(quoted):
                raise InvalidRequest(f"cannot address the objects of bucket {bucket!r}")
            base = (url.netloc, url.path[: len(url.path) - len(quoted)])
            self._paths[bucket] = base
        return base[0], base[1] + quoted


def _frozen(credentials: Any) -> Any:
    def current() -> AwsCredentials:
        frozen = credentials.get_frozen_credentials()
        return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)

    return current


def _file_md5(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def _settle(done: asyncio.Future[T], outcome: T) -> None:
    if not done.done():
        done.set_result(outcome)


def _create_files(
    plan: list[PlannedDownload],
    created: list[asyncio.Future[Exception | None]],
    loop: asyncio.AbstractEventLoop,
    ctx: PullContext,
) -> None:
    """Create the plan's files, in order, ahead of their downloads (in a thread).

    Creating a file costs more than the rest of a small object's download, and the CRT
    would create it inside `make_request`, holding the GIL on the event loop's thread;
    it then only truncates the empty file. `created[n]` is settled after batch n.
    """
    for batch, start in enumerate(range(0, len(plan), CREATE_BATCH)):
        error: Exception | None = None
        try:
            for item in plan[start : start + CREATE_BATCH]:
                ctx.check()
                # Not Path.touch: it first tries utime, which fails (and raises) for
                # a new file.
                os.close(os.open(item.target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
        except (OSError, Stopped) as exc:
            error = exc
        for future in created[batch:] if error else created[batch : batch + 1]:
            loop.call_soon_threadsafe(_settle, future, error)
        if error:
            return


class S3Puller(ObjectStorePuller):
    """Pulls a prefix or a single object from S3 or an S3-compatible store."""

    type = "s3"

    def _client(self, source: StorageSource) -> _Client:
        return self.client_for(
            config_key(source.config, CLIENT_FIELDS), lambda: _Client(source.config)
        )

    def location(self, source: StorageSource) -> tuple[str, str]:
        bucket = source.config.get("bucket") or source.config.get("default_bucket")
        if not bucket:
            raise InvalidRequest("no bucket: set `bucket` in the modelKey or the storage config")
        return str(bucket), source.path.strip("/")

    def list_objects(self, source: StorageSource, prefix: str) -> Iterable[StoredObject]:
        bucket, _ = self.location(source)
        paginator = self._client(source).s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                etag = str(item.get("ETag", "")).strip('"').lower()
                md5 = etag if SINGLE_PART_ETAG.match(etag) else None
                yield StoredObject(item["Key"], int(item.get("Size", 0)), md5)

    async def fetch(
        self, source: StorageSource, plan: list[PlannedDownload], ctx: PullContext
    ) -> None:
        """Every object through the CRT, OBJECTS_IN_FLIGHT at a time; on any failure or
        cancellation cancel the others and wait until nothing writes any more."""
        bucket, _ = self.location(source)
        client = self._client(source)
        # The first URL may resolve credentials: in a thread, not on the event loop.
        first = plan[0].obj.key
        await self._call(source, "addressing", lambda: client.object_url(bucket, first))
        loop = asyncio.get_running_loop()
        created = [loop.create_future() for _ in range(0, len(plan), CREATE_BATCH)]
        creator = self._executor.submit(_create_files, plan, created, loop, ctx)
        items = iter(enumerate(plan))
        running: set[S3Request] = set()

        async def worker() -> None:
            for index, item in items:
                error = await created[index // CREATE_BATCH]
                if error is not None:
                    raise self.error_for(error, source, f"creating {item.target.name!r}")
                await self._get(source, client, bucket, item, ctx, running)

        tasks = [asyncio.ensure_future(worker()) for _ in range(min(OBJECTS_IN_FLIGHT, len(plan)))]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            ctx.cancelled.set()
            for task in tasks:
                task.cancel()
            for request in list(running):
                request.cancel()
            # The CRT writes files in its own threads: the caller deletes the partial dir
            # only once every request, and the file creator, has finished.
            finished = [asyncio.wrap_future(r.finished_future) for r in list(running)]
            finished.append(asyncio.wrap_future(creator))
            await wait_briefly(asyncio.gather(*tasks, *finished, return_exceptions=True))
            raise

    async def _get(
        self,
        source: StorageSource,
        client: _Client,
        bucket: str,
        item: PlannedDownload,
        ctx: PullContext,
        running: set[S3Request],
    ) -> None:
        """One object into its file, checked against its MD5 ETag when it has one."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[Exception | None, str | None]] = loop.create_future()
        check_md5 = item.obj.md5 is not None and item.obj.size < MD5_CHECK_LIMIT

        def on_done(
            error: Exception | None = None, did_validate_checksum: bool = False, **_: Any
        ) -> None:
            # In a CRT thread.
            if error is None and check_md5 and not did_validate_checksum:
                if item.obj.size < MD5_INLINE_LIMIT:
                    finish(None)
                else:
                    # Hashing a bigger file would hold up this thread's connections.
                    self._executor.submit(finish, None)
            else:
                finish(error, checked=False)

        def finish(error: Exception | None, checked: bool = True) -> None:
            md5 = None
            if checked:
                try:
                    md5 = _file_md5(item.target)
                except OSError as exc:
                    error = exc
            # A closed loop: nobody waits for this any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, done, (error, md5))

        host, path = client.object_url(bucket, item.obj.key)
        headers = HttpHeaders([("Host", host), ("Content-Length", "0")])
        request = client.crt.make_request(
            type=S3RequestType.GET_OBJECT,
            request=HttpRequest("GET", path, headers),
            recv_filepath=str(item.target),
            # Validates the store's CRC/SHA checksums when it sends them (AWS does).
            checksum_config=VALIDATE_CHECKSUMS,
            max_active_connections_override=client.ranges,
            on_progress=lambda progress, **_: ctx.add_bytes(progress),
            on_done=on_done,
        )
        running.add(request)
        error, md5 = await done
        running.discard(request)
        what = f"downloading {item.obj.key!r}"
        if error is not None:
            raise self.error_for(error, source, what)
        if md5 is not None and md5 != item.obj.md5:
            await self._call(source, what, lambda: self._md5_mismatch(source, item))
        ctx.add_bytes(0, files=1)

    def _md5_mismatch(self, source: StorageSource, item: PlannedDownload) -> None:
        """Fail on an MD5 that differs from the ETag, unless the ETag is no MD5 at all."""
        # With SSE-KMS or SSE-C the ETag is not the MD5 of the content: nothing to compare.
        bucket, _ = self.location(source)
        try:
            head = self._client(source).s3.head_object(Bucket=bucket, Key=item.obj.key)
        except Exception as exc:
            raise self.error_for(exc, source, f"checking {item.obj.key!r}") from None
        if head.get("ServerSideEncryption") == "aws:kms" or head.get("SSECustomerAlgorithm"):
            return
        raise Unavailable(f"{item.obj.key!r}: checksum mismatch (MD5 differs from the ETag)")

    def translate(self, exc: Exception, source: StorageSource, what: str) -> SidecarError:
        bucket = source.config.get("bucket") or source.config.get("default_bucket")
        where = f"s3://{bucket}/{source.path.strip('/')}"
        if isinstance(exc, Stopped):
            return Unavailable(f"{what} {where}: cancelled")
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            return _answer_error(code, status, error.get("Message"), what, where, source)
        if isinstance(exc, S3ResponseError):
            code, message = _error_of(exc.body)
            return _answer_error(code, exc.status_code, message, what, where, source)
        if isinstance(exc, AwsCrtError):
            if exc.name == "AWS_ERROR_NO_SPACE":
                return ResourceExhausted(f"disk full while {what}")
            detail = redact(f"{exc.name}: {exc.message}", source.config)
            return Unavailable(f"{what} {where}: store unreachable: {detail}")
        if isinstance(
            exc,
            botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError,
        ):
            return PermissionDenied(f"{what} {where}: no usable AWS credentials found")
        if isinstance(exc, botocore.exceptions.SSLError):
            return Unavailable(f"{what} {where}: TLS failure: {redact(exc, source.config)}")
        if isinstance(
            exc,
            botocore.exceptions.EndpointConnectionError
            | botocore.exceptions.ConnectionError
            | botocore.exceptions.HTTPClientError
            | ConnectionError
            | TimeoutError,
        ):
            return Unavailable(f"{what} {where}: store unreachable: {redact(exc, source.config)}")
        if isinstance(exc, botocore.exceptions.ParamValidationError):
            return InvalidRequest(f"{what} {where}: {redact(exc, source.config)}")
        return Unavailable(f"{what} {where}: {type(exc).__name__}: {redact(exc, source.config)}")


def _error_of(body: bytes | None) -> tuple[str, str | None]:
    """(Code, Message) of an S3 error document; empty when the body is none."""
    try:
        root = ElementTree.fromstring(body or b"")
    except ElementTree.ParseError:
        return "", None
    return root.findtext("Code") or "", root.findtext("Message")


def _answer_error(
    code: str, status: int, message: str | None, what: str, where: str, source: StorageSource
) -> SidecarError:
    """The error for a store's answer: its S3 error code, else its HTTP status."""
    detail = redact(f"{code}: {message or ''}".rstrip(": "), source.config)
    text = f"{what} {where}: {detail}"
    # 407: the HTTP proxy refused the credentials of its URL.
    if code in DENIED_CODES or status in (401, 403, 407):
        return PermissionDenied(text)
    if code in MISSING_CODES or status == 404:
        return NotFound(text)
    if code in THROTTLED_CODES or status >= 500 or status == 429:
        return Unavailable(text)
    return InvalidRequest(text)
