"""Keeps secrets out of log lines and error messages.

Storage configs hold keys and tokens, storage SDKs put request URLs (with SAS
tokens or signatures in the query), connection strings and sometimes headers
into their exception text. Two layers catch them:

- the secret values of every storage config the sidecar reads are registered
  (`register_secrets`) and masked wherever they appear later, and a puller
  may also pass the config it is using (`redact(text, config)`);
- patterns mask what looks like a credential even when its value was never
  seen: URL queries and userinfo, connection-string keys, authorization
  headers, bearer tokens and PEM private keys.

This module sits below pullers and the adapter, so both import it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "<redacted>"
# Exact config fields whose values are secrets in the storage-config secret's format.
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
# Other field names that hold secrets (compared lower-case, as substrings).
SECRET_FIELD_HINTS = (
    "secret",
    "password",
    "token",
    "private_key",
    "connection_string",
    "sas",
    "credential",
    "client_key",
    "access_key",
    "authorization",
    "api_key",
)
# Registered values shorter than this would mask innocent text; they are not real secrets.
MIN_REGISTERED_LENGTH = 6

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A query string may hold a signature (S3/GCS presigned URLs) or a SAS token.
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?#'\"<>]*)\?[^\s#'\"<>]*"), r"\1?" + MASK),
    # Credentials inside a URL: scheme://user:password@host
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^\s/@'\"<>]+@"), r"\1" + MASK + "@"),
    # Signature parameters outside a URL (a query string printed on its own).
    (
        re.compile(
            r"(?i)(\b(?:x-amz-signature|x-amz-credential|x-amz-security-token|"
            r"x-goog-signature|x-goog-credential|access_token|token|sig|signature)=)[^&\s\"';]+"
        ),
        r"\1" + MASK,
    ),
    # Azure connection strings and SAS parameters.
    (
        re.compile(r"(?i)\b(AccountKey|SharedAccessSignature|SharedAccessKey)=[^;&\s'\"]+"),
        r"\1=" + MASK,
    ),
    (
        re.compile(
            r"(?i)\b(authorization|x-amz-security-token)(['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+"
        ),
        r"\1\2" + MASK,
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer " + MASK),
)
# Masked before any registered value: those include single lines of keys, and masking
# one line first would leave the rest of the block unmatched.
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S
)

_registered: set[str] = set()
_lock = threading.Lock()


def is_secret_field(name: str) -> bool:
    """Whether a storage-config field of this name holds a secret."""
    lowered = name.lower()
    return lowered in SECRET_FIELDS or any(hint in lowered for hint in SECRET_FIELD_HINTS)


def secret_values(config: Mapping[str, Any] | None) -> list[str]:
    """The secret strings of a storage config, longest first: credential fields (nested
    mappings included), every header value, and each line of multi-line secrets."""
    if not config:
        return []
    found: list[str] = []

    def strings(value: Any) -> list[str]:
        values = value if isinstance(value, list) else [value]
        return [str(v) for v in values if isinstance(v, str | int) and not isinstance(v, bool)]

    def walk(mapping: Mapping[str, Any]) -> None:
        for name, value in mapping.items():
            if str(name).lower() == "headers" and isinstance(value, Mapping):
                for header_value in value.values():
                    found.extend(strings(header_value))
            elif isinstance(value, Mapping):
                walk(value)
            elif is_secret_field(str(name)) and value:
                found.extend(strings(value))

    walk(config)
    # Private keys are also matched piecewise: SDKs may print one line of them.
    lines = [line for v in found for line in v.splitlines() if len(line.strip()) >= 8]
    return sorted({v for v in found + lines if len(v.strip()) >= 4}, key=len, reverse=True)


def register_secrets(config: Mapping[str, Any]) -> None:
    """Remember the secret values of a storage config, to mask them in any later text."""
    found = [s for s in secret_values(config) if len(s) >= MIN_REGISTERED_LENGTH]
    if found:
        with _lock:
            _registered.update(found)


def redact(text: object, config: Mapping[str, Any] | None = None, extra: Iterable[str] = ()) -> str:
    """`text` with registered secrets, the secrets of `config` and `extra` masked, and
    URL queries, URL credentials, connection-string keys, authorization headers, bearer
    tokens and private keys replaced."""
    out = _PRIVATE_KEY.sub(MASK, str(text))
    with _lock:
        registered = list(_registered)
    values = sorted({*registered, *secret_values(config), *extra}, key=len, reverse=True)
    for value in values:
        if value and value in out:
            out = out.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        out = pattern.sub(replacement, out)
    return out
