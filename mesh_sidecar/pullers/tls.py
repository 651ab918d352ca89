"""TLS material from a storage config: PEM text in the secret, files or contexts for SDKs."""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import ssl
import tempfile
import threading
from pathlib import Path

from mesh_sidecar.errors import InvalidRequest

_lock = threading.Lock()
_dir: Path | None = None


def pem_file(pem: str) -> str:
    """A private file holding `pem` (some SDKs take a CA bundle only as a path).

    Files are named by content, so every pull with the same config shares one,
    and removed when the process exits.
    """
    global _dir
    with _lock:
        if _dir is None:
            _dir = Path(tempfile.mkdtemp(prefix="mesh-sidecar-tls-"))
            atexit.register(shutil.rmtree, _dir, True)
        path = _dir / (hashlib.sha256(pem.encode()).hexdigest()[:32] + ".pem")
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(pem)
        return str(path)


def ssl_context(
    certificate: str | None,
    client_certificate: str | None = None,
    client_key: str | None = None,
) -> ssl.SSLContext:
    """A verifying client context: the system CAs, plus `certificate` (PEM CA) if given,
    with a client certificate and key (PEM) for mutual TLS."""
    context = ssl.create_default_context()
    try:
        if certificate:
            context.load_verify_locations(cadata=certificate)
        if client_certificate or client_key:
            if not (client_certificate and client_key):
                raise InvalidRequest("client_certificate and client_key go together")
            context.load_cert_chain(pem_file(client_certificate), pem_file(client_key))
    except ssl.SSLError as exc:
        # The reason names the failing check, never the PEM content.
        raise InvalidRequest(f"bad TLS material in the storage config: {exc.reason}") from None
    return context
