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


def pem_text(value: object, field: str) -> str:
    """`value` if it is PEM text; a config field of another type is an InvalidRequest."""
    if not isinstance(value, str):
        raise InvalidRequest(f"storage config field {field!r} must be PEM text")
    return value


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
        pem = pem_text(pem, "certificate")
        try:
            digest = hashlib.sha256(pem.encode()).hexdigest()[:32]
        except UnicodeEncodeError:
            raise InvalidRequest("TLS material in the storage config is not valid text") from None
        path = _dir / (digest + ".pem")
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
            context.load_verify_locations(cadata=pem_text(certificate, "certificate"))
        if client_certificate or client_key:
            if not (client_certificate and client_key):
                raise InvalidRequest("client_certificate and client_key go together")
            _load_client_chain(
                context,
                pem_text(client_certificate, "client_certificate"),
                pem_text(client_key, "client_key"),
            )
    except ssl.SSLError as exc:
        # The reason names the failing check, never the PEM content.
        raise InvalidRequest(f"bad TLS material in the storage config: {exc.reason}") from None
    except ValueError:  # e.g. non-ASCII text where PEM was expected
        raise InvalidRequest("bad TLS material in the storage config: not PEM text") from None
    return context


def _load_client_chain(context: ssl.SSLContext, certificate: str, key: str) -> None:
    """Load a client certificate and key given as PEM text.

    `ssl` loads them only from paths; the key must not sit in a file outside the
    model dir, so both go into anonymous in-memory files, closed once loaded.
    """
    fds: list[int] = []
    try:
        for name, pem in (("client-certificate", certificate), ("client-key", key)):
            fd = os.memfd_create(name, os.MFD_CLOEXEC)
            fds.append(fd)
            with os.fdopen(os.dup(fd), "wb") as out:
                out.write(pem.encode())
        context.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}")
    finally:
        for fd in fds:
            os.close(fd)
