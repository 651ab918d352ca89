"""Keeps secrets out of log lines and error messages.

Storage configs hold keys and tokens, and URLs may carry signatures. Every
secret-looking value of a storage config is registered when the config is
read; `redact` replaces registered values and URL credentials in any text.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "***"
# Config fields whose values are secrets (compared lower-case, as substrings).
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
_URL_SECRET = re.compile(
    r"(?i)((?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|"
    r"x-goog-signature|x-goog-credential|token|access_token|sv|se|sp|skoid|sktid|sks|skv)=)"
    r"[^&\s\"']+"
)
_URL_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")

_secrets: set[str] = set()
_lock = threading.Lock()


def is_secret_field(name: str) -> bool:
    lowered = name.lower()
    return any(hint in lowered for hint in SECRET_FIELD_HINTS)


def register_secrets(config: Mapping[str, Any]) -> None:
    """Remember the secret values of a storage config (nested mappings included)."""
    found: list[str] = []

    def walk(mapping: Mapping[str, Any]) -> None:
        for key, value in mapping.items():
            if isinstance(value, Mapping):
                walk(value)
            elif is_secret_field(str(key)) and value:
                found.extend(str(v) for v in (value if isinstance(value, list) else [value]))

    walk(config)
    # Very short values would mask innocent text; they are not real secrets anyway.
    found = [s for s in found if len(s) >= 6]
    if found:
        with _lock:
            _secrets.update(found)


def redact(text: str) -> str:
    """`text` with registered secrets and URL credentials masked."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(rf"\1{MASK}@", text)
    return _URL_SECRET.sub(rf"\1{MASK}", text)
