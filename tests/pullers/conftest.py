"""Session-wide real servers for the puller tests (moto S3, GCS emulator, Azurite, HTTPS)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from servers import FileServer, Pki, free_port, make_pki, running

from mesh_sidecar.pullers.base import PullerSettings

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / ".work" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_ACCOUNT = "devstoreaccount1"
# The well-known development key every Azurite install uses (documented by Microsoft).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFR50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@pytest.fixture
def settings() -> PullerSettings:
    return PullerSettings()


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    port: int
    access_key_id: str
    secret_access_key: str
    admin: Any  # a boto3 S3 client with valid keys, for seeding

    def config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "type": "s3",
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "endpoint_url": self.endpoint,
            "region": "us-east-1",
            "bucket": "models",
            **overrides,
        }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server, enforcing signatures (so bad credentials are refused)."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = str(Path(sys.executable).parent / "moto_server")
    # The first three requests (creating an IAM user, its key and policy) are unsigned.
    with running(
        [moto, "-H", "127.0.0.1", "-p", str(port)], port, {"INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    ):
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        iam.create_user(UserName="puller")
        key = iam.create_access_key(UserName="puller")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="puller", PolicyName="all", PolicyDocument=json.dumps(policy))
        admin = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        admin.create_bucket(Bucket="models")
        yield S3Server(endpoint, port, key["AccessKeyId"], key["SecretAccessKey"], admin)


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    """gcp-storage-emulator, in memory; the client library finds it via STORAGE_EMULATOR_HOST."""
    port = free_port()
    emulator = str(Path(sys.executable).parent / "gcp-storage-emulator")
    cmd = [emulator, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"]
    with running(cmd, port):
        host = f"http://127.0.0.1:{port}"
        previous = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = host
        try:
            yield host
        finally:
            if previous is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = previous


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service; answers the account URL."""
    if not AZURITE.exists():
        pytest.fail("Azurite is missing: run `make install`")
    port = free_port()
    workdir = tmp_path_factory.mktemp("azurite")
    cmd = [
        str(AZURITE),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--loose",
        "--skipApiVersionCheck",
        "--inMemoryPersistence",
        "--location",
        str(workdir),
    ]
    with running(cmd, port):
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"


@pytest.fixture(scope="session")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="session")
def https_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    """HTTPS with a private CA that demands a client certificate (mutual TLS)."""
    server = FileServer(pki, require_client_cert=True, tmp=tmp_path_factory.mktemp("tls"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def http_server() -> Iterator[FileServer]:
    server = FileServer()
    yield server
    server.stop()
