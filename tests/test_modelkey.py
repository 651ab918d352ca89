"""modelKey parsing and storage-config resolution, as tables (CONTEXT section 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mesh_sidecar.adapter.modelkey import (
    model_key_for_runtime,
    parse_model_key,
    resolve_source,
)
from mesh_sidecar.errors import InvalidRequest


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ('{"storage_key":"s","bucket":"b"}', {"storage_key": "s", "bucket": "b"}),
        ('{"model_type":"sklearn"}', {"model_type": "sklearn"}),
        (
            '{"model_type":{"name":"onnx","version":"1"}}',
            {"model_type": "onnx", "model_type_version": "1"},
        ),
        (
            '{"disk_size_bytes":1234,"schema_path":"s.json"}',
            {"disk_size_bytes": 1234, "schema_path": "s.json"},
        ),
        (
            '{"storage_params":{"type":"s3","endpoint_url":"http://x"}}',
            {"storage_params": {"type": "s3", "endpoint_url": "http://x"}},
        ),
        ('{"storage_key":"","bucket":null}', {"storage_key": None, "bucket": None}),
    ],
)
def test_parse_model_key(text: str, expected: dict[str, object]) -> None:
    key = parse_model_key(text)
    for field, value in expected.items():
        assert getattr(key, field) == value


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1,2]",
        '"a string"',
        '{"storage_key": 5}',
        '{"storage_params": {"a": 1}}',
        '{"storage_params": "x"}',
        '{"model_type": 3}',
        '{"disk_size_bytes": -1}',
        '{"disk_size_bytes": "12"}',
        '{"disk_size_bytes": true}',
        "[" * 100_000,
        json.dumps({"x": "y" * 70_000}),
    ],
)
def test_malformed_model_keys_are_invalid_requests(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_model_key(text)


def _config(dir_: Path, name: str, doc: object) -> None:
    (dir_ / name).write_text(json.dumps(doc))


def test_storage_key_names_the_config_and_bucket_overrides(tmp_path: Path) -> None:
    _config(tmp_path, "store", {"type": "s3", "bucket": "b1", "default_bucket": "d"})
    key = parse_model_key('{"storage_key":"store","bucket":"b2"}')
    source = resolve_source(key, "models/m1", tmp_path)
    assert (source.type, source.path, source.config["bucket"]) == ("s3", "models/m1", "b2")


def test_storage_params_override_with_dotted_paths(tmp_path: Path) -> None:
    _config(tmp_path, "store", {"type": "http", "url": "http://a", "headers": {"X": "1"}})
    key = parse_model_key(
        '{"storage_key":"store","storage_params":{"url":"http://b","headers.Y":"2"}}'
    )
    config = resolve_source(key, "m", tmp_path).config
    assert config["url"] == "http://b"
    assert config["headers"] == {"X": "1", "Y": "2"}


@pytest.mark.parametrize(
    ("files", "params", "expected_type"),
    [
        ({"default": {"type": "pvc", "name": "c"}}, {}, "pvc"),
        ({"default": {"type": "pvc"}, "default_s3": {"type": "s3"}}, {"type": "s3"}, "s3"),
        ({"default": {"type": "gcs"}}, {"type": "gcs"}, "gcs"),
        ({}, {"type": "pvc", "name": "c"}, "pvc"),
    ],
)
def test_default_storage_keys(
    tmp_path: Path, files: dict[str, object], params: dict[str, str], expected_type: str
) -> None:
    for name, doc in files.items():
        _config(tmp_path, name, doc)
    key = parse_model_key(json.dumps({"storage_params": params}))
    assert resolve_source(key, "m", tmp_path).type == expected_type


@pytest.mark.parametrize(
    ("files", "key"),
    [
        ({}, {"storage_key": "missing"}),
        ({"store": {"bucket": "b"}}, {"storage_key": "store"}),
        ({}, {}),
        ({"store": "text"}, {"storage_key": "store"}),
        ({}, {"storage_key": "../etc"}),
    ],
)
def test_unresolvable_storage_is_invalid(
    tmp_path: Path, files: dict[str, object], key: dict[str, object]
) -> None:
    for name, doc in files.items():
        _config(tmp_path, name, doc)
    with pytest.raises(InvalidRequest):
        resolve_source(parse_model_key(json.dumps(key)), "m", tmp_path)


def test_config_that_is_not_json_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "store").write_text("{not json")
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        resolve_source(parse_model_key('{"storage_key":"store"}'), "m", tmp_path)


def test_model_key_for_the_runtime_has_local_facts_only() -> None:
    key = parse_model_key(
        '{"storage_key":"s","storage_params":{"a":"b"},"bucket":"x",'
        '"model_type":{"name":"sklearn"},"disk_size_bytes":1,"schema_path":"remote.json"}'
    )
    doc = model_key_for_runtime(key, 4096, Path("/models/_schemas/m1/remote.json"))
    assert doc == {
        "model_type": {"name": "sklearn"},
        "disk_size_bytes": 4096,
        "schema_path": "/models/_schemas/m1/remote.json",
    }
