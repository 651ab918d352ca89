"""How a pulled model becomes `_mlserver_models/<model id>/` for MLServer: a pure planner.

MLServer finds a model by its `model-settings.json` (`name`, `implementation`,
`parameters.uri`, `inputs`, `outputs`). The rules, kept compatible with the Go
sidecar's MLServer adapter:

- The pulled dir has a `model-settings.json` at its top ("native" layout): every
  other top-level entry is linked under the same name, and the settings are
  written back with `name` set to the model id (MLServer addresses models by
  name, ModelMesh by id) and a relative `parameters.uri` made absolute inside
  the model's repository dir. Every other field stays as the user wrote it.
- Otherwise the settings are generated from the model type (or from an
  `implementation` given in the modelKey's `model_type`): the pulled file or dir
  is linked under its own name and `parameters.uri` points at it; a dir that
  holds a single file points `uri` at that file.
- A schema (modelKey `schema_path`) replaces `inputs` and/or `outputs`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mesh_sidecar.errors import InvalidRequest
from mesh_sidecar.runtimes.base import ModelFiles
from mesh_sidecar.runtimes.layout import LayoutPlan, Link, WriteFile

SETTINGS_FILE = "model-settings.json"

#: Model type -> the MLServer runtime class that serves it (the `implementation` field).
IMPLEMENTATIONS: Mapping[str, str] = {
    "sklearn": "mlserver_sklearn.SKLearnModel",
    "xgboost": "mlserver_xgboost.XGBoostModel",
    "lightgbm": "mlserver_lightgbm.LightGBMModel",
    "mlflow": "mlserver_mlflow.MLflowRuntime",
    "huggingface": "mlserver_huggingface.HuggingFaceRuntime",
    "catboost": "mlserver_catboost.CatboostModel",
}

# A uri with a scheme ("s3://...", "models:/name/1") is not a local path: left alone.
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# A dotted Python path, as MLServer imports it ("my_package.module.MyModel").
_DOTTED_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_TENSOR_FIELDS = ("name", "datatype", "shape")


def plan_mlserver_layout(model: ModelFiles, target_dir: Path) -> LayoutPlan:
    """The entries of `target_dir` (the model's repository dir) for MLServer.

    Reads the pulled tree, the user's settings and the schema; writes nothing.
    Raises InvalidRequest when the model cannot be laid out as given.
    """
    source = model.path
    if not source.exists():
        raise InvalidRequest(f"model path {source.name!r} does not exist after the pull")
    schema = _read_schema(model.schema_path) if model.schema_path is not None else None

    settings_file = source / SETTINGS_FILE if source.is_dir() else source
    if settings_file.name == SETTINGS_FILE and settings_file.is_file():
        return _plan_native(model.model_id, source, settings_file, target_dir, schema)
    return _plan_generated(model, target_dir, schema)


def _plan_native(
    model_id: str,
    source: Path,
    settings_file: Path,
    target_dir: Path,
    schema: Mapping[str, list[dict[str, Any]]] | None,
) -> LayoutPlan:
    settings = _read_json_object(settings_file, SETTINGS_FILE)
    settings["name"] = model_id
    parameters = settings.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise InvalidRequest(f"{SETTINGS_FILE}: 'parameters' must be an object")
        uri = parameters.get("uri")
        if uri is not None:
            if not isinstance(uri, str):
                raise InvalidRequest(f"{SETTINGS_FILE}: 'parameters.uri' must be a string")
            parameters["uri"] = _rewrite_uri(uri, source if source.is_dir() else None, target_dir)
    if schema is not None:
        settings.update(schema)

    plan: list[Link | WriteFile] = [WriteFile(SETTINGS_FILE, _dump(settings))]
    if source.is_dir():
        plan.extend(
            Link(entry.name, entry)
            for entry in sorted(source.iterdir())
            if entry.name != SETTINGS_FILE
        )
    return plan


def _rewrite_uri(uri: str, source_dir: Path | None, target_dir: Path) -> str:
    """A relative uri, made absolute inside the model's repository dir.

    MLServer resolves a relative uri against the settings file's folder; that
    folder is the repository dir, where every pulled entry is linked under its
    own name. An absolute path is taken as rooted at the model's dir, as the Go
    sidecar did; a path that leaves that dir or names nothing in it is refused.
    """
    if _URI_SCHEME.match(uri):
        return uri
    parts: list[str] = []
    for part in uri.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidRequest(
                    f"{SETTINGS_FILE}: parameters.uri {uri!r} leaves the model's dir"
                )
            parts.pop()
        else:
            parts.append(part)
    if not parts:
        return str(target_dir)
    relative = "/".join(parts)
    if source_dir is None or not (source_dir / relative).exists():
        raise InvalidRequest(f"{SETTINGS_FILE}: parameters.uri {uri!r} names no file of the model")
    return str(target_dir / relative)


def _plan_generated(
    model: ModelFiles, target_dir: Path, schema: Mapping[str, list[dict[str, Any]]] | None
) -> LayoutPlan:
    source = model.path
    implementation = _implementation(model)
    if source.name == SETTINGS_FILE:
        raise InvalidRequest(f"model dir {source.name!r} cannot be linked beside its settings")
    uri = target_dir / source.name
    if source.is_dir():
        entries = list(source.iterdir())
        if len(entries) == 1 and entries[0].is_file():
            # MLServer's runtimes look for well-known file names in a dir
            # (model.joblib, model.bst, ...); a lone file of any name is the model.
            uri = uri / entries[0].name
    settings: dict[str, Any] = {
        "name": model.model_id,
        "implementation": implementation,
        "parameters": {"uri": str(uri)},
    }
    if schema is not None:
        settings.update(schema)
    return [WriteFile(SETTINGS_FILE, _dump(settings)), Link(source.name, source)]


def _implementation(model: ModelFiles) -> str:
    """The runtime class: the modelKey's `model_type.implementation`, else by type name."""
    model_type = model.model_key.get("model_type")
    if isinstance(model_type, Mapping) and model_type.get("implementation") is not None:
        given = model_type["implementation"]
        if not isinstance(given, str) or not _DOTTED_PATH.match(given):
            raise InvalidRequest(
                f"model_type.implementation {given!r} is not a dotted Python path "
                "(e.g. 'my_package.MyModel')"
            )
        return given
    # "sklearn:1.3" and "SKLearn" both mean sklearn.
    name = model.model_type.split(":", 1)[0].strip().lower()
    implementation = IMPLEMENTATIONS.get(name)
    if implementation is None:
        known = ", ".join(sorted(IMPLEMENTATIONS))
        raise InvalidRequest(
            f"model type {model.model_type!r} has no MLServer runtime (known: {known}); "
            f"add a {SETTINGS_FILE} to the model, or give model_type.implementation "
            "in the modelKey"
        )
    return implementation


def _read_schema(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The `inputs`/`outputs` of a schema file, each tensor as name, datatype, shape."""
    document = _read_json_object(path, "schema")
    schema: dict[str, list[dict[str, Any]]] = {}
    for key in ("inputs", "outputs"):
        if key not in document:
            continue
        tensors = document[key]
        if not isinstance(tensors, list):
            raise InvalidRequest(f"schema: {key!r} must be a list of tensors")
        schema[key] = [_tensor(tensor, key) for tensor in tensors]
    return schema


def _tensor(tensor: object, key: str) -> dict[str, Any]:
    if not isinstance(tensor, dict):
        raise InvalidRequest(f"schema: each of {key!r} must be an object")
    name, datatype, shape = (tensor.get(field) for field in _TENSOR_FIELDS)
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"schema: a tensor of {key!r} has no name")
    if not isinstance(datatype, str) or not datatype:
        raise InvalidRequest(f"schema: tensor {name!r} has no datatype")
    if not isinstance(shape, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) for dim in shape
    ):
        raise InvalidRequest(f"schema: tensor {name!r} needs a shape (a list of integers)")
    return {"name": name, "datatype": datatype, "shape": shape}


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise InvalidRequest(f"{what} file {path.name!r} cannot be read: {exc.strerror}") from exc
    except ValueError as exc:
        raise InvalidRequest(f"{what} file {path.name!r} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidRequest(f"{what} file {path.name!r} must hold a JSON object")
    return document


def _dump(settings: Mapping[str, Any]) -> str:
    return json.dumps(settings, indent=2) + "\n"
