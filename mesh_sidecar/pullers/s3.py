"""S3 and S3-compatible stores, with boto3/s3transfer.

Config (the storage-config secret, type `s3`): `access_key_id` + `secret_access_key`
(+ `session_token`) for static keys; neither means the default credential chain
(environment, web identity / IRSA, instance profile); `anonymous: true` for public
buckets. `endpoint_url` (path-style addressing then), `region`, `certificate`
(PEM CA of a private endpoint), `bucket` (the modelKey's `bucket` lands here) or
`default_bucket`. Tuning: `max_concurrency` (16 ranges of a big object in flight;
up to 32 small objects in flight), `connect_timeout` (10 s), `read_timeout`
(60 s), `max_attempts` (5, bounded exponential backoff on throttling, 5xx and
connection faults; botocore's "standard" retry mode).

Objects below 16 MiB are fetched on the event loop with aiohttp, from URLs that
botocore signs (a boto3 `get_object` costs several times the CPU per object, and
many small files are CPU-bound). Anything but a clean 200 hands the object to
boto3's `get_object` (`download`), so retries, redirects and error mapping stay
boto3's. Objects from 16 MiB are fetched by s3transfer in parallel ranges.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import re
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED
from botocore.config import Config
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber

from mesh_sidecar.aio import Stopped
from mesh_sidecar.errors import (
    InvalidRequest,
    NotFound,
    PermissionDenied,
    SidecarError,
    Unavailable,
)
from mesh_sidecar.pullers.base import PullerSettings, StorageSource
from mesh_sidecar.pullers.objectstore import (
    DEFAULT_WORKERS,
    ObjectStorePuller,
    PlannedDownload,
    ProgressWriter,
    PullContext,
    StoredObject,
    backoff_delay,
    config_flag,
    config_key,
    config_number,
    wait_briefly,
)
from mesh_sidecar.pullers.tls import pem_file
from mesh_sidecar.redact import redact

if TYPE_CHECKING:
    import aiohttp

T = TypeVar("T")
MiB = 1024 * 1024
# Small objects are written by a few threads: disk writes are short, and each thread
# started costs more than it saves on a 2-core machine.
FILE_WRITERS = 4
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
CHUNK = 256 * 1024
STREAM_ERRORS = (
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.IncompleteReadError,
)
SINGLE_PART_ETAG = re.compile(r"^[0-9a-f]{32}$")


class _Client:
    """A boto3 client and the transfer settings built from one storage config."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        # Ranged GETs of one big object: beyond 16 in flight only memory grows.
        concurrency = int(config_number(config, "max_concurrency", 16)) or 1
        botocore_config = Config(
            region_name=str(config.get("region") or "us-east-1"),
            connect_timeout=config_number(config, "connect_timeout", 10),
            read_timeout=config_number(config, "read_timeout", 60),
            retries={
                "mode": "standard",
                "max_attempts": int(config_number(config, "max_attempts", 5)),
            },
            max_pool_connections=concurrency + 4,
            # Custom endpoints (MinIO, Ceph, rclone, moto) rarely serve virtual-host buckets.
            s3={"addressing_style": "path" if config.get("endpoint_url") else "auto"},
            # SigV4 for presigned URLs too (botocore presigns with SigV2 by default).
            signature_version=UNSIGNED if config_flag(config, "anonymous") else "s3v4",
            # We check MD5 ETags ourselves; botocore's own checksum hooks cost CPU per request.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A session per client: boto3's default session is not safe to share across threads.
        session = boto3.session.Session()
        kwargs: dict[str, Any] = {"config": botocore_config}
        if config.get("endpoint_url"):
            kwargs["endpoint_url"] = str(config["endpoint_url"])
        if config.get("certificate"):
            kwargs["verify"] = pem_file(str(config["certificate"]))
        key_id, secret = config.get("access_key_id"), config.get("secret_access_key")
        if key_id or secret:
            if not (key_id and secret):
                raise InvalidRequest("access_key_id and secret_access_key go together")
            kwargs["aws_access_key_id"] = str(key_id)
            kwargs["aws_secret_access_key"] = str(secret)
            if config.get("session_token"):
                kwargs["aws_session_token"] = str(config["session_token"])
        self.s3 = session.client("s3", **kwargs)
        self.certificate = str(config["certificate"]) if config.get("certificate") else None
        self.timeouts = (
            config_number(config, "connect_timeout", 10),
            config_number(config, "read_timeout", 60),
        )
        self._http: aiohttp.ClientSession | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        self.attempts = max(1, int(config_number(config, "max_attempts", 5)))
        # Many small files: many requests in flight. Big files: parallel ranged GETs.
        self.transfer = TransferConfig(
            multipart_threshold=16 * MiB,
            multipart_chunksize=16 * MiB,
            max_concurrency=concurrency,
            # Chunks (256 KiB) waiting for the writer thread: 8 MiB, not the default 25 MiB.
            max_io_queue=32,
            num_download_attempts=int(config_number(config, "max_attempts", 5)),
        )

    def http(self) -> aiohttp.ClientSession:
        """The aiohttp session of the running loop (one pool of connections, reused)."""
        # Imported here: a pull of big objects only (or a `mesh-sidecar pull` of them)
        # never needs it, and it costs a tenth of a second to import.
        import aiohttp

        loop = asyncio.get_running_loop()
        # A session belongs to one loop; the sidecar has one, tests may start several.
        if self._http is None or self._http.closed or self._http_loop is not loop:
            tls: ssl.SSLContext | bool = True
            if self.certificate:
                tls = ssl.create_default_context(cafile=pem_file(self.certificate))
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=DEFAULT_WORKERS, ssl=tls),
                timeout=aiohttp.ClientTimeout(
                    sock_connect=self.timeouts[0], sock_read=self.timeouts[1]
                ),
                trust_env=True,  # HTTP(S)_PROXY and NO_PROXY, as botocore honours them
                auto_decompress=False,
            )
            self._http_loop = loop
        return self._http

    async def close(self) -> None:
        if self._http is not None and self._http_loop is asyncio.get_running_loop():
            await self._http.close()
        self._http = None


