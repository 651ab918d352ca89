"""The archive part of the hostile-input corpus, built when the test runs (binary
archives are easier to review as the code that makes them).

Each entry: file name -> (archive bytes, status codes a load of it may end with).
The sidecar of the corpus test runs with ARCHIVE_MAX_BYTES = 16 MiB and
ARCHIVE_MAX_MEMBERS = 1000, so the bombs below are over its limits.
"""

from __future__ import annotations

import tarfile

from mesh_sidecar.testing.archives import (
    good_tar,
    good_zip,
    hostile_archives,
    tar_bomb,
    tar_bytes,
    zip_bomb,
    zip_bytes,
)

MAX_BYTES = 16 * 1024 * 1024
MAX_MEMBERS = 1000
REFUSED = ("INVALID_ARGUMENT",)


def _many(count: int) -> list[tarfile.TarInfo | tuple[str, bytes]]:
    return [(f"f{i}", b"") for i in range(count)]


def corpus_archives() -> dict[str, tuple[bytes, tuple[str, ...]]]:
    archives = {name: (data, REFUSED) for name, data in hostile_archives().items()}
    archives.update(
        {
            "duplicate.tar.gz": (tar_bytes([("a.txt", b"1"), ("a.txt", b"2")]), REFUSED),
            "duplicate.zip": (zip_bytes([("a.txt", b"1"), ("a.txt", b"2")]), REFUSED),
            "file-then-dir.tar": (tar_bytes([("x", b"1"), ("x/y", b"2")], "w"), REFUSED),
            "truncated.tar.gz": (good_tar()[: len(good_tar()) // 2], REFUSED),
            "truncated.zip": (good_zip()[: len(good_zip()) // 2], REFUSED),
            "not-an-archive.tar.gz": (b"this is not gzip data at all", REFUSED),
            "empty.zip": (b"", REFUSED),
            "bomb-by-ratio.zip": (zip_bomb(2 * MAX_BYTES), REFUSED),
            "bomb-by-ratio.tar.gz": (tar_bomb(2 * MAX_BYTES), REFUSED),
            "bomb-by-count.tar.gz": (tar_bytes(_many(2 * MAX_MEMBERS)), REFUSED),
            "bomb-by-count.zip": (
                zip_bytes([(f"f{i}", b"") for i in range(2 * MAX_MEMBERS)]),
                REFUSED,
            ),
            "good.tar.gz": (tar_bytes([("model.txt", b"hello ")]), ("OK",)),
            "good.zip": (zip_bytes([("model.txt", b"hello ")]), ("OK",)),
        }
    )
    return archives
