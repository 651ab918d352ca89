"""No secret leaks: every storage type, with recognisable secrets, through successful
loads, failed loads and bad credentials, with the sidecar at LOG_LEVEL=DEBUG.

Searched for each secret: the sidecar's whole output (its logs), the details of
every error it answered, its /metrics page, and every file written outside the
model dir (the storage-config dir, which holds them by design, aside).
"""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from stack import Record

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import ServerHandle, free_port, run_sidecar
from mesh_sidecar.testing.storage import AZURITE_ACCOUNT, AZURITE_KEY, FileServer, Pki, S3Server

pytestmark = pytest.mark.slow

GCS_TOKEN = "ya29.gcs-Access-Token-SECRET-5f1e2d3c4b5a"
HTTP_TOKEN = "http-Bearer-SECRET-9a8b7c6d5e4f"
HTTP_API_KEY = "api-Key-SECRET-0f9e8d7c6b5a"
BAD = "Bad-Credential-SECRET-1234567890"
TEXT = b"hello "


def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def token_server() -> Iterator[str]:
    """A loopback OAuth token endpoint: answers every POST with GCS_TOKEN."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps(
                {"access_token": GCS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/token"
    server.shutdown()
    server.server_close()


def secret_lines(value: str) -> list[str]:
    """A secret and, for PEM keys, each line of its body (an SDK may print one)."""
    lines = [ln for ln in value.splitlines() if len(ln) >= 16 and "-----" not in ln]
    return [value, *lines]


def test_no_secret_in_logs_errors_metrics_or_files(
    simple_string_server: ServerHandle,
    sidecar_dirs: SidecarDirs,
    s3_server: S3Server,
    gcs_server: str,
    azurite: str,
    https_server: FileServer,
    pki: Pki,
    token_server: str,
    tmp_path: Path,
    record: Record,
) -> None:
    from azure.storage.blob import (
        BlobServiceClient,
        ContainerSasPermissions,
        generate_container_sas,
    )
    from google.cloud import storage

    # -- storage seeded with one model each, and configs with recognisable secrets ----------
    s3_server.admin.put_object(Bucket="models", Key="sec/m/model.txt", Body=TEXT)
    gcs = storage.Client.create_anonymous_client()
    gcs.project = "test"
    bucket = gcs.bucket("sec-models")
    if not bucket.exists():
        bucket = gcs.create_bucket("sec-models")
    bucket.blob("sec/m/model.txt").upload_from_string(TEXT)
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={azurite};"
    )
    container = BlobServiceClient.from_connection_string(connection_string).get_container_client(
        "sec-models"
    )
    if not container.exists():
        container.create_container()
    container.upload_blob("sec/m/model.txt", TEXT, overwrite=True)
    sas = generate_container_sas(
        AZURITE_ACCOUNT,
        "sec-models",
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
    )
    https_server.add(
        "/sec/m/model.txt", TEXT, need_header=("Authorization", f"Bearer {HTTP_TOKEN}")
    )
    gcs_key = rsa_pem()
    http_base = {
        "type": "http",
        "url": https_server.url,
        "certificate": pki.ca,
        "client_certificate": pki.client_cert,
        "client_key": pki.client_key,
        "max_attempts": 1,
    }
    configs: dict[str, dict[str, Any]] = {
        "s3": s3_server.config(),
        "s3-bad": s3_server.config(secret_access_key=BAD),
        "gcs": {
            "type": "gcs",
            "bucket": "sec-models",
            "client_email": "puller@project.iam.gserviceaccount.com",
            "private_key": gcs_key,
            "token_uri": token_server,
        },
        "gcs-bad": {
            "type": "gcs",
            "bucket": "sec-models",
            "client_email": "puller@project.iam.gserviceaccount.com",
            "private_key": gcs_key,
            "token_uri": f"http://127.0.0.1:{free_port()}/token?secret={BAD}",
            "retry_timeout": 1,
        },
        "azure-connection-string": {
            "type": "azure",
            "container": "sec-models",
            "connection_string": connection_string,
        },
        "azure-key": {
            "type": "azure",
            "account_name": AZURITE_ACCOUNT,
            "account_url": azurite,
            "account_key": AZURITE_KEY,
            "container": "sec-models",
        },
        "azure-sas": {
            "type": "azure",
            "account_name": AZURITE_ACCOUNT,
            "account_url": azurite,
            "sas_token": sas,
            "container": "sec-models",
        },
        "azure-bad": {
            "type": "azure",
            "account_name": AZURITE_ACCOUNT,
            "account_url": azurite,
            "account_key": base64.b64encode(BAD.encode() * 2).decode(),
            "container": "sec-models",
            "max_attempts": 1,
        },
        "http": {
            **http_base,
            "headers": {"Authorization": f"Bearer {HTTP_TOKEN}", "X-Api-Key": HTTP_API_KEY},
        },
        "http-bad": {**http_base, "headers": {"Authorization": f"Bearer {BAD}"}},
    }
    secrets = [
        s3_server.access_key_id,
        s3_server.secret_access_key,
        BAD,
        base64.b64encode(BAD.encode() * 2).decode(),
        GCS_TOKEN,
        *secret_lines(gcs_key),
        AZURITE_KEY,
        connection_string,
        sas,
        dict(part.split("=", 1) for part in sas.split("&"))["sig"],
        HTTP_TOKEN,
        HTTP_API_KEY,
        *secret_lines(pki.client_key),
    ]
    for name, config in configs.items():
        (sidecar_dirs.storage_config_dir / name).write_text(json.dumps(config))

    # -- loads at LOG_LEVEL=DEBUG --------------------------------------------------------------
    metrics_port = free_port()
    env = {"LOG_LEVEL": "DEBUG", "METRICS_PORT": str(metrics_port)}
    tls_dirs_before = set(Path(tempfile.gettempdir()).glob("mesh-sidecar-tls-*"))
    details: list[str] = []
    outcomes: list[str] = []
    with run_sidecar(
        "simple-string", simple_string_server.port, *sidecar_dirs.as_args(), extra_env=env
    ) as sidecar:

        def load(name: str, path: str) -> str:
            key = json.dumps({"storage_key": name, "model_type": {"name": "string"}})
            request = pb.LoadModelRequest(
                modelId="m", modelType="string", modelPath=path, modelKey=key
            )
            started = time.monotonic()
            try:
                sidecar.stub.loadModel(request, timeout=60)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
                details.append(exc.details() or "")
            sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId="m"), timeout=30)
            outcomes.append(f"{name} {path}: {code} in {time.monotonic() - started:.1f} s")
            return code

        for name in configs:
            if name.endswith("-bad"):
                assert load(name, "sec/m/model.txt") in ("PERMISSION_DENIED", "UNAVAILABLE"), name
            else:  # HTTP storage serves one file: the model is that file
                path = "sec/m/model.txt" if name.startswith("http") else "sec/m"
                assert load(name, path) == "OK", name
                assert load(name, "sec/missing") == "NOT_FOUND", name
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as answer:
            metrics = answer.read().decode()
        sidecar.process.stop()
        logs = Path(sidecar.process.log.name).read_text(errors="replace")

    # -- where a secret could have gone -----------------------------------------------------------
    written = {}
    for path in tmp_path.rglob("*"):
        if path.is_file() and sidecar_dirs.storage_config_dir not in path.parents:
            written[str(path)] = path.read_bytes().decode(errors="replace")
    for tls_dir in set(Path(tempfile.gettempdir()).glob("mesh-sidecar-tls-*")) - tls_dirs_before:
        for path in tls_dir.rglob("*"):
            if path.is_file():
                written[str(path)] = path.read_text(errors="replace")
    places = {"logs": logs, "error details": "\n".join(details), "metrics": metrics, **written}
    leaks = [
        f"{secret[:12]}... in {place}"
        for secret in secrets
        for place, text in places.items()
        if secret and secret in text
    ]
    record(
        "secrets",
        "s3 keys, gcs private key and token, azure key/SAS/connection string, http headers "
        "and client key; successful, failed and bad-credential loads at DEBUG",
        f"{len(leaks)} leaks in the logs ({len(logs.splitlines())} lines), "
        f"{len(details)} error details, /metrics and {len(written)} files written",
        tries=len(outcomes),
        loads="; ".join(outcomes),
    )
    assert "debug" in logs.lower()  # the sidecar really logged at DEBUG
    assert leaks == []
