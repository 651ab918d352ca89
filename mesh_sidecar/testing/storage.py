"""Real servers for the puller tests, started on 127.0.0.1 on free ports."""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mesh_sidecar.testing.processes import free_port, start_process, wait_for_port

__all__ = [
    "EntraIdStandIn",
    "FileServer",
    "Pki",
    "free_port",
    "make_pki",
    "moto_command",
    "running",
    "wait_until",
]


AZURITE_ACCOUNT = "devstoreaccount1"
# The well-known development key every Azurite install uses (documented by Microsoft).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def moto_command(port: int) -> list[str]:
    """moto's S3 (and IAM, STS) server on 127.0.0.1:`port`, from this environment."""
    return [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]


@contextmanager
def running(
    cmd: list[str], port: int, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Iterator[None]:
    """Run a server process until the block ends; it must listen on `port` first."""
    proc = start_process(cmd, env, name=Path(cmd[0]).name, cwd=cwd)
    try:
        wait_for_port(port, proc, timeout=60)
        yield
    finally:
        proc.stop()


# -- TLS material -------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A self-signed CA, a server certificate for 127.0.0.1 and a client certificate (PEM)."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki() -> Pki:
    ca_key = _key()
    ca = _cert("test CA", ca_key, None, ca_key, ca=True)
    server_key, client_key = _key(), _key()
    server = _cert("127.0.0.1", server_key, ca.subject, ca_key, server=True)
    client = _cert("puller", client_key, ca.subject, ca_key)

    def pem(cert: x509.Certificate) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    return Pki(pem(ca), pem(server), _pem_key(server_key), pem(client), _pem_key(client_key))


def server_cert_files(pki: Pki, tmp: Path) -> tuple[Path, Path]:
    """`pki`'s server certificate and key for 127.0.0.1, written under `tmp`."""
    cert, key = tmp / "server.pem", tmp / "server.key"
    cert.write_text(pki.server_cert)
    key.write_text(pki.server_key)
    return cert, key


def server_tls(pki: Pki, tmp: Path) -> ssl.SSLContext:
    """A server-side TLS context with `pki`'s certificate for 127.0.0.1 (files under `tmp`)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*server_cert_files(pki, tmp))
    return context


# -- an HTTP(S) server with scripted answers ---------------------------------------------


@dataclass
class Route:
    """What the server answers at one path: a body, or a status sequence then a body."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    fail_first: list[int] = field(default_factory=list)  # statuses answered before `body`
    need_header: tuple[str, str] | None = None
    hits: int = 0


class FileServer:
    """A threaded HTTP server over `routes`; TLS (optionally mutual) when given a Pki."""

    def __init__(
        self, pki: Pki | None = None, require_client_cert: bool = False, tmp: Path | None = None
    ):
        self.routes: dict[str, Route] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, send_body: bool) -> None:
                path = self.path.split("?", 1)[0]
                with server.lock:
                    route = server.routes.get(path)
                    if route is not None:
                        route.hits += 1
                        status = route.fail_first.pop(0) if route.fail_first else route.status
                if route is None:
                    status, body = 404, b"no such file"
                    headers: dict[str, str] = {}
                elif (
                    route.need_header
                    and self.headers.get(route.need_header[0]) != route.need_header[1]
                ):
                    status, body, headers = 401, b"unauthorised", {}
                else:
                    body = route.body if status < 300 else b"error page"
                    headers = route.headers if status < 400 else {}
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if pki is not None and tmp is not None:
            context = server_tls(pki, tmp)
            if require_client_cert:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(cadata=pki.ca)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def add(self, path: str, body: bytes = b"", **kwargs: object) -> Route:
        route = Route(body=body, **kwargs)  # type: ignore[arg-type]
        self.routes[path] = route
        return route

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- an Entra ID stand-in ------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def storage_access_token(tenant: str, client_id: str) -> str:
    """A storage access token shaped as Entra ID issues them; unsigned (Azurite's
    `--oauth basic` checks issuer, audience and lifetime, not the signature)."""
    now = int(time.time())
    claims = {
        "aud": "https://storage.azure.com",
        "iss": f"https://sts.windows.net/{tenant}/",
        "appid": client_id,
        "iat": now,
        "nbf": now - 60,
        "exp": now + 3600,
    }
    parts = ({"alg": "RS256", "typ": "JWT"}, claims)
    return ".".join([*(_b64url(json.dumps(p).encode()) for p in parts), _b64url(b"unsigned")])


class EntraIdStandIn:
    """Stands in for an Entra ID authority over HTTPS, as no real one can run here.

    Answers OpenID discovery and the client-credentials token request for
    `tenant` as login.microsoftonline.com does; only `client_id` with `secret`
    gets a token, anything else gets its 401 `invalid_client`. Every token
    request's form is kept in `token_requests`.
    """

    def __init__(self, pki: Pki, tmp: Path, tenant: str, client_id: str, secret: str) -> None:
        self.token_requests: list[dict[str, str]] = []
        stand_in = self

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
                if self.path.split("?")[0] != f"/{tenant}/v2.0/.well-known/openid-configuration":
                    return self._json(404, {"error": "not_found"})
                base = f"{stand_in.url}/{tenant}"
                self._json(
                    200,
                    {
                        "issuer": f"{base}/v2.0",
                        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                        "token_endpoint": f"{base}/oauth2/v2.0/token",
                    },
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if self.path.split("?")[0] != f"/{tenant}/oauth2/v2.0/token":
                    return self._json(404, {"error": "not_found"})
                stand_in.token_requests.append(form)
                if (
                    form.get("grant_type") != "client_credentials"
                    or form.get("client_id") != client_id
                    or form.get("client_secret") != secret
                ):
                    refused = "AADSTS7000215: Invalid client secret provided."
                    return self._json(
                        401, {"error": "invalid_client", "error_description": refused}
                    )
                token = storage_access_token(tenant, client_id)
                self._json(200, {"token_type": "Bearer", "expires_in": 3600, "access_token": token})

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = server_tls(pki, tmp).wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@dataclass(frozen=True)
class S3Server:
    """moto's S3 server: endpoint, keys of an IAM user allowed everything, a seeding client."""

    endpoint: str
    port: int
    access_key_id: str
    secret_access_key: str
    admin: Any  # a boto3 S3 client with valid keys, for seeding

    def config(self, **overrides: Any) -> dict[str, Any]:
        """An s3 storage config for bucket `models`, with `overrides`."""
        return {
            "type": "s3",
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "endpoint_url": self.endpoint,
            "region": "us-east-1",
            "bucket": "models",
            **overrides,
        }
