"""Safe extraction of a model that arrives as one archive (.zip, .tar, .tar.gz/.tgz,
.tar.bz2, .tar.xz), whatever storage it came from.

Only regular files and directories are extracted. A member with `..` or an absolute
path, a link (symbolic or hard), a device or a fifo fails the whole extraction; so
does an archive with more members or more bytes than the limits (a bomb stops at the
limit, long before the disk fills). The caller removes the partial output.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mesh_sidecar.aio import Stopped
from mesh_sidecar.errors import InvalidRequest, ResourceExhausted
from mesh_sidecar.pullers.base import safe_join

GiB = 1024**3
CHUNK = 1024 * 1024
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what one archive may expand to."""

    max_bytes: int = 64 * GiB
    max_members: int = 100_000


def is_archive(path: Path) -> bool:
    """Whether the file name has one of the archive suffixes we extract."""
    name = path.name.lower()
    return name.endswith(TAR_SUFFIXES + ZIP_SUFFIXES)


def single_archive(model_path: Path) -> Path | None:
    """The archive to extract when the pulled model is exactly one archive file:
    `model_path` itself, or the only entry of the `model_path` dir."""
    if model_path.is_dir():
        entries = list(model_path.iterdir())
        if len(entries) != 1:
            return None
        model_path = entries[0]
    if model_path.is_file() and is_archive(model_path):
        return model_path
    return None


class _Budget:
    def __init__(self, dest: Path, limits: ArchiveLimits, cancel: threading.Event | None) -> None:
        self.limits = limits
        self.free = shutil.disk_usage(dest).free
        self.members = 0
        self.bytes = 0
        self.cancel = cancel

    def member(self, name: str) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise InvalidRequest(
                f"archive has more than {self.limits.max_members} members; refusing it"
            )
        if self.cancel is not None and self.cancel.is_set():
            raise Stopped

    def reserve(self, nbytes: int, name: str) -> None:
        self.bytes += nbytes
        if self.bytes > self.limits.max_bytes:
            raise InvalidRequest(
                f"archive expands beyond {self.limits.max_bytes} bytes (at {name!r}); refusing it"
            )
        if self.bytes > self.free:
            raise ResourceExhausted(f"archive expands beyond the free disk space (at {name!r})")

    def copy(self, src: IO[bytes], target: Path, declared: int, name: str) -> None:
        written = 0
        try:
            out = open(target, "xb")  # noqa: SIM115 - closed by the with below
        except (FileExistsError, IsADirectoryError, NotADirectoryError):
            raise InvalidRequest(f"archive member {name!r} collides with another member") from None
        with out:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                # Never trust the declared size alone: stop at it even if the data goes on.
                if written > declared:
                    raise InvalidRequest(f"archive member {name!r} is larger than it declares")
                if self.cancel is not None and self.cancel.is_set():
                    raise Stopped
                out.write(chunk)


def _member_path(dest: Path, name: str) -> Path | None:
    """Where a member goes, or None for the archive's root entry ("./")."""
    cleaned = name
    while cleaned.startswith("./"):
        cleaned = cleaned[2:]
    cleaned = cleaned.rstrip("/")
    if cleaned in ("", "."):
        return None
    if name.startswith("/"):
        raise InvalidRequest(f"refusing archive member {name!r}: absolute path")
    return safe_join(dest, cleaned)


def _extract_tar(archive: Path, dest: Path, budget: _Budget, name: str) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            # Iterating streams the members: a compressed tar is read once.
            for member in tar:
                budget.member(member.name)
                target = _member_path(dest, member.name)
                if member.isdir():
                    if target is not None:
                        _make_dir(target, name)
                    continue
                if not member.isreg():
                    kind = (
                        "link"
                        if member.issym() or member.islnk()
                        else "device or fifo"
                        if member.isdev()
                        else "special file"
                    )
                    raise InvalidRequest(f"refusing archive member {member.name!r}: a {kind}")
                if target is None:
                    raise InvalidRequest(f"refusing archive member {member.name!r}")
                budget.reserve(member.size, member.name)
                _make_dir(target.parent, name)
                src = tar.extractfile(member)
                if src is None:  # pragma: no cover - isreg() members always have data
                    raise InvalidRequest(f"archive member {member.name!r} has no data")
                budget.copy(src, target, member.size, member.name)
                if member.mode & stat.S_IXUSR:
                    target.chmod(0o755)
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidRequest(f"{name!r} is not a readable tar archive: {exc}") from None


def _extract_zip(archive: Path, dest: Path, budget: _Budget, name: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > budget.limits.max_members:
                raise InvalidRequest(
                    f"archive has more than {budget.limits.max_members} members; refusing it"
                )
            # Declared sizes first: a bomb is refused before a byte is written.
            declared = sum(m.file_size for m in members)
            if declared > budget.limits.max_bytes:
                raise InvalidRequest(
                    f"archive expands to {declared} bytes, beyond {budget.limits.max_bytes}; "
                    "refusing it"
                )
            for member in members:
                budget.member(member.filename)
                mode = member.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise InvalidRequest(f"refusing archive member {member.filename!r}: a link")
                # Zips from non-Unix tools carry no file type at all: that is a plain file.
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise InvalidRequest(
                        f"refusing archive member {member.filename!r}: a special file"
                    )
                target = _member_path(dest, member.filename)
                if member.is_dir():
                    if target is not None:
                        _make_dir(target, name)
                    continue
                if target is None:
                    raise InvalidRequest(f"refusing archive member {member.filename!r}")
                budget.reserve(member.file_size, member.filename)
                _make_dir(target.parent, name)
                with zf.open(member) as src:
                    budget.copy(src, target, member.file_size, member.filename)
                if mode & stat.S_IXUSR:
                    target.chmod(0o755)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise InvalidRequest(f"{name!r} is not a readable zip archive: {exc}") from None


def extract_archive(
    archive: Path,
    dest: Path,
    limits: ArchiveLimits | None = None,
    cancel: threading.Event | None = None,
    name: str | None = None,
) -> None:
    """Extract `archive` into the existing dir `dest` (blocking; run it in a thread).

    Raises InvalidRequest for a hostile or unreadable archive, ResourceExhausted when
    it would not fit on the disk, Stopped once `cancel` is set. Partial
    output is left for the caller to remove. `name` is the archive's own name when the
    file was moved aside (it decides the format and appears in messages).
    """
    budget = _Budget(dest, limits or ArchiveLimits(), cancel)
    name = name or archive.name
    if name.lower().endswith(ZIP_SUFFIXES):
        _extract_zip(archive, dest, budget, name)
    else:
        _extract_tar(archive, dest, budget, name)


def _make_dir(path: Path, member: str) -> None:
    """mkdir -p, where a file already in the way means two members collide."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InvalidRequest(f"archive member {member!r} collides with another member") from None
