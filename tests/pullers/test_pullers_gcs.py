"""GCS puller against gcp-storage-emulator (and a token server of ours that refuses).

The emulator stores no key with `..` in it; that case is covered for every store by
the listing tests of test_pullers_objectstore.py and against S3.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from trees import entries, tree

from mesh_sidecar.errors import InvalidRequest, NotFound, PermissionDenied
from mesh_sidecar.pullers.base import PullerSettings, StorageSource, pull_atomically
from mesh_sidecar.pullers.gcs import GcsPuller
from mesh_sidecar.testing.archives import good_zip
from mesh_sidecar.testing.storage import FileServer

MODEL = {
    "models/mnist/model.bin": os.urandom(3000),
    "models/mnist/sub/config.json": b'{"a": 1}',
    "models/mnist/empty.txt": b"",
    "models/mnist/folder/": b"",
    "models/mnist2/other.bin": b"not mnist",
    "archives/model.zip": good_zip(),
}


@pytest.fixture(scope="module")
def gcs(gcs_server: str) -> dict[str, Any]:
    from google.cloud import storage

    client = storage.Client.create_anonymous_client()
    bucket = client.create_bucket("models")
    for key, body in MODEL.items():
        bucket.blob(key).upload_from_string(body)
    return {"type": "gcs", "bucket": "models"}


async def pull(config: dict[str, Any], path: str, dest: Path) -> Path:
    puller = GcsPuller(PullerSettings())
    try:
        return (await pull_atomically(puller, StorageSource("gcs", config, path), dest)).path
    finally:
        await puller.close()


async def test_pulls_the_objects_under_a_prefix_only(gcs: dict[str, Any], tmp_path: Path) -> None:
    path = await pull(gcs, "models/mnist", tmp_path / "m")
    assert tree(path) == {
        "empty.txt": b"",
        "model.bin": MODEL["models/mnist/model.bin"],
        "sub/config.json": b'{"a": 1}',
    }


async def test_a_single_object_and_the_size(gcs: dict[str, Any], tmp_path: Path) -> None:
    path = await pull(gcs, "models/mnist/model.bin", tmp_path / "m")
    assert path == tmp_path / "m" / "model.bin"
    puller = GcsPuller(PullerSettings())
    assert await puller.size(StorageSource("gcs", gcs, "models/mnist")) == 3008
    await puller.close()


async def test_an_archive_is_extracted(gcs: dict[str, Any], tmp_path: Path) -> None:
    path = await pull(gcs, "archives/model.zip", tmp_path / "m")
    assert sorted(tree(path)) == ["1/model.onnx", "config.pbtxt", "empty"]


@pytest.mark.parametrize(("bucket", "path"), [("models", "models/none"), ("nobucket", "x")])
async def test_nothing_at_the_path_is_not_found(
    gcs: dict[str, Any], tmp_path: Path, bucket: str, path: str
) -> None:
    with pytest.raises(NotFound):
        await pull({**gcs, "bucket": bucket}, path, tmp_path / "m")
    assert entries(tmp_path) == []


async def test_a_refused_service_account_is_permission_denied(
    gcs: dict[str, Any], http_server: FileServer, tmp_path: Path
) -> None:
    # The emulator checks no credentials; the token endpoint is where a bad key fails.
    http_server.add(
        "/token",
        json.dumps({"error": "invalid_grant", "error_description": "Invalid JWT"}).encode(),
        status=400,
        headers={"Content-Type": "application/json"},
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    config = {
        **gcs,
        "private_key": pem,
        "client_email": "puller@project.iam.gserviceaccount.com",
        "token_uri": f"{http_server.url}/token",
        "retry_timeout": "2",
    }
    with pytest.raises(PermissionDenied) as caught:
        await pull(config, "models/mnist", tmp_path / "m")
    assert "PRIVATE KEY" not in str(caught.value)
    assert entries(tmp_path) == []


async def test_a_malformed_private_key_is_an_invalid_request(
    gcs: dict[str, Any], tmp_path: Path
) -> None:
    config = {**gcs, "private_key": "not-a-key-at-all", "client_email": "a@b.c"}
    with pytest.raises(InvalidRequest, match="private_key") as caught:
        await pull(config, "models/mnist", tmp_path / "m")
    assert "not-a-key-at-all" not in str(caught.value)
