"""HTTP(S) storage, with httpx: one file at `url` joined with the model path.

Config (type `http`): `url` (its query string is kept, e.g. a SAS token or a
signature), `headers` (name -> string or list of strings), `certificate` (PEM CA),
`client_certificate` + `client_key` (PEM, mutual TLS). Any status other than 2xx
is an error, never saved as the model; redirects are followed up to 5 hops.
Tuning: `connect_timeout` (10 s), `read_timeout` (60 s), `max_attempts` (5, with
bounded exponential backoff on connection faults, timeouts, 408, 429 and 5xx).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from collections.abc import Mapping
from email.message import Message
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiofiles
import httpx

from mesh_sidecar.errors import (
    InvalidRequest,
    NotFound,
    PermissionDenied,
    SidecarError,
    Unavailable,
)
from mesh_sidecar.pullers.base import Puller, PullerSettings, PullProgress, StorageSource, safe_join
from mesh_sidecar.pullers.objectstore import backoff_delay, config_key, config_number
from mesh_sidecar.pullers.tls import ssl_context
from mesh_sidecar.redact import redact

CHUNK = 1024 * 1024
MAX_REDIRECTS = 5
RETRIED_STATUS = frozenset({408, 429, 500, 502, 503, 504})
CLIENT_FIELDS = (
    "headers",
    "certificate",
    "client_certificate",
    "client_key",
    "connect_timeout",
    "read_timeout",
)


class _Transient(Exception):
    """A failure worth another attempt; carries the message for the final error."""


def model_url(base: str, path: str) -> str:
    """`base` with `path` appended to its path; its query string is kept."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidRequest("storage config `url` must be an http:// or https:// URL")
    relative = path.strip("/")
    if not relative:
        return base
    joined = parts.path.rstrip("/") + "/" + quote(relative, safe="/%:@!$&'()*+,;=-._~")
    return urlunsplit((parts.scheme, parts.netloc, joined, parts.query, parts.fragment))


def file_name(response: httpx.Response) -> str:
    """The local name of the downloaded file: Content-Disposition's, else the URL's last part."""
    disposition = response.headers.get("content-disposition")
    if disposition:
        message = Message()
        message["content-disposition"] = disposition
        name = message.get_filename()
        if name:
            return PurePosixPath(name.replace("\\", "/")).name
    name = PurePosixPath(unquote(response.url.path)).name
    return name or "model"


def header_list(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The config's `headers` as (name, value) pairs; a name may carry several values."""
    headers = config.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise InvalidRequest("storage config `headers` must map names to strings")
    pairs: list[tuple[str, str]] = []
    for name, value in headers.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if not isinstance(item, str):
                raise InvalidRequest(f"header {name!r} must be a string or a list of strings")
            pairs.append((str(name), item))
    return pairs


class HttpPuller(Puller):
    """Pulls one file over HTTP(S)."""

    type = "http"

    def __init__(self, settings: PullerSettings) -> None:
        super().__init__(settings)
        self._clients: dict[tuple[Any, ...], httpx.AsyncClient] = {}

    def _client(self, config: Mapping[str, Any]) -> httpx.AsyncClient:
        key = config_key(config, CLIENT_FIELDS)
        client = self._clients.get(key)
        if client is None:
            context = ssl_context(
                config.get("certificate"),
                config.get("client_certificate"),
                config.get("client_key"),
            )
            # identity: the bytes on disk must be the bytes stored (and Content-Length holds).
            headers = httpx.Headers([("accept-encoding", "identity"), *header_list(config)])
            client = httpx.AsyncClient(
                verify=context,
                headers=headers,
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
                timeout=httpx.Timeout(
                    config_number(config, "read_timeout", 60),
                    connect=config_number(config, "connect_timeout", 10),
                ),
            )
            self._clients[key] = client
        return client

    def _url(self, source: StorageSource) -> str:
        base = source.config.get("url")
        if not base or not isinstance(base, str):
            raise InvalidRequest("storage config of type http needs a `url`")
        return model_url(base, source.path)

    async def pull(self, source: StorageSource, dest: Path, progress: PullProgress) -> Path:
        url = self._url(source)
        client = self._client(source.config)
        attempts = max(1, int(config_number(source.config, "max_attempts", 5)))
        for attempt in range(attempts):
            try:
                return await self._download(client, url, source, dest, progress)
            except _Transient as exc:
                # The next attempt rewrites the file from the start; a last failure
                # leaves it to pull_atomically, which removes the whole partial dir.
                if attempt + 1 == attempts:
                    raise Unavailable(f"{exc} (after {attempts} attempts)") from None
                progress.bytes = 0
                await asyncio.sleep(backoff_delay(attempt))
        raise AssertionError("unreachable")

    async def _download(
        self,
        client: httpx.AsyncClient,
        url: str,
        source: StorageSource,
        dest: Path,
        progress: PullProgress,
    ) -> Path:
        shown = redact(url, source.config)
        try:
            async with client.stream("GET", url) as response:
                check_status(response, shown)
                target = safe_join(dest, file_name(response))
                expected = response.headers.get("content-length")
                progress.total_bytes = int(expected) if expected and expected.isdigit() else None
                digest = hashlib.md5(usedforsecurity=False)
                async with aiofiles.open(target, "wb") as out:
                    async for chunk in response.aiter_raw(CHUNK):
                        digest.update(chunk)
                        await out.write(chunk)
                        progress.add(len(chunk))
                progress.add(0, files=1)
        except httpx.TooManyRedirects:
            raise InvalidRequest(f"GET {shown}: more than {MAX_REDIRECTS} redirects") from None
        except (httpx.TransportError, httpx.StreamError, ssl.SSLError) as exc:
            # Resets, stalls (read timeouts) and bodies cut short are all worth a retry. A TLS
            # alert that arrives after the handshake (TLS 1.3 refusing a missing client
            # certificate) surfaces from the first read as a bare ssl.SSLError.
            reason = redact(exc, source.config) or type(exc).__name__
            raise _Transient(f"GET {shown}: {reason}") from None
        content_md5 = response.headers.get("content-md5")
        if content_md5 and base64.b64encode(digest.digest()).decode() != content_md5.strip():
            raise _Transient(f"GET {shown}: checksum mismatch (Content-MD5)")
        return target

    async def size(self, source: StorageSource) -> int | None:
        """Content-Length of a HEAD request, or None when the server does not say."""
        url = self._url(source)
        try:
            response = await self._client(source.config).head(url)
        except httpx.HTTPError:
            return None
        length = response.headers.get("content-length")
        if response.is_success and length and length.isdigit():
            return int(length)
        return None

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def check_status(response: httpx.Response, shown: str) -> None:
    """Raise the error for a non-2xx answer (the body is never saved as the model)."""
    status = response.status_code
    if 200 <= status < 300:
        return
    message = f"GET {shown}: HTTP {status}"
    if status in RETRIED_STATUS:
        raise _Transient(message)
    error: SidecarError
    if status in (401, 403):
        error = PermissionDenied(message)
    elif status in (404, 410):
        error = NotFound(message)
    else:
        error = InvalidRequest(message)
    raise error
