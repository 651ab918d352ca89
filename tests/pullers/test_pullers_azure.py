"""Azure puller against Azurite: connection string, account key, SAS token, anonymous,
and a service principal (Azurite over HTTPS, with an Entra ID stand-in for its token).

Azurite stores no blob name with `..` in it; that case is covered for every store by
test_pullers_objectstore.py and against S3.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from trees import entries, tree

from mesh_sidecar.errors import NotFound, PermissionDenied, Unavailable
from mesh_sidecar.pullers.azure import AzurePuller
from mesh_sidecar.pullers.base import PullerSettings, StorageSource, pull_atomically
from mesh_sidecar.testing.archives import good_tar
from mesh_sidecar.testing.storage import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    EntraIdStandIn,
    FileServer,
    Pki,
)

MODEL = {
    "models/mnist/model.bin": os.urandom(3000),
    "models/mnist/sub/config.json": b'{"a": 1}',
    "models/mnist/empty.txt": b"",
    "models/mnist/folder/": b"",
    "models/mnist2/other.bin": b"not mnist",
    "archives/model.tar.gz": good_tar(),
}
EXPECTED = {
    "empty.txt": b"",
    "model.bin": MODEL["models/mnist/model.bin"],
    "sub/config.json": b'{"a": 1}',
}


def connection_string(account_url: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={account_url};"
    )


@pytest.fixture(scope="module")
def account_url(azurite: str) -> str:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string(azurite))
    private = service.create_container("models")
    public = service.create_container("public", public_access="container")
    for key, body in MODEL.items():
        private.upload_blob(key, body)
    public.upload_blob("models/mnist/model.bin", MODEL["models/mnist/model.bin"])
    return azurite


async def pull(config: dict[str, Any], path: str, dest: Path) -> Path:
    puller = AzurePuller(PullerSettings())
    try:
        return (await pull_atomically(puller, StorageSource("azure", config, path), dest)).path
    finally:
        await puller.close()


async def test_connection_string_pulls_the_prefix_only(account_url: str, tmp_path: Path) -> None:
    config = {
        "type": "azure",
        "connection_string": connection_string(account_url),
        "container": "models",
    }
    assert tree(await pull(config, "models/mnist", tmp_path / "m")) == EXPECTED


async def test_account_key_with_any_endpoint(account_url: str, tmp_path: Path) -> None:
    config = {
        "type": "azure",
        "account_name": AZURITE_ACCOUNT,
        "account_key": AZURITE_KEY,
        "account_url": account_url,
        "container": "models",
    }
    path = await pull(config, "models/mnist/model.bin", tmp_path / "m")
    assert path == tmp_path / "m" / "model.bin"
    assert path.read_bytes() == MODEL["models/mnist/model.bin"]
    puller = AzurePuller(PullerSettings())
    assert await puller.size(StorageSource("azure", config, "models/mnist")) == 3008
    await puller.close()


async def test_a_sas_token_and_the_modelkey_bucket(account_url: str, tmp_path: Path) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    sas = generate_container_sas(
        AZURITE_ACCOUNT,
        "models",
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
    )
    config = {
        "type": "azure",
        "account_url": account_url,
        "sas_token": sas,
        "container": "elsewhere",
        "bucket": "models",  # the modelKey's bucket wins over the config's container
    }
    assert tree(await pull(config, "models/mnist", tmp_path / "m")) == EXPECTED


async def test_anonymous_read_of_a_public_container(account_url: str, tmp_path: Path) -> None:
    config = {"type": "azure", "account_url": account_url, "container": "public"}
    path = await pull(config, "models/mnist", tmp_path / "m")
    assert tree(path) == {"model.bin": MODEL["models/mnist/model.bin"]}


async def test_an_archive_is_extracted(account_url: str, tmp_path: Path) -> None:
    config = {
        "type": "azure",
        "connection_string": connection_string(account_url),
        "container": "models",
    }
    path = await pull(config, "archives/model.tar.gz", tmp_path / "m")
    assert sorted(tree(path)) == ["1/model.onnx", "config.pbtxt", "empty"]


async def test_a_wrong_key_is_permission_denied_without_secrets(
    account_url: str, tmp_path: Path
) -> None:
    wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    config = {
        "type": "azure",
        "connection_string": connection_string(account_url).replace(AZURITE_KEY, wrong_key),
        "container": "models",
    }
    with pytest.raises(PermissionDenied) as caught:
        await pull(config, "models/mnist", tmp_path / "m")
    assert wrong_key not in str(caught.value)
    assert entries(tmp_path) == []


async def test_a_private_container_refuses_anonymous_access(
    account_url: str, tmp_path: Path
) -> None:
    config = {"type": "azure", "account_url": account_url, "container": "models", "max_attempts": 1}
    with pytest.raises((PermissionDenied, NotFound)):
        await pull(config, "models/mnist", tmp_path / "m")


async def test_a_busy_store_is_asked_again(tmp_path: Path) -> None:
    # Azurite cannot be told to fail: a scripted server answers the listing
    # 503 twice, then with an empty container.
    server = FileServer()
    empty = (
        b'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ContainerName="models">'
        b"<Prefix>models/m</Prefix><Blobs /><NextMarker /></EnumerationResults>"
    )
    listing = server.add(
        "/devstoreaccount1/models",
        empty,
        fail_first=[503, 503],
        headers={"Content-Type": "application/xml"},
    )
    config = {
        "type": "azure",
        "account_url": f"{server.url}/devstoreaccount1",
        "container": "models",
        "sas_token": "sv=2024-11-04&sig=x",
    }
    try:
        with pytest.raises(NotFound):
            await pull(config, "models/m", tmp_path / "m")
    finally:
        server.stop()
    assert listing.hits == 3


@pytest.mark.parametrize(("container", "path"), [("models", "models/none"), ("nothere", "x")])
async def test_nothing_at_the_path_is_not_found(
    account_url: str, tmp_path: Path, container: str, path: str
) -> None:
    config = {
        "type": "azure",
        "connection_string": connection_string(account_url),
        "container": container,
    }
    with pytest.raises(NotFound):
        await pull(config, path, tmp_path / "m")
    assert entries(tmp_path) == []


async def test_a_big_blob_in_parallel_ranges_is_checked_against_its_md5(
    account_url: str, tmp_path: Path
) -> None:
    from azure.storage.blob import BlobServiceClient, ContentSettings

    big = os.urandom(40 * 1024 * 1024 + 7)  # above the SDK's single-GET size
    container = BlobServiceClient.from_connection_string(
        connection_string(account_url)
    ).get_container_client("models")
    container.upload_blob(
        "big/weights.bin",
        big,
        content_settings=ContentSettings(content_md5=bytearray(hashlib.md5(big).digest())),
    )
    corrupt = container.upload_blob("corrupt/weights.bin", b"stored bytes")
    # Azurite checks an MD5 given with the upload; a wrong one can only be set afterwards.
    corrupt.set_http_headers(
        content_settings=ContentSettings(content_md5=bytearray(hashlib.md5(b"other").digest()))
    )
    config = {
        "type": "azure",
        "connection_string": connection_string(account_url),
        "container": "models",
    }
    path = await pull(config, "big", tmp_path / "big")
    assert hashlib.sha256((path / "weights.bin").read_bytes()).digest() == (
        hashlib.sha256(big).digest()
    )
    with pytest.raises(Unavailable, match="checksum mismatch"):
        await pull(config, "corrupt", tmp_path / "corrupt")
    assert entries(tmp_path) == ["big", "big/weights.bin"]


TENANT = "7d3f1c2a-0000-4000-8000-00000000aa01"
CLIENT_ID = "5b9e6a41-0000-4000-8000-00000000bb02"
SECRET = "principal-secret-Zq8~x3"


@pytest.fixture
def authority(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EntraIdStandIn]:
    server = EntraIdStandIn(pki, tmp_path_factory.mktemp("authority"), TENANT, CLIENT_ID, SECRET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oauth_account_url(
    azurite_oauth: str, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> str:
    from azure.storage.blob import BlobServiceClient

    ca = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.write_text(pki.ca)
    service = BlobServiceClient(
        azurite_oauth,
        credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
        connection_verify=str(ca),
    )
    private = service.create_container("models")
    for key, body in MODEL.items():
        private.upload_blob(key, body)
    return azurite_oauth


def principal(account_url: str, authority: EntraIdStandIn, pki: Pki, secret: str) -> dict[str, Any]:
    return {
        "type": "azure",
        "account_url": account_url,
        "container": "models",
        "client_id": CLIENT_ID,
        "client_secret": secret,
        "tenant_id": TENANT,
        "authority_host": authority.url,
        "certificate": pki.ca,
        "max_attempts": 1,
    }


async def test_a_service_principal_pulls_with_a_token_from_its_authority(
    oauth_account_url: str, authority: EntraIdStandIn, pki: Pki, tmp_path: Path
) -> None:
    config = principal(oauth_account_url, authority, pki, SECRET)
    assert tree(await pull(config, "models/mnist", tmp_path / "m")) == EXPECTED
    # One token, for storage, serves the listing and every download.
    scopes = [form["scope"] for form in authority.token_requests]
    assert scopes == ["https://storage.azure.com/.default"]


async def test_a_refused_client_secret_is_permission_denied_at_once_without_secrets(
    oauth_account_url: str, authority: EntraIdStandIn, pki: Pki, tmp_path: Path
) -> None:
    wrong = "not-the-secret-Qp4~z9"
    config = principal(oauth_account_url, authority, pki, wrong)
    with pytest.raises(PermissionDenied) as caught:
        await pull(config, "models/mnist", tmp_path / "m")
    assert wrong not in str(caught.value)
    # Not asked again: the storage client would retry a refused token request.
    assert len(authority.token_requests) == 1
    assert entries(tmp_path) == []
