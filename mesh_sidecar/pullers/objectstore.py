"""What every object-store puller shares: listing semantics, a bounded worker pool,
cancellation and size checks. A store-specific subclass lists and downloads one object.

Listing semantics (the same for S3, GCS and Azure): `models/mnist` means the object
`models/mnist` or the objects under `models/mnist/`, never `models/mnist2/...`; keys
ending in `/` are folder markers; every key is checked with `safe_join` before
anything is written, so a hostile key fails the pull with nothing written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import random
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from mesh_sidecar.aio import Stopped
from mesh_sidecar.errors import (
    InvalidRequest,
    NotFound,
    ResourceExhausted,
    SidecarError,
    Unavailable,
)
from mesh_sidecar.pullers.base import (
    Puller,
    PullerSettings,
    PullProgress,
    StorageSource,
    relative_key,
    safe_join,
)

T = TypeVar("T")

# Threads per puller: the SDK calls block, and many small files need many requests in flight.
DEFAULT_WORKERS = 32
# How long a cancelled or failed pull waits for its workers to notice before returning.
CANCEL_GRACE = 2.0


@dataclass(frozen=True)
class StoredObject:
    """One object of a listing: its full key, its size and the checksum the store gave."""

    key: str
    size: int
    md5: str | None = None  # hex digest, when the store gives a whole-object MD5


@dataclass(frozen=True)
class PlannedDownload:
    """An object and the local file it goes to."""

    obj: StoredObject
    target: Path


class PullContext:
    """What a download worker needs beside the object: the cancel flag and a byte counter."""

    def __init__(self, progress: PullProgress) -> None:
        self.cancelled = threading.Event()
        self._progress = progress
        self._lock = threading.Lock()

    def check(self) -> None:
        """Stop the worker (raise Stopped) once the pull was cancelled."""
        if self.cancelled.is_set():
            raise Stopped

    def add_bytes(self, nbytes: int, files: int = 0) -> None:
        # Workers report from many threads; progress listeners expect one at a time.
        with self._lock:
            self._progress.add(nbytes, files)


class ProgressWriter:
    """A binary file wrapper for SDKs that write into a file object: counts bytes for the
    progress, hashes them when asked, and stops the SDK mid-object once the pull is
    cancelled (its next write raises Stopped)."""

    def __init__(self, raw: BinaryIO, ctx: PullContext, digest: Any = None) -> None:
        self._raw = raw
        self._ctx = ctx
        self.digest = digest
        self.written = 0
        # Parallel range downloads write out of order; the digest then means nothing.
        self.in_order = True
        self._next = 0

    def write(self, data: bytes) -> int:
        self._ctx.check()
        if self.in_order and self.digest is not None and self._raw.tell() != self._next:
            self.in_order = False
        count = self._raw.write(data)
        self._next += len(data)
        if self.digest is not None:
            self.digest.update(data)
        self.written += len(data)
        self._ctx.add_bytes(len(data))
        return count

    def seek(self, offset: int, whence: int = 0) -> int:
        # A retried download may rewind; the hash must then start over.
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def flush(self) -> None:
        self._raw.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._raw.seekable()


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before retry `attempt` (0-based): exponential, jittered, at most 5 s."""
    return min(5.0, 0.2 * 2.0**attempt) * random.uniform(0.5, 1.0)


def config_number(config: Mapping[str, Any], name: str, default: float) -> float:
    """A numeric config field; storage_params overrides arrive as strings."""
    value = config.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"storage config field {name!r} must be a number") from None
    if number < 0:
        raise InvalidRequest(f"storage config field {name!r} must not be negative")
    return number


def config_flag(config: Mapping[str, Any], name: str) -> bool:
    """A boolean config field (true/false, or the strings of storage_params)."""
    value = config.get(name, False)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def config_key(config: Mapping[str, Any], fields: Iterable[str]) -> tuple[Any, ...]:
    """A hashable key of the fields a client is built from (clients are cached by it)."""
    return tuple(repr(config.get(name)) for name in fields)


def plan_downloads(
    objects: Iterable[StoredObject], prefix: str, dest: Path
) -> list[PlannedDownload]:
    """Which objects belong to the model at `prefix`, and where each one goes under `dest`.

    Folder markers are skipped; a key that would leave `dest` fails the whole plan
    (InvalidRequest) before anything is written.
    """
    planned: dict[Path, PlannedDownload] = {}
    for obj in objects:
        relative = relative_key(obj.key, prefix)
        if relative is None or obj.key.endswith("/"):
            continue
        target = safe_join(dest, relative)
        planned[target] = PlannedDownload(obj, target)
    # A key that is also a "directory" of another key cannot be laid out as files.
    targets = set(planned)
    for target in targets:
        for parent in target.relative_to(dest).parents:
            if parent != Path(".") and dest / parent in targets:
                raise InvalidRequest(
                    f"object {parent.as_posix()!r} is both a file and a folder of the model"
                )
    return sorted(planned.values(), key=lambda p: p.target)


