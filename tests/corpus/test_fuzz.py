"""Hypothesis fuzzing of the modelKey and storage-config parsers, bounded in examples.

Whatever the input, the answer is a parsed value or a SidecarError that carries a
status code: never another exception (which the sidecar would answer INTERNAL),
and never a secret of the config in the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh_sidecar.adapter.modelkey import parse_model_key, resolve_source
from mesh_sidecar.errors import SidecarError
from mesh_sidecar.pullers.base import PullerSettings, StorageSource, pull_atomically
from mesh_sidecar.pullers.registry import PULLERS

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
SECRET = "Fuzz-Secret-Value-0123456789"
MODEL_KEY_FIELDS = [
    "storage_key",
    "storage_params",
    "bucket",
    "model_type",
    "disk_size_bytes",
    "schema_path",
]
CONFIG_FIELDS = [
    "type",
    "bucket",
    "default_bucket",
    "region",
    "certificate",
    "access_key_id",
    "secret_access_key",
    "anonymous",
    "max_concurrency",
    "connect_timeout",
    "read_timeout",
    "max_attempts",
    "headers",
    "client_certificate",
    "client_key",
    "name",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@given(st.text(max_size=300))
@FUZZ
def test_any_text_as_a_model_key(text: str) -> None:
    with contextlib.suppress(SidecarError):
        parse_model_key(text)


@given(st.dictionaries(st.sampled_from(MODEL_KEY_FIELDS) | st.text(max_size=8), json_values))
@FUZZ
def test_any_json_object_as_a_model_key(doc: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as configs:
        (Path(configs) / "store").write_text(json.dumps({"type": "s3", "bucket": "b"}))
        try:
            key = parse_model_key(json.dumps(doc))
            resolve_source(key, "models/m", Path(configs))
        except SidecarError:
            pass


@given(
    st.dictionaries(st.sampled_from(CONFIG_FIELDS), json_values, max_size=8),
    st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=4),
    st.text(max_size=40),
)
@FUZZ
def test_any_storage_config_and_params(
    config: dict[str, Any], params: dict[str, str], path: str
) -> None:
    with tempfile.TemporaryDirectory() as configs:
        (Path(configs) / "store").write_text(json.dumps(config))
        key = json.dumps({"storage_key": "store", "storage_params": params})
        with contextlib.suppress(SidecarError):
            resolve_source(parse_model_key(key), path, Path(configs))


# The pullers parse their part of the config when a pull starts. Their endpoints stay on
# a closed loopback port, so a config that parses fails fast with "unreachable".
PULL_TYPES = st.sampled_from(["s3", "http", "pvc"])


@given(
    PULL_TYPES,
    st.dictionaries(st.sampled_from(CONFIG_FIELDS[1:]), json_values, max_size=6),
    st.text(max_size=30),
)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_pullers_parse_any_config_into_a_status(
    storage_type: str, config: dict[str, Any], path: str
) -> None:
    config = {
        **config,
        "type": storage_type,
        "endpoint_url": "http://127.0.0.1:1",
        "url": "http://127.0.0.1:1/",
        "max_attempts": "1",
        "secret_access_key": SECRET,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        puller = PULLERS.get(storage_type)(PullerSettings(pvc_mounts_dir=root / "pvc"))
        source = StorageSource(storage_type, config, path)

        async def pull() -> None:
            try:
                await pull_atomically(puller, source, root / "models" / "m")
            finally:
                await puller.close()

        try:
            asyncio.run(pull())
        except SidecarError as exc:
            assert SECRET not in str(exc)
        assert not (root / "models").exists() or list((root / "models").iterdir()) in (
            [],
            [root / "models" / "m"],
        )