class _FileSink:
    """Where one object's bytes go: opened on the first write, closed by the last, each
    call in a file-writer thread (the bytes arrive on the event loop)."""

    def __init__(self, path: Path, ctx: PullContext, digest: Any) -> None:
        self._path = path
        self._ctx = ctx
        self._digest = digest
        self._writer: ProgressWriter | None = None
        self._file: Any = None

    @property
    def written(self) -> int:
        return self._writer.written if self._writer is not None else 0

    def write(self, data: bytes, last: bool = False) -> None:
        try:
            if self._writer is None:
                self._ctx.check()
                self._file = open(self._path, "wb")  # noqa: SIM115 - closed by close()
                self._writer = ProgressWriter(self._file, self._ctx, self._digest)
            if data:
                self._writer.write(data)
        except BaseException:
            self.close()
            raise
        if last:
            self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _Progress(BaseSubscriber):
    """Feeds s3transfer's progress into the pull's counters; gives it the listed size
    so it skips a HeadObject per file."""

    def __init__(self, size: int, ctx: PullContext) -> None:
        self._size = size
        self._ctx = ctx

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._size)

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self._ctx.add_bytes(bytes_transferred)

    def on_done(self, future: Any, **kwargs: Any) -> None:
        self._ctx.add_bytes(0, files=1)


