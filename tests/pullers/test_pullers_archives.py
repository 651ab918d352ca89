"""Archive extraction: good archives of every format, and hostile ones refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from trees import entries, tree

from mesh_sidecar.errors import InvalidRequest
from mesh_sidecar.pullers.archives import (
    ArchiveLimits,
    extract_archive,
    is_archive,
    single_archive,
)
from mesh_sidecar.testing.archives import good_tar, good_zip, hostile_archives, tar_bomb, zip_bomb

GOOD_TREE = {"config.pbtxt": b"name: 'm'", "1/model.onnx": b"\x00" * 1000, "empty": b""}


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("m.tar", good_tar("w")),
        ("m.tar.gz", good_tar("w:gz")),
        ("m.tgz", good_tar("w:gz")),
        ("m.tar.bz2", good_tar("w:bz2")),
        ("m.tar.xz", good_tar("w:xz")),
        ("m.zip", good_zip()),
    ],
)
def test_every_format_extracts_its_files(tmp_path: Path, name: str, data: bytes) -> None:
    archive = tmp_path / name
    archive.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    extract_archive(archive, out)
    assert tree(out) == GOOD_TREE


@pytest.mark.parametrize("name", sorted(hostile_archives()))
def test_hostile_members_are_refused(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "in" / name
    archive.parent.mkdir()
    archive.write_bytes(hostile_archives()[name])
    out = tmp_path / "deep" / "out"
    out.mkdir(parents=True)
    with pytest.raises(InvalidRequest, match="refusing"):
        extract_archive(archive, out)
    # Nothing outside the destination, and no link or special file inside it.
    assert entries(tmp_path) == sorted(["deep", "deep/out", "in", f"in/{name}", *_inside(out)])
    assert all(p.is_file() and not p.is_symlink() for p in out.rglob("*") if not p.is_dir())
    assert not Path("/tmp/absolute-escape.txt").exists()


def _inside(out: Path) -> list[str]:
    return [f"deep/out/{p.relative_to(out).as_posix()}" for p in out.rglob("*")]


@pytest.mark.parametrize(("name", "make"), [("bomb.zip", zip_bomb), ("bomb.tar.gz", tar_bomb)])
def test_a_bomb_stops_at_the_size_limit(tmp_path: Path, name: str, make: object) -> None:
    archive = tmp_path / name
    archive.write_bytes(make(64 * 1024 * 1024))  # type: ignore[operator]
    assert archive.stat().st_size < 1024 * 1024
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InvalidRequest, match="beyond"):
        extract_archive(archive, out, ArchiveLimits(max_bytes=8 * 1024 * 1024))
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) <= 8 * 1024 * 1024


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "many.zip"
    from mesh_sidecar.testing.archives import zip_bytes

    archive.write_bytes(zip_bytes([(f"f{i}", b"") for i in range(20)]))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InvalidRequest, match="more than 10 members"):
        extract_archive(archive, out, ArchiveLimits(max_members=10))


def test_a_corrupt_archive_is_an_invalid_request(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"this is an error page, not a gzip stream")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InvalidRequest, match="not a readable tar"):
        extract_archive(archive, out)


def test_only_a_lone_archive_is_extracted(tmp_path: Path) -> None:
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "model.zip").write_bytes(good_zip())
    assert single_archive(lone) == lone / "model.zip"
    assert single_archive(lone / "model.zip") == lone / "model.zip"
    (lone / "README").write_text("two entries: a model dir that happens to hold a zip")
    assert single_archive(lone) is None
    assert not is_archive(Path("model.onnx"))
    assert is_archive(Path("MODEL.TAR.GZ"))
