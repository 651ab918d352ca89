"""Removes secrets from text before it goes into an error message or a log line.

Storage SDKs put request URLs (with SAS tokens or signatures in the query),
connection strings and sometimes headers into their exception text. Every
message a puller builds from an SDK error goes through `redact`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "<redacted>"

# Config fields whose values are secrets in the storage-config secret's format.
SECRET_FIELDS = frozenset(
    {
        "access_key_id",
        "secret_access_key",
        "session_token",
        "private_key",
        "private_key_id",
        "client_secret",
        "client_key",
        "connection_string",
        "account_key",
        "sas_token",
        "password",
        "token",
    }
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A query string may hold a signature (S3/GCS presigned URLs) or a SAS token.
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?#'\"<>]*)\?[^\s#'\"<>]*"), r"\1?" + REDACTED),
    # Credentials inside a URL: scheme://user:password@host
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^\s/@'\"<>]+@"), r"\1" + REDACTED + "@"),
    # Azure connection strings and SAS parameters outside a URL.
    (
        re.compile(r"(?i)\b(AccountKey|SharedAccessSignature|sig|SharedAccessKey)=[^;&\s'\"]+"),
        r"\1=" + REDACTED,
    ),
    (
        re.compile(
            r"(?i)\b(authorization|x-amz-security-token)(['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+"
        ),
        r"\1\2" + REDACTED,
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer " + REDACTED),
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
        REDACTED,
    ),
)


def secret_values(config: Mapping[str, Any] | None) -> list[str]:
    """The secret strings of a storage config: credential fields and every header value."""
    if not config:
        return []
    found: list[str] = []
    for name, value in config.items():
        if name in SECRET_FIELDS and isinstance(value, str):
            found.append(value)
        elif name == "headers" and isinstance(value, Mapping):
            for header_value in value.values():
                values = header_value if isinstance(header_value, list) else [header_value]
                found.extend(v for v in values if isinstance(v, str))
    # Private keys are also matched piecewise: SDKs may print one line of them.
    lines = [line for v in found for line in v.splitlines() if len(line.strip()) >= 8]
    return sorted({v for v in found + lines if len(v.strip()) >= 4}, key=len, reverse=True)


def redact(text: object, config: Mapping[str, Any] | None = None, extra: Iterable[str] = ()) -> str:
    """`text` with the config's secret values, URL queries, credentials in URLs,
    connection-string keys, authorization headers and private keys replaced."""
    out = str(text)
    for value in [*secret_values(config), *extra]:
        if value:
            out = out.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        out = pattern.sub(replacement, out)
    return out