class S3Puller(ObjectStorePuller):
    """Pulls a prefix or a single object from S3 or an S3-compatible store."""

    type = "s3"

    def __init__(self, settings: PullerSettings) -> None:
        super().__init__(settings)
        self._files = concurrent.futures.ThreadPoolExecutor(
            FILE_WRITERS, thread_name_prefix="pull-s3-files"
        )

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

    def download(self, source: StorageSource, item: PlannedDownload, ctx: PullContext) -> None:
        """One GET per object below the multipart threshold: for many small files this is
        much cheaper than s3transfer's machinery, and the MD5 is computed as bytes arrive."""
        bucket, _ = self.location(source)
        client = self._client(source)
        attempts = client.attempts
        for attempt in range(attempts):
            digest = hashlib.md5(usedforsecurity=False) if item.obj.md5 else None
            written = 0
            try:
                response = client.s3.get_object(Bucket=bucket, Key=item.obj.key)
                with open(item.target, "wb") as raw:
                    writer = ProgressWriter(raw, ctx, digest)
                    try:
                        for chunk in response["Body"].iter_chunks(CHUNK):
                            writer.write(chunk)
                    finally:
                        written = writer.written
                break
            except STREAM_ERRORS:
                # botocore retries a request, not a body cut short: retry the object.
                ctx.add_bytes(-written)
                if attempt + 1 == attempts:
                    raise
                time.sleep(backoff_delay(attempt))
        if digest is not None and digest.hexdigest() != item.obj.md5:
            self._md5_mismatch(source, item)

    async def fetch(
        self, source: StorageSource, plan: list[PlannedDownload], ctx: PullContext
    ) -> None:
        threshold = self._client(source).transfer.multipart_threshold
        small = [item for item in plan if item.obj.size < threshold]
        big = [item for item in plan if item.obj.size >= threshold]
        if small:
            await self._fetch_small(source, small, ctx)
        if big:
            await self._fetch_ranged(source, big, ctx)

    async def _fetch_small(
        self, source: StorageSource, plan: list[PlannedDownload], ctx: PullContext
    ) -> None:
        """Up to 32 objects in flight on the event loop; on any failure or cancellation
        stop the others and wait for the threads still writing before returning."""
        items = iter(plan)
        in_flight: set[concurrent.futures.Future[Any]] = set()

        async def in_thread(
            pool: concurrent.futures.Executor, fn: Callable[..., T], *args: Any
        ) -> T:
            future = pool.submit(fn, *args)
            in_flight.add(future)
            future.add_done_callback(in_flight.discard)
            return await asyncio.wrap_future(future)

        async def worker() -> None:
            for item in items:
                try:
                    if not await self._get(source, item, ctx, in_thread):
                        # boto3 takes over: its retries, redirects and errors.
                        await in_thread(self._executor, self._download_one, source, item, ctx)
                except (SidecarError, Stopped):
                    raise
                except Exception as exc:
                    raise self.error_for(exc, source, f"downloading {item.obj.key!r}") from None

        tasks = [asyncio.ensure_future(worker()) for _ in range(min(self.workers, len(plan)))]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            ctx.cancelled.set()
            for task in tasks:
                task.cancel()
            # Threads already writing notice `cancelled` at their next write; the caller
            # deletes the partial dir only after that.
            await wait_briefly(asyncio.gather(*tasks, return_exceptions=True))
            running = [asyncio.wrap_future(f) for f in list(in_flight) if not f.done()]
            await wait_briefly(asyncio.gather(*running, return_exceptions=True))
            raise

    async def _get(
        self,
        source: StorageSource,
        item: PlannedDownload,
        ctx: PullContext,
        in_thread: Callable[..., Any],
    ) -> bool:
        """One object by a GET of a presigned URL; False (nothing kept) when boto3 should
        fetch it instead: an answer other than 200, a connection fault, no credentials."""
        import aiohttp
        from yarl import URL

        bucket, _ = self.location(source)
        client = self._client(source)
        try:
            url = client.s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": item.obj.key}
            )
        except botocore.exceptions.BotoCoreError:
            return False
        digest = hashlib.md5(usedforsecurity=False) if item.obj.md5 else None
        sink = _FileSink(item.target, ctx, digest)
        try:
            # The URL is signed as it is: no re-quoting.
            # Redirects go to boto3, which knows S3's (a signed URL is for one host only).
            get = client.http().get(URL(url, encoded=True), allow_redirects=False)
            async with get as response:
                if response.status != 200:
                    return False
                # Bytes are handed to the writer thread in CHUNK pieces: one hop per small file.
                pending = bytearray()
                async for data in response.content.iter_chunked(CHUNK):
                    pending += data
                    if len(pending) >= CHUNK:
                        chunk, pending = bytes(pending), bytearray()
                        await in_thread(self._files, sink.write, chunk)
                await in_thread(self._files, sink.write, bytes(pending), True)
        except (aiohttp.ClientError, TimeoutError):
            await in_thread(self._files, sink.close)
            ctx.add_bytes(-sink.written)
            return False
        if digest is not None and digest.hexdigest() != item.obj.md5:
            await in_thread(self._executor, self._md5_mismatch, source, item)
        ctx.add_bytes(0, files=1)
        return True

    async def close(self) -> None:
        for client in list(self._clients.values()):
            await client.close()
        self._files.shutdown(wait=False, cancel_futures=True)
        await super().close()

    async def _fetch_ranged(
        self, source: StorageSource, plan: list[PlannedDownload], ctx: PullContext
    ) -> None:
        """Big objects: s3transfer's parallel ranged GETs, at most `max_io_queue` chunks
        (8 MiB) buffered, whatever the object's size."""
        bucket, _ = self.location(source)
        client = self._client(source)
        manager = TransferManager(client.s3, client.transfer)
        futures = [
            manager.download(
                bucket, item.obj.key, str(item.target), subscribers=[_Progress(item.obj.size, ctx)]
            )
            for item in plan
        ]

        def wait_all() -> None:
            for future in futures:
                future.result()

        try:
            await self._call(source, "downloading", wait_all)
        except BaseException:
            ctx.cancelled.set()
            # Stops every transfer and waits until none writes, before the caller cleans up.
            await wait_briefly(asyncio.ensure_future(asyncio.to_thread(manager.shutdown, True)))
            raise
        await asyncio.to_thread(manager.shutdown)
        # Ranges arrive out of order, so their MD5 would cost a second read of the whole
        # file (as long again as the download here): big objects are checked by size.

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
        cause: BaseException = exc
        # s3transfer wraps the last error of its retries.
        while getattr(cause, "last_exception", None) is not None:
            cause = cause.last_exception  # type: ignore[attr-defined]
        if isinstance(cause, Stopped):
            return Unavailable(f"{what} {where}: cancelled")
        if isinstance(cause, botocore.exceptions.ClientError):
            error = cause.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            detail = redact(f"{code}: {error.get('Message') or ''}".rstrip(": "), source.config)
            message = f"{what} {where}: {detail}"
            if code in DENIED_CODES or status in (401, 403):
                return PermissionDenied(message)
            if code in MISSING_CODES or status == 404:
                return NotFound(message)
            if code in THROTTLED_CODES or status >= 500 or status == 429:
                return Unavailable(message)
            return InvalidRequest(message)
        if isinstance(
            cause,
            botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError,
        ):
            return PermissionDenied(f"{what} {where}: no usable AWS credentials found")
        if isinstance(cause, botocore.exceptions.SSLError):
            return Unavailable(f"{what} {where}: TLS failure: {redact(cause, source.config)}")
        if isinstance(
            cause,
            botocore.exceptions.EndpointConnectionError
            | botocore.exceptions.ConnectionError
            | botocore.exceptions.HTTPClientError
            | ConnectionError
            | TimeoutError,
        ):
            return Unavailable(f"{what} {where}: store unreachable: {redact(cause, source.config)}")
        if isinstance(cause, botocore.exceptions.ParamValidationError):
            return InvalidRequest(f"{what} {where}: {redact(cause, source.config)}")
        return Unavailable(
            f"{what} {where}: {type(cause).__name__}: {redact(cause, source.config)}"
        )
