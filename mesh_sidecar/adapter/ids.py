"""Model id checks: an id becomes a directory name, so it must be safe as one."""

from __future__ import annotations

from collections.abc import Collection

from mesh_sidecar.errors import InvalidRequest

MAX_ID_BYTES = 255


def check_model_id(model_id: str, reserved: Collection[str] = ()) -> None:
    """Raise InvalidRequest unless `model_id` is usable as one path component."""
    if not model_id:
        raise InvalidRequest("model id is empty")
    shown = model_id[:64].encode("unicode_escape").decode()
    if len(model_id.encode()) > MAX_ID_BYTES:
        raise InvalidRequest(f"model id {shown!r}... is longer than {MAX_ID_BYTES} bytes")
    if model_id in (".", ".."):
        raise InvalidRequest(f"model id {model_id!r} is not allowed")
    if "/" in model_id or "\\" in model_id:
        raise InvalidRequest(f"model id {shown!r} contains a path separator")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in model_id):
        raise InvalidRequest(f"model id {shown!r} contains a control character")
    if model_id in reserved or model_id.startswith(".partial-"):
        raise InvalidRequest(f"model id {model_id!r} is reserved by the sidecar")
