"""The manifests in images/manifests/ against the ServingRuntime CRD schema, and what they promise.

The schema comes from KServe's Python SDK on PyPI (see kserve_schema.py for the
exact source); the storage-config examples go through the sidecar's own
storage-config resolution.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mesh_sidecar.adapter.modelkey import ModelKey, resolve_source

from .kserve_schema import REPO, model_for, schema_for

MANIFESTS = REPO / "images" / "manifests"
LAUNCHERS = REPO / "images" / "sidecar" / "launchers"
STORAGE_TYPES = {"s3", "gcs", "azure", "http", "pvc"}


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                found.append((f"{path.name}#{index}", doc))
    return found


def by_kind(*kinds: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] in kinds]


def validation_errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema_for(model_for(doc)))
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(doc)
    ]


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[name for name, _ in documents()])
def test_manifest_matches_its_schema(name: str, doc: dict[str, Any]) -> None:
    assert validation_errors(doc) == []


def test_the_schema_rejects_a_misspelt_field_and_a_missing_one() -> None:
    runtime = copy.deepcopy(by_kind("ServingRuntime")[0])
    runtime["spec"]["builtinAdapter"] = runtime["spec"].pop("builtInAdapter")
    del runtime["spec"]["containers"]
    errors = validation_errors(runtime)
    assert any("builtinAdapter" in e for e in errors), errors
    assert any("'containers' is a required property" in e for e in errors), errors


def test_the_schema_rejects_a_wrong_type() -> None:
    runtime = copy.deepcopy(by_kind("ServingRuntime")[0])
    runtime["spec"]["builtInAdapter"]["memBufferBytes"] = "128Mi"
    assert any("memBufferBytes" in e for e in validation_errors(runtime))


def test_runtimes_for_triton_mlserver_and_simple_string() -> None:
    names = {doc["metadata"]["name"] for doc in by_kind("ServingRuntime")}
    assert {"triton-2.x", "mlserver-1.x", "simple-string"} <= names


def test_every_built_in_adapter_has_a_launcher_in_the_image() -> None:
    server_types = {
        doc["spec"]["builtInAdapter"]["serverType"]
        for doc in by_kind("ServingRuntime", "ClusterServingRuntime")
        if "builtInAdapter" in doc["spec"]
    }
    assert server_types == {"triton", "mlserver"}
    for server_type in server_types:
        assert (LAUNCHERS / f"{server_type}-adapter").stat().st_mode & 0o111


def test_the_controller_config_points_the_puller_at_our_launcher() -> None:
    (config_map,) = by_kind("ConfigMap")
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    command = config["storageHelperImage"]["command"]
    assert command == ["/opt/app/puller"]
    assert (LAUNCHERS / "puller").stat().st_mode & 0o111


def test_storage_config_has_an_example_of_every_type_and_each_resolves(tmp_path: Path) -> None:
    (secret,) = [doc for doc in by_kind("Secret") if doc["metadata"]["name"] == "storage-config"]
    for key, text in secret["stringData"].items():
        (tmp_path / key).write_text(text)
    types = set()
    for key, text in secret["stringData"].items():
        source = resolve_source(ModelKey(storage_key=key), "models/m1", tmp_path)
        assert source.config == json.loads(text)
        types.add(source.type)
    assert types == STORAGE_TYPES
    # A model that names no storage key gets the `default` entry.
    assert resolve_source(ModelKey(), "models/m1", tmp_path).config == json.loads(
        secret["stringData"]["default"]
    )
