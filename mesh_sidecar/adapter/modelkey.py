"""The modelKey and the storage-config secret -> a typed storage source.

Pure functions over data (plus reading one file of STORAGE_CONFIG_DIR), so the
rules of CONTEXT section 5 are table-tested without servers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mesh_sidecar.errors import InvalidRequest
from mesh_sidecar.pullers.base import StorageSource
from mesh_sidecar.redact import register_secrets

# Fields that locate the model in storage: the model server never sees them.
STORAGE_FIELDS = ("storage_key", "storage_params", "bucket")
MAX_MODEL_KEY_BYTES = 64 * 1024


@dataclass(frozen=True)
class ModelKey:
    """The parsed modelKey JSON that ModelMesh Serving sends with each load."""

    storage_key: str | None = None
    storage_params: Mapping[str, str] = field(default_factory=dict)
    bucket: str | None = None
    model_type: str | None = None
    model_type_version: str | None = None
    disk_size_bytes: int | None = None
    schema_path: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


def _optional_str(doc: Mapping[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"modelKey field {name!r} must be a string")
    return value


def parse_model_key(text: str) -> ModelKey:
    """Parse a modelKey; an empty one means no storage information."""
    if not text.strip():
        return ModelKey()
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise InvalidRequest("modelKey is not valid UTF-8 text") from None
    if size > MAX_MODEL_KEY_BYTES:
        raise InvalidRequest(f"modelKey is larger than {MAX_MODEL_KEY_BYTES} bytes")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"modelKey is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("modelKey must be a JSON object")
    try:  # JSON escapes may spell lone surrogates, which no file name or request can hold
        json.dumps(doc, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise InvalidRequest("modelKey holds text that is not valid Unicode") from None

    params = doc.get("storage_params") or {}
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in params.items()
    ):
        raise InvalidRequest("modelKey field 'storage_params' must map strings to strings")

    model_type = doc.get("model_type")
    type_version = None
    if isinstance(model_type, dict):
        type_version = _optional_str(model_type, "version")
        model_type = _optional_str(model_type, "name")
    elif model_type is not None and not isinstance(model_type, str):
        raise InvalidRequest("modelKey field 'model_type' must be a string or an object")

    disk_size = doc.get("disk_size_bytes")
    if disk_size is not None and (
        isinstance(disk_size, bool) or not isinstance(disk_size, int) or disk_size < 0
    ):
        raise InvalidRequest("modelKey field 'disk_size_bytes' must be a non-negative integer")

    return ModelKey(
        storage_key=_optional_str(doc, "storage_key"),
        storage_params=params,
        bucket=_optional_str(doc, "bucket"),
        model_type=model_type or None,
        model_type_version=type_version,
        disk_size_bytes=disk_size,
        schema_path=_optional_str(doc, "schema_path"),
        raw=doc,
    )


def _read_storage_config(config_dir: Path, name: str) -> dict[str, Any] | None:
    if not name or "/" in name or name in (".", "..") or "\x00" in name:
        raise InvalidRequest(f"storage_key {name!r} is not a valid key name")
    path = config_dir / name
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidRequest(f"storage config {name!r} cannot be read: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except ValueError:
        raise InvalidRequest(f"storage config {name!r} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidRequest(f"storage config {name!r} must be a JSON object")
    register_secrets(doc)
    return doc


def _set_dotted(config: dict[str, Any], dotted: str, value: str) -> None:
    *parents, last = dotted.split(".")
    node = config
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def resolve_source(key: ModelKey, model_path: str, config_dir: Path) -> StorageSource:
    """The storage source of a model: its storage config with the modelKey's overrides."""
    if key.storage_key is not None:
        config = _read_storage_config(config_dir, key.storage_key)
        if config is None:
            raise InvalidRequest(f"unknown storage_key {key.storage_key!r}: no such storage config")
    else:
        candidates = ["default"]
        if "type" in key.storage_params:
            candidates.insert(0, f"default_{key.storage_params['type']}")
        config = next(
            (c for name in candidates if (c := _read_storage_config(config_dir, name)) is not None),
            {},
        )
    config = dict(config)
    register_secrets(key.storage_params)
    for dotted, value in key.storage_params.items():
        _set_dotted(config, dotted, value)
    if key.bucket is not None:
        config["bucket"] = key.bucket
    storage_type = config.get("type")
    if not isinstance(storage_type, str) or not storage_type:
        raise InvalidRequest("storage config has no 'type'")
    return StorageSource(type=storage_type, config=config, path=model_path)


def model_key_for_runtime(
    key: ModelKey, disk_size_bytes: int, local_schema_path: Path | None
) -> dict[str, Any]:
    """The modelKey as the model server sees it: storage fields removed, sizes local."""
    doc = {k: v for k, v in key.raw.items() if k not in STORAGE_FIELDS}
    doc["disk_size_bytes"] = disk_size_bytes
    if local_schema_path is not None:
        doc["schema_path"] = str(local_schema_path)
    return doc
