"""Azure puller with a service principal: a token from its authority, then Azurite over HTTPS.

No Entra ID can run here, so `Authority` stands in for it: it answers OpenID
discovery and the client-credentials token request as login.microsoftonline.com
does, and refuses a wrong secret the way it does. Azurite is the real one and
takes the bearer token the authority issued.
"""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from trees import entries, tree

from mesh_sidecar.errors import PermissionDenied
from mesh_sidecar.pullers.azure import AzurePuller
from mesh_sidecar.pullers.base import PullerSettings, StorageSource, pull_atomically
from mesh_sidecar.testing.storage import AZURITE_ACCOUNT, AZURITE_KEY, Pki, free_port

TENANT = "7d3f1c2a-0000-4000-8000-00000000aa01"
CLIENT_ID = "5b9e6a41-0000-4000-8000-00000000bb02"
SECRET = "principal-secret-Zq8~x3"
STORAGE_SCOPE = "https://storage.azure.com/.default"
MODEL = {"models/mnist/model.bin": b"\x01" * 2048, "models/mnist/sub/config.json": b"{}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def access_token() -> str:
    """A storage access token as Entra ID issues them (unsigned: Azurite does not check)."""
    now = int(time.time())
    claims = {
        "aud": "https://storage.azure.com",
        "iss": f"https://sts.windows.net/{TENANT}/",
        "appid": CLIENT_ID,
        "iat": now,
        "nbf": now - 60,
        "exp": now + 3600,
    }
    header = {"alg": "RS256", "typ": "JWT"}
    return ".".join(
        (_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(b"sig"))
    )


class Authority:
    """An Entra ID stand-in over HTTPS: discovery, and tokens for CLIENT_ID with SECRET."""

    def __init__(self, pki: Pki, tmp: Path) -> None:
        self.token_requests: list[dict[str, str]] = []
        authority = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.split("?")[0] != f"/{TENANT}/v2.0/.well-known/openid-configuration":
                    return self._json(404, {"error": "not_found"})
                base = f"{authority.url}/{TENANT}"
                self._json(
                    200,
                    {
                        "issuer": f"{base}/v2.0",
                        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                        "token_endpoint": f"{base}/oauth2/v2.0/token",
                        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    },
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if self.path.split("?")[0] != f"/{TENANT}/oauth2/v2.0/token":
                    return self._json(404, {"error": "not_found"})
                authority.token_requests.append(form)
                if (
                    form.get("grant_type") != "client_credentials"
                    or form.get("client_id") != CLIENT_ID
                    or form.get("client_secret") != SECRET
                ):
                    return self._json(
                        401,
                        {
                            "error": "invalid_client",
                            "error_description": "AADSTS7000215: Invalid client secret provided.",
                        },
                    )
                if form.get("scope") != STORAGE_SCOPE:
                    return self._json(400, {"error": "invalid_scope"})
                token = access_token()
                self._json(200, {"token_type": "Bearer", "expires_in": 3600, "access_token": token})

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        (tmp / "server.pem").write_text(pki.server_cert)
        (tmp / "server.key").write_text(pki.server_key)
        context.load_cert_chain(tmp / "server.pem", tmp / "server.key")
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def authority(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authority]:
    server = Authority(pki, tmp_path_factory.mktemp("authority"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def account_url(azurite_oauth: str, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> str:
    from azure.storage.blob import BlobServiceClient

    ca = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.write_text(pki.ca)
    service = BlobServiceClient(
        azurite_oauth,
        credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
        connection_verify=str(ca),
    )
    container = service.create_container("models")
    for key, body in MODEL.items():
        container.upload_blob(key, body)
    return azurite_oauth


def principal(account_url: str, authority: Authority, pki: Pki, secret: str) -> dict[str, Any]:
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


async def pull(config: dict[str, Any], path: str, dest: Path) -> Path:
    puller = AzurePuller(PullerSettings())
    try:
        return (await pull_atomically(puller, StorageSource("azure", config, path), dest)).path
    finally:
        await puller.close()


async def test_a_service_principal_pulls_with_a_token_from_its_authority(
    account_url: str, authority: Authority, pki: Pki, tmp_path: Path
) -> None:
    config = principal(account_url, authority, pki, SECRET)
    model = await pull(config, "models/mnist", tmp_path / "m")
    assert tree(model) == {"model.bin": b"\x01" * 2048, "sub/config.json": b"{}"}
    # One token, asked for storage, serves the listing and every download.
    assert [r["scope"] for r in authority.token_requests] == [STORAGE_SCOPE]


async def test_a_wrong_client_secret_is_permission_denied_without_secrets(
    account_url: str, authority: Authority, pki: Pki, tmp_path: Path
) -> None:
    wrong = "not-the-secret-Qp4~z9"
    config = principal(account_url, authority, pki, wrong)
    with pytest.raises(PermissionDenied) as caught:
        await pull(config, "models/mnist", tmp_path / "m")
    assert wrong not in str(caught.value)
    assert len(authority.token_requests) == 1
    assert entries(tmp_path) == []
