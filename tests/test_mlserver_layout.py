"""The MLServer layout planner: which entries `_mlserver_models/<id>/` gets, and its settings.

The first table re-states the Go sidecar's MLServer layout cases; the rest are
the cases it did not cover (more types, custom runtimes, bad input).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mesh_sidecar.adapter.cli import main as cli_main
from mesh_sidecar.errors import InvalidRequest
from mesh_sidecar.runtimes.base import ModelFiles
from mesh_sidecar.runtimes.layout import Link, WriteFile, apply_layout
from mesh_sidecar.runtimes.mlserver_layout import IMPLEMENTATIONS, plan_mlserver_layout

CUSTOM = {"name": "custom", "implementation": "my_runtime.MyModel"}
SCHEMA_IN = [{"name": "INPUT", "datatype": "FP32", "shape": [1, 784]}]
SCHEMA_OUT = [{"name": "OUTPUT", "datatype": "INT64", "shape": [1]}]
NEW_OUT = [{"name": "NEW_OUTPUT", "datatype": "FP32", "shape": [1, 1]}]


@dataclass(frozen=True)
class Case:
    """A pulled tree in, the repository dir's entries and settings out.

    Paths are relative to the pulled dir (named after the model id, as the
    sidecar pulls). In `settings`, "{repo}" stands for the model's repository dir.
    """

    model_id: str
    model_type: str
    model_path: str  # "" is the pulled dir itself
    files: list[str]
    links: dict[str, str]  # entry name -> pulled path it links to
    settings: dict[str, Any]
    given_settings: dict[str, Any] | None = None  # written at <model_path>/model-settings.json
    schema: dict[str, Any] | None = None  # written at _schema.json beside the model
    model_key: dict[str, Any] = field(default_factory=dict)


GO_CASES = [
    Case(
        "single-file",
        "custom",
        "some-file",
        ["some-file"],
        links={"some-file": "some-file"},
        settings={
            "name": "single-file",
            "implementation": "my_runtime.MyModel",
            "parameters": {"uri": "{repo}/some-file"},
        },
        model_key={"model_type": CUSTOM},
    ),
    Case(
        # The Go sidecar pointed uri at the dir; a lone file of any name is the model.
        "dir-with-single-file",
        "custom",
        "somedir",
        ["somedir/somefile"],
        links={"somedir": "somedir"},
        settings={
            "name": "dir-with-single-file",
            "implementation": "my_runtime.MyModel",
            "parameters": {"uri": "{repo}/somedir/somefile"},
        },
        model_key={"model_type": CUSTOM},
    ),
    Case(
        "dir-with-complex-structure",
        "custom",
        "modelname",
        [
            "modelname/data",
            "modelname/metadata",
            "modelname/somedir/somefile1",
            "modelname/somedir/somefile2",
            "modelname/anotherdir/morefiles",
        ],
        links={"modelname": "modelname"},
        settings={
            "name": "dir-with-complex-structure",
            "implementation": "my_runtime.MyModel",
            "parameters": {"uri": "{repo}/modelname"},
        },
        model_key={"model_type": CUSTOM},
    ),
    Case(
        "dir-mlserver-layout",
        "custom",
        "",
        ["somefile", "somedir/data"],
        given_settings={},
        links={"somefile": "somefile", "somedir": "somedir"},
        settings={"name": "dir-mlserver-layout"},
    ),
    Case(
        "path-to-modelid-dir",
        "sklearn",
        "",
        ["somefile", "other"],
        links={"path-to-modelid-dir": ""},
        settings={
            "name": "path-to-modelid-dir",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "{repo}/path-to-modelid-dir"},
        },
    ),
    Case(
        "sklearn-standard-native",
        "sklearn",
        "model",
        ["model/model.joblib"],
        given_settings={
            "name": "my sklearn model",
            "implementation": "mlserver_sklearn.SKLearnModel",
        },
        links={"model.joblib": "model/model.joblib"},
        settings={
            "name": "sklearn-standard-native",
            "implementation": "mlserver_sklearn.SKLearnModel",
        },
    ),
    Case(
        "xgboost-standard-native",
        "xgboost",
        "data",
        ["data/model.bst"],
        given_settings={"implementation": "mlserver_xgboost.XGBoostModel"},
        links={"model.bst": "data/model.bst"},
        settings={
            "name": "xgboost-standard-native",
            "implementation": "mlserver_xgboost.XGBoostModel",
        },
    ),
    Case(
        "xgboost-example",
        "xgboost",
        "dir",
        ["dir/mushroom-xgboost.json"],
        given_settings={
            "name": "mushroom-xgboost",
            "implementation": "mlserver_xgboost.XGBoostModel",
            "parameters": {"uri": "./mushroom-xgboost.json", "version": "v0.1.0"},
        },
        links={"mushroom-xgboost.json": "dir/mushroom-xgboost.json"},
        settings={
            "name": "xgboost-example",
            "implementation": "mlserver_xgboost.XGBoostModel",
            "parameters": {"uri": "{repo}/mushroom-xgboost.json", "version": "v0.1.0"},
        },
    ),
    Case(
        "mllib-standard",
        "mllib",
        "mllib",
        ["mllib/data/some-files", "mllib/metadata/some-files"],
        given_settings={},
        links={"data": "mllib/data", "metadata": "mllib/metadata"},
        settings={"name": "mllib-standard"},
    ),
    Case(
        "schema-simple",
        "xgboost",
        "model.json",
        ["model.json"],
        schema={"inputs": SCHEMA_IN, "outputs": SCHEMA_OUT},
        links={"model.json": "model.json"},
        settings={
            "name": "schema-simple",
            "implementation": "mlserver_xgboost.XGBoostModel",
            "parameters": {"uri": "{repo}/model.json"},
            "inputs": SCHEMA_IN,
            "outputs": SCHEMA_OUT,
        },
    ),
    Case(
        "schema-overwrite-outputs",
        "xgboost",
        "my-model",
        ["my-model/model.json"],
        given_settings={"name": "some-name", "inputs": SCHEMA_IN, "outputs": SCHEMA_OUT},
        schema={"outputs": NEW_OUT},
        links={"model.json": "my-model/model.json"},
        settings={"name": "schema-overwrite-outputs", "inputs": SCHEMA_IN, "outputs": NEW_OUT},
    ),
    Case(
        "model-filename-precedes-model-settings",
        "sklearn",
        "data",
        ["data/aaaaa.json"],
        given_settings={
            "name": "model-name",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./aaaaa.json"},
        },
        links={"aaaaa.json": "data/aaaaa.json"},
        settings={
            "name": "model-filename-precedes-model-settings",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "{repo}/aaaaa.json"},
        },
    ),
]

OUR_CASES = [
    *(
        Case(
            f"{model_type}-generated",
            model_type,
            "model",
            ["model/model.bin", "model/extra.txt"],
            links={"model": "model"},
            settings={
                "name": f"{model_type}-generated",
                "implementation": implementation,
                "parameters": {"uri": "{repo}/model"},
            },
        )
        for model_type, implementation in IMPLEMENTATIONS.items()
    ),
    Case(
        "type-with-version-and-case",
        "LightGBM:4",
        "model.bst",
        ["model.bst"],
        links={"model.bst": "model.bst"},
        settings={
            "name": "type-with-version-and-case",
            "implementation": "mlserver_lightgbm.LightGBMModel",
            "parameters": {"uri": "{repo}/model.bst"},
        },
    ),
    Case(
        "implementation-beats-type",
        "sklearn",
        "model.pkl",
        ["model.pkl"],
        links={"model.pkl": "model.pkl"},
        settings={
            "name": "implementation-beats-type",
            "implementation": "acme.runtimes.Fancy",
            "parameters": {"uri": "{repo}/model.pkl"},
        },
        model_key={"model_type": {"name": "sklearn", "implementation": "acme.runtimes.Fancy"}},
    ),
    Case(
        "own-settings-extra-fields-kept",
        "anything-at-all",
        "m",
        ["m/weights/model.joblib"],
        given_settings={
            "name": "custom-name",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "max_batch_size": 4,
            "parameters": {
                "uri": "weights/model.joblib",
                "version": "7",
                "environment_tarball": None,
                "extra": {"predict_fn": "predict_proba"},
            },
        },
        links={"weights": "m/weights"},
        settings={
            "name": "own-settings-extra-fields-kept",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "max_batch_size": 4,
            "parameters": {
                "uri": "{repo}/weights/model.joblib",
                "version": "7",
                "environment_tarball": None,
                "extra": {"predict_fn": "predict_proba"},
            },
        },
    ),
    Case(
        "uri-rooted-and-dotted",
        "sklearn",
        "",
        ["a/model.joblib"],
        given_settings={"parameters": {"uri": "/a/./b/../model.joblib"}},
        links={"a": "a"},
        settings={"name": "uri-rooted-and-dotted", "parameters": {"uri": "{repo}/a/model.joblib"}},
    ),
    Case(
        "uri-is-the-dir",
        "sklearn",
        "",
        ["model.joblib"],
        given_settings={"parameters": {"uri": "./"}},
        links={"model.joblib": "model.joblib"},
        settings={"name": "uri-is-the-dir", "parameters": {"uri": "{repo}"}},
    ),
    Case(
        "uri-with-a-scheme-kept",
        "mlflow",
        "",
        ["MLmodel"],
        given_settings={"parameters": {"uri": "models:/fraud/3"}},
        links={"MLmodel": "MLmodel"},
        settings={"name": "uri-with-a-scheme-kept", "parameters": {"uri": "models:/fraud/3"}},
    ),
    Case(
        "settings-only-model",
        "huggingface",
        "model-settings.json",
        [],
        given_settings={
            "implementation": "mlserver_huggingface.HuggingFaceRuntime",
            "parameters": {"extra": {"task": "text-generation"}},
        },
        links={},
        settings={
            "name": "settings-only-model",
            "implementation": "mlserver_huggingface.HuggingFaceRuntime",
            "parameters": {"extra": {"task": "text-generation"}},
        },
    ),
    Case(
        "nested-settings-are-not-native",
        "sklearn",
        "",
        ["inner/model-settings.json", "inner/model.joblib"],
        links={"nested-settings-are-not-native": ""},
        settings={
            "name": "nested-settings-are-not-native",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "{repo}/nested-settings-are-not-native"},
        },
    ),
]


def _pull(tmp_path: Path, case: Case) -> ModelFiles:
    """Write the case's pulled tree the way the sidecar's pull leaves it."""
    pulled = tmp_path / "models" / case.model_id
    pulled.mkdir(parents=True)
    for name in case.files:
        (pulled / name).parent.mkdir(parents=True, exist_ok=True)
        (pulled / name).write_text(f"contents of {name}")
    model_path = pulled / case.model_path if case.model_path else pulled
    if case.given_settings is not None:
        settings_file = (
            model_path
            if model_path.name == "model-settings.json"
            else (model_path / "model-settings.json")
        )
        settings_file.parent.mkdir(parents=True, exist_ok=True)
        settings_file.write_text(json.dumps(case.given_settings))
    schema_path = None
    if case.schema is not None:
        schema_path = tmp_path / "models" / "_schemas" / case.model_id / "_schema.json"
        schema_path.parent.mkdir(parents=True)
        schema_path.write_text(json.dumps(case.schema))
    return ModelFiles(
        model_id=case.model_id,
        model_type=case.model_type,
        model_type_version=None,
        path=model_path,
        disk_size_bytes=0,
        schema_path=schema_path,
        model_key=case.model_key,
    )


def _expand(value: Any, repo: Path) -> Any:
    if isinstance(value, str):
        return value.replace("{repo}", str(repo))
    if isinstance(value, dict):
        return {k: _expand(v, repo) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, repo) for v in value]
    return value


@pytest.mark.parametrize("case", GO_CASES + OUR_CASES, ids=lambda c: c.model_id)
def test_layout(tmp_path: Path, case: Case) -> None:
    model = _pull(tmp_path, case)
    repo = tmp_path / "models" / "_mlserver_models" / case.model_id
    plan = plan_mlserver_layout(model, repo)

    pulled = tmp_path / "models" / case.model_id
    links = {e.path: e.source for e in plan if isinstance(e, Link)}
    assert links == {
        name: pulled / target if target else pulled for name, target in case.links.items()
    }
    written = {e.path: e.content for e in plan if isinstance(e, WriteFile)}
    assert list(written) == ["model-settings.json"]
    assert json.loads(written["model-settings.json"]) == _expand(case.settings, repo)


def test_applied_layout_is_what_mlserver_reads(tmp_path: Path) -> None:
    case = GO_CASES[7]  # xgboost-example: own settings with a relative uri
    model = _pull(tmp_path, case)
    repo = tmp_path / "models" / "_mlserver_models" / case.model_id
    apply_layout(plan_mlserver_layout(model, repo), repo)

    settings = json.loads((repo / "model-settings.json").read_text())
    assert settings["name"] == "xgboost-example"
    assert (
        Path(settings["parameters"]["uri"]).read_text() == "contents of dir/mushroom-xgboost.json"
    )
    assert sorted(p.name for p in repo.iterdir()) == [
        "model-settings.json",
        "mushroom-xgboost.json",
    ]
    assert not (repo / "model-settings.json").is_symlink()  # the user's file is never written


def test_user_settings_file_is_left_unchanged(tmp_path: Path) -> None:
    case = GO_CASES[5]  # sklearn-standard-native
    model = _pull(tmp_path, case)
    before = (model.path / "model-settings.json").read_text()
    plan_mlserver_layout(model, tmp_path / "repo")
    assert (model.path / "model-settings.json").read_text() == before


@pytest.mark.parametrize(
    ("files", "given_settings", "schema", "model_type", "message"),
    [
        (["m.bin"], None, None, "tensorflow", "known: catboost, huggingface, lightgbm, mlflow"),
        (["m.bin"], None, None, "", "has no MLServer runtime"),
        ([], {"parameters": {"uri": "../other-model/model.joblib"}}, None, "sklearn", "leaves"),
        ([], {"parameters": {"uri": "a/../../x"}}, None, "sklearn", "leaves"),
        (
            ["model.joblib"],
            {"parameters": {"uri": "./missing.joblib"}},
            None,
            "sklearn",
            "names no file",
        ),
        ([], {"parameters": {"uri": 3}}, None, "sklearn", "must be a string"),
        ([], {"parameters": ["uri"]}, None, "sklearn", "'parameters' must be an object"),
        ([], ["not", "an", "object"], None, "sklearn", "must hold a JSON object"),
        (["m.bin"], None, {"inputs": {"name": "x"}}, "sklearn", "must be a list"),
        (["m.bin"], None, {"inputs": [{"name": "x", "datatype": "FP32"}]}, "sklearn", "shape"),
        (["m.bin"], None, {"outputs": [{"datatype": "FP32", "shape": [1]}]}, "sklearn", "no name"),
    ],
)
def test_bad_models_are_invalid_requests(
    tmp_path: Path,
    files: list[str],
    given_settings: Any,
    schema: dict[str, Any] | None,
    model_type: str,
    message: str,
) -> None:
    pulled = tmp_path / "m1"
    pulled.mkdir()
    for name in files:
        (pulled / name).write_text("x")
    if given_settings is not None:
        (pulled / "model-settings.json").write_text(json.dumps(given_settings))
    schema_path = None
    if schema is not None:
        schema_path = tmp_path / "schema.json"
        schema_path.write_text(json.dumps(schema))
    model = ModelFiles("m1", model_type, None, pulled, 0, schema_path=schema_path)
    with pytest.raises(InvalidRequest, match=message):
        plan_mlserver_layout(model, tmp_path / "repo" / "m1")


def test_settings_that_are_not_json(tmp_path: Path) -> None:
    (tmp_path / "m1").mkdir()
    (tmp_path / "m1" / "model-settings.json").write_text("{name: m1")
    model = ModelFiles("m1", "sklearn", None, tmp_path / "m1", 0)
    with pytest.raises(InvalidRequest, match=r"model-settings\.json file .* is not valid JSON"):
        plan_mlserver_layout(model, tmp_path / "repo" / "m1")


def test_custom_implementation_must_be_a_dotted_path(tmp_path: Path) -> None:
    (tmp_path / "m1").write_text("x")
    key = {"model_type": {"name": "custom", "implementation": "os.system('x')"}}
    model = ModelFiles("m1", "custom", None, tmp_path / "m1", 0, model_key=key)
    with pytest.raises(InvalidRequest, match="not a dotted Python path"):
        plan_mlserver_layout(model, tmp_path / "repo" / "m1")


# The layout command takes no modelKey: the cases that need one are left out.
@pytest.mark.parametrize("case", [c for c in GO_CASES if not c.model_key], ids=lambda c: c.model_id)
def test_layout_command(tmp_path: Path, case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    model = _pull(tmp_path, case)
    root = tmp_path / "models"
    argv = ["layout", "--runtime", "mlserver", "--model-id", case.model_id]
    argv += ["--model-type", case.model_type]
    if model.schema_path is not None:
        argv += ["--schema", str(model.schema_path)]
    assert cli_main([*argv, str(model.path), str(root)]) == 0

    first, *entries = capsys.readouterr().out.splitlines()
    assert first == f"{root / '_mlserver_models' / case.model_id}/"
    pulled = root / case.model_id
    links = [
        f"  {name} -> {pulled / target if target else pulled}"
        for name, target in case.links.items()
    ]
    assert sorted(e for e in entries if " -> " in e) == sorted(links)
    generated = [e for e in entries if " -> " not in e]
    assert len(generated) == 1
    assert re.fullmatch(r"  model-settings\.json \(generated, \d+ bytes\)", generated[0])


def test_layout_command_names_known_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model.onnx").write_text("x")
    argv = ["layout", "--runtime", "mlserver", "--model-id", "m1", "--model-type", "onnx"]
    assert cli_main([*argv, str(tmp_path / "model.onnx"), str(tmp_path / "models")]) == 1
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err
    assert "known: catboost, huggingface, lightgbm, mlflow, sklearn, xgboost" in err