class ObjectStorePuller(Puller):
    """Base of the S3, GCS and Azure pullers: subclasses implement three blocking calls.

    `list_objects` lists the keys that start with a prefix, `download` writes one
    object to a local file (checking `ctx.check()` between chunks), and `translate`
    turns an SDK exception into an error of `mesh_sidecar.errors` with no secret in it.
    They run in this puller's bounded thread pool, never on the event loop. A store
    whose library downloads many objects by itself overrides `fetch` instead of
    `download` (S3, through the CRT).
    """

    workers: int = DEFAULT_WORKERS

    def __init__(self, settings: PullerSettings) -> None:
        super().__init__(settings)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self.workers, thread_name_prefix=f"pull-{self.type}"
        )
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._clients_lock = threading.Lock()

    # -- what a store implements ------------------------------------------------------

    @abstractmethod
    def location(self, source: StorageSource) -> tuple[str, str]:
        """(bucket or container, prefix) of the source; InvalidRequest when incomplete."""

    @abstractmethod
    def list_objects(self, source: StorageSource, prefix: str) -> Iterable[StoredObject]:
        """Every object whose key starts with `prefix` (blocking)."""

    def download(self, source: StorageSource, item: PlannedDownload, ctx: PullContext) -> None:
        """Write one object to `item.target` (its parent exists), reporting bytes (blocking).

        Used by `fetch`; a store whose library fetches many objects at once overrides
        `fetch` instead (S3).
        """
        raise NotImplementedError

    @abstractmethod
    def translate(self, exc: Exception, source: StorageSource, what: str) -> SidecarError:
        """The error of `mesh_sidecar.errors` for an SDK exception; never a secret in it."""

    # -- shared machinery ----------------------------------------------------------

    def client_for(self, key: tuple[Any, ...], build: Callable[[], T]) -> T:
        """The client built for this storage config, built once and reused across pulls."""
        with self._clients_lock:
            client = self._clients.get(key)
            if client is None:
                client = build()
                self._clients[key] = client
            return client

    async def _call(self, source: StorageSource, what: str, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except (SidecarError, Stopped):
            raise
        except Exception as exc:
            raise self.error_for(exc, source, what) from None

    def error_for(self, exc: Exception, source: StorageSource, what: str) -> SidecarError:
        """`translate`, except a full disk, which is the same for every store."""
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return ResourceExhausted(f"disk full while {what}")
        return self.translate(exc, source, what)

    async def _listing(self, source: StorageSource) -> tuple[str, list[StoredObject]]:
        _, prefix = self.location(source)
        # Listing "models/mnist" also finds "models/mnist2/..."; plan_downloads drops those.
        objects = await self._call(
            source, "listing", lambda: list(self.list_objects(source, prefix))
        )
        return prefix, objects

    async def size(self, source: StorageSource) -> int | None:
        """Sum of the sizes in the listing (no download)."""
        prefix, objects = await self._listing(source)
        owned = [o for o in objects if relative_key(o.key, prefix) is not None]
        return sum(o.size for o in owned if not o.key.endswith("/"))

    async def pull(self, source: StorageSource, dest: Path, progress: PullProgress) -> Path:
        prefix, objects = await self._listing(source)
        plan = plan_downloads(objects, prefix, dest)
        if not plan:
            bucket, _ = self.location(source)
            raise NotFound(f"no objects at {self.type}://{bucket}/{prefix}")
        progress.total_bytes = sum(item.obj.size for item in plan)
        for parent in sorted({item.target.parent for item in plan}):
            parent.mkdir(parents=True, exist_ok=True)
        ctx = PullContext(progress)
        await self.fetch(source, plan, ctx)
        for item in plan:
            actual = item.target.stat().st_size
            if actual != item.obj.size:
                raise Unavailable(
                    f"{item.obj.key!r}: got {actual} bytes, the listing says {item.obj.size}"
                )
        single = plan[0]
        if len(plan) == 1 and single.obj.key.strip("/") == prefix:
            return single.target
        return dest

    async def fetch(
        self, source: StorageSource, plan: list[PlannedDownload], ctx: PullContext
    ) -> None:
        """Download every planned object in the pool; on any failure or cancellation
        stop the other workers and wait for them before returning."""
        futures = [self._executor.submit(self._download_one, source, item, ctx) for item in plan]
        await wait_all_or_stop(futures, ctx.cancelled)

    def _download_one(self, source: StorageSource, item: PlannedDownload, ctx: PullContext) -> None:
        ctx.check()
        try:
            self.download(source, item, ctx)
        except (SidecarError, Stopped):
            raise
        except Exception as exc:
            raise self.error_for(exc, source, f"downloading {item.obj.key!r}") from None
        ctx.add_bytes(0, files=1)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._clients.clear()


async def wait_all_or_stop(
    futures: list[concurrent.futures.Future[Any]], stop: threading.Event
) -> None:
    """Await every worker; at the first failure or a cancellation, set `stop` so the
    workers give up, wait until none is still running, then re-raise."""
    try:
        await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
    except BaseException:
        stop.set()
        for future in futures:
            future.cancel()  # those not started yet never start
        # Workers already running notice `stop` within one chunk; the caller deletes the
        # partial dir only after that, so nothing is written into a dir being removed.
        remaining = asyncio.gather(
            *(asyncio.wrap_future(f) for f in futures if not f.done()), return_exceptions=True
        )
        await wait_briefly(remaining)
        raise


async def wait_briefly(work: asyncio.Future[Any]) -> None:
    """Wait for `work` (workers winding down after a stop) through further cancellations,
    but at most CANCEL_GRACE seconds: a worker blocked in a stalled read cannot be
    interrupted, and the pull must stop promptly. Such a worker fails on its next write
    (the pull's dir is gone by then) and leaves nothing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CANCEL_GRACE
    while not work.done():
        left = deadline - loop.time()
        if left <= 0:
            return
        try:
            await asyncio.wait_for(asyncio.shield(work), left)
        except asyncio.CancelledError:
            continue
        except (TimeoutError, Exception):
            return
