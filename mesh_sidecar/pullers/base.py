"""The puller contract: pull a storage source into an empty local dir, or size it.

A puller is one small class per storage `type` of the storage-config secret.
It never imports the adapter: it gets a `StorageSource` (the storage config
merged with the modelKey's overrides, and the model's path in that storage)
and a destination dir, and raises the errors of `mesh_sidecar.errors`.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, ClassVar

from mesh_sidecar.aio import run_stoppable
from mesh_sidecar.errors import InvalidRequest, ResourceExhausted

if TYPE_CHECKING:
    from mesh_sidecar.pullers.archives import ArchiveLimits


#: Limits of Linux file systems (NAME_MAX, and PATH_MAX less room for ROOT_MODEL_DIR).
MAX_NAME_BYTES = 255
MAX_RELATIVE_PATH_BYTES = 3072


@dataclass(frozen=True)
class PullerSettings:
    """What the process knows that pullers need (from the sidecar's environment)."""

    pvc_mounts_dir: Path = Path("/pvc_mounts")
    # A model that is one archive is extracted within these bounds (zip/tar bombs).
    archive_max_bytes: int = 64 * 1024**3
    archive_max_members: int = 100_000


@dataclass(frozen=True)
class StorageSource:
    """A model's location: the resolved storage config and the path inside that storage."""

    type: str
    config: Mapping[str, Any]
    path: str

    def __repr__(self) -> str:  # the config holds secrets: never print it
        return f"StorageSource(type={self.type!r}, path={self.path!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class PullResult:
    """What a pull produced: `path` is the model (a dir, or the single file pulled)."""

    path: Path
    files: int
    bytes: int


@dataclass
class PullProgress:
    """Counters a puller updates as it goes (read by progress bars and metrics)."""

    files: int = 0
    bytes: int = 0
    total_bytes: int | None = None
    listeners: list[Any] = field(default_factory=list)

    def add(self, nbytes: int, files: int = 0) -> None:
        self.bytes += nbytes
        self.files += files
        for listener in self.listeners:
            listener(self)


class Puller(ABC):
    """Pulls models from one storage type. Subclass it, set `type`, implement `pull`.

    One instance serves every pull of the process, so keep clients and
    connection pools on it (keyed by the config they were built from).
    """

    type: ClassVar[str]

    def __init__(self, settings: PullerSettings) -> None:
        self.settings = settings

    @abstractmethod
    async def pull(self, source: StorageSource, dest: Path, progress: PullProgress) -> Path:
        """Write the model's files into `dest` (an empty dir that exists) and answer the
        model's path: `dest` itself for a prefix, or `dest/<name>` for a single object.

        Raise NotFound when nothing is at the path. Every written path must stay inside
        `dest` (use `safe_join`). Partial output is removed by the caller.
        """

    async def size(self, source: StorageSource) -> int | None:
        """Total bytes at the source from the storage's listing, or None if unknown."""
        return None

    async def close(self) -> None:
        """Release clients and pools."""


def safe_join(root: Path, relative: str) -> Path:
    """`root / relative`, refusing any path that would leave `root`.

    Refuses absolute paths, `..` parts, backslashes and NUL rather than
    normalising them: a storage key like that is hostile or broken.
    """
    if not relative or "\x00" in relative or "\\" in relative:
        raise InvalidRequest(f"refusing unsafe path {relative!r}")
    parts = PurePosixPath(relative).parts
    if relative.startswith("/") or any(part in ("..", ".") for part in parts):
        raise InvalidRequest(f"refusing path {relative!r}: it leaves the model directory")
    # Refused here with a clear error rather than failing in the middle of the download.
    if any(len(part.encode()) > MAX_NAME_BYTES for part in parts):
        raise InvalidRequest(
            f"refusing path {_short(relative)}: a name is over {MAX_NAME_BYTES} bytes"
        )
    if len(relative.encode()) > MAX_RELATIVE_PATH_BYTES:
        raise InvalidRequest(
            f"refusing path {_short(relative)}: longer than {MAX_RELATIVE_PATH_BYTES} bytes"
        )
    return root.joinpath(*parts)


def _short(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:80] + "...")


def relative_key(key: str, prefix: str) -> str | None:
    """The part of an object `key` under model `prefix`, or None when it is not the model's.

    `models/mnist` owns the object `models/mnist` (answered as its base name) and the
    objects under `models/mnist/`, never `models/mnist2/...`.
    """
    prefix = prefix.strip("/")
    if not prefix:
        return key
    if key == prefix:
        return PurePosixPath(key).name
    if key.startswith(prefix + "/"):
        return key[len(prefix) + 1 :]
    return None


def tree_size(path: Path) -> tuple[int, int]:
    """(files, bytes) under `path`, following links to files (PVC models are links)."""
    if path.is_file():
        return 1, path.stat().st_size
    files = total = 0
    for dirpath, _dirs, names in os.walk(path, followlinks=True):
        for name in names:
            files += 1
            total += os.stat(os.path.join(dirpath, name)).st_size
    return files, total


async def pull_atomically(
    puller: Puller,
    source: StorageSource,
    target: Path,
    progress: PullProgress | None = None,
) -> PullResult:
    """Pull into a fresh temporary dir beside `target`, then rename it to `target`.

    A failed or cancelled pull leaves nothing: neither the temporary dir nor `target`.
    `target` must not exist yet.
    """
    progress = progress or PullProgress()
    # The name must fit in NAME_MAX even when the target's name already fills it.
    staging = target.parent / f".partial-{target.name[:64]}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        model_path = await puller.pull(source, staging, progress)
        from mesh_sidecar.pullers.archives import ArchiveLimits, single_archive

        archive = single_archive(model_path)
        if archive is not None:
            limits = ArchiveLimits(
                puller.settings.archive_max_bytes, puller.settings.archive_max_members
            )
            await extract_in_place(archive, limits)
            model_path = archive.parent
        staging.rename(target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
            raise ResourceExhausted(f"disk full while pulling {source.path!r}") from exc
        raise
    path = target / model_path.relative_to(staging)
    files, nbytes = tree_size(path)
    return PullResult(path=path, files=files, bytes=nbytes)


async def extract_in_place(archive: Path, limits: ArchiveLimits) -> None:
    """Extract `archive` into its own dir and remove it, in a worker thread.

    On cancellation the worker is told to stop and awaited, so nothing writes into
    the dir after this returns.
    """
    from mesh_sidecar.pullers.archives import extract_archive

    # Moved aside under a name no member is expected to have, so nothing collides with it.
    moved = archive.with_name(f".archive-{uuid.uuid4().hex}")

    def extract(stop: threading.Event) -> None:
        archive.rename(moved)
        try:
            extract_archive(moved, archive.parent, limits, stop, archive.name)
        finally:
            moved.unlink(missing_ok=True)

    await run_stoppable(extract)
