"""The pvc puller links a claim's files and refuses anything that leaves the claim."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mesh_sidecar.errors import InvalidRequest, NotFound
from mesh_sidecar.pullers.base import PullerSettings, StorageSource, pull_atomically
from mesh_sidecar.pullers.pvc import PvcPuller


@pytest.fixture
def claim(tmp_path: Path) -> Path:
    claim = tmp_path / "pvc" / "claim1"
    (claim / "models" / "m1" / "1").mkdir(parents=True)
    (claim / "models" / "m1" / "model.txt").write_text("hello ")
    (claim / "models" / "m1" / "1" / "weights.bin").write_bytes(b"\0" * 100)
    (claim / "models" / "m1" / "empty").write_bytes(b"")
    (claim / "models" / "single.onnx").write_bytes(b"onnx")
    return claim


def _puller(tmp_path: Path) -> PvcPuller:
    return PvcPuller(PullerSettings(pvc_mounts_dir=tmp_path / "pvc"))


def _source(path: str, name: str = "claim1") -> StorageSource:
    return StorageSource("pvc", {"type": "pvc", "name": name}, path)


async def test_dir_is_linked_not_copied(tmp_path: Path, claim: Path) -> None:
    target = tmp_path / "models" / "m1"
    target.parent.mkdir()
    result = await pull_atomically(_puller(tmp_path), _source("models/m1"), target)
    assert result.path == target
    assert (result.files, result.bytes) == (3, 106)
    assert (target / "model.txt").is_symlink()
    assert (target / "model.txt").read_text() == "hello "
    assert os.readlink(target / "1" / "weights.bin") == str(claim / "models/m1/1/weights.bin")
    assert (target / "empty").read_bytes() == b""
    assert sorted(p.name for p in target.parent.iterdir()) == ["m1"]


async def test_single_file_lands_under_its_name(tmp_path: Path, claim: Path) -> None:
    target = tmp_path / "out"
    result = await pull_atomically(_puller(tmp_path), _source("/models/single.onnx"), target)
    assert result.path == target / "single.onnx"
    assert result.bytes == 4


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("models/missing", NotFound),
        ("../claim2/x", InvalidRequest),
        ("models/../../x", InvalidRequest),
    ],
)
async def test_bad_paths(tmp_path: Path, claim: Path, path: str, error: type[Exception]) -> None:
    target = tmp_path / "out"
    with pytest.raises(error):
        await pull_atomically(_puller(tmp_path), _source(path), target)
    assert not target.exists()
    assert list(tmp_path.glob(".partial-*")) == []


async def test_unknown_claim_is_not_found(tmp_path: Path, claim: Path) -> None:
    with pytest.raises(NotFound, match="claim9"):
        await pull_atomically(_puller(tmp_path), _source("models/m1", "claim9"), tmp_path / "o")


async def test_links_leaving_the_claim_are_refused(tmp_path: Path, claim: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    (claim / "models" / "m1" / "leak.txt").symlink_to(secret)
    (claim / "models" / "outside").symlink_to(tmp_path)
    for path in ("models/m1", "models/outside"):
        target = tmp_path / "out"
        with pytest.raises(InvalidRequest, match=r"outside the PVC|leaves PVC"):
            await pull_atomically(_puller(tmp_path), _source(path), target)
        assert not target.exists()
    assert list(tmp_path.glob(".partial-*")) == []


async def test_size_is_the_sum_of_the_files(tmp_path: Path, claim: Path) -> None:
    assert await _puller(tmp_path).size(_source("models/m1")) == 106
