"""Table tests of the Triton layout planner.

The first groups restate, as data, every case of the Go sidecar's layout tests
(kserve/modelmesh-runtime-adapter, model-mesh-triton-adapter); the last group
holds cases it lacked. Each case is a pulled tree in and the whole plan out:
`links` maps a path under `_triton_models/<id>/` to the pulled path it links
to ("" is the pulled model's root), `config` is the generated config.pbtxt.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from mesh_sidecar.adapter import cli
from mesh_sidecar.errors import FailedPrecondition, InvalidRequest, SidecarError
from mesh_sidecar.runtimes.layout import Link, WriteFile, apply_layout
from mesh_sidecar.runtimes.triton_layout import plan_triton_layout


@dataclass(frozen=True)
class Case:
    id: str
    model_type: str
    files: tuple[str, ...]  # pulled files ("dir/" is an empty dir)
    path: str = ""  # the model's path inside the pulled tree
    schema: dict[str, Any] | None = None
    schema_file: str = "../schema.json"  # where the schema sits, relative to the tree
    config_in: str | None = None  # text of <path>/config.pbtxt
    links: dict[str, str] = field(default_factory=dict)
    config: str | None = None  # the expected generated config.pbtxt
    error: type[SidecarError] | None = None


SCHEMA_3x32x32 = {
    "inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [3, 32, 32]}],
    "outputs": [{"name": "OUTPUT", "datatype": "INT64", "shape": [1]}],
}
CONFIG_3x32x32 = """
    input { name: "INPUT" data_type: TYPE_FP32 dims: [3, 32, 32] }
    output { name: "OUTPUT" data_type: TYPE_INT64 dims: [1] }
"""

GO_CASES = [
    # -- file layouts and model paths, model type unknown to the planner --
    Case("layoutFile", "unknown", ("model.data", "irrelevant"), path="model.data",
         links={"1/model.data": "model.data"}),
    Case("layoutDirectoryWithSingleFile", "unknown", ("modeldir/data", "irrelevant"),
         path="modeldir", links={"1": "modeldir"}),
    Case("layoutDirectoryWithMultiFile", "unknown",
         ("modeldir/data", "modeldir/file", "irrelevant"), path="modeldir",
         links={"1": "modeldir"}),
    Case("layoutDirectoryWithSingleDirectory", "unknown",
         ("modeldir/subdir/1", "modeldir/subdir/2", "irrelevant"), path="modeldir",
         links={"1": "modeldir"}),
    Case("layoutDirectoryWithComplex", "unknown",
         ("modeldir/subdir1/data1", "modeldir/subdir2/data2", "modeldir/file", "irrelevant"),
         path="modeldir", links={"1": "modeldir"}),
    Case("layoutBackwardsCompatibilityComplex", "unknown",
         ("data/model.1", "data/model.2", "file", "meta.json"), links={"1": ""}),
    Case("layoutVersionSingleFile", "unknown", ("model/1/file", "model/3/file", "irrelevant"),
         path="model", links={"3": "model/3"}),
    Case("layoutVersionSingleDir", "unknown",
         ("model/7/dir/file", "model/9/dir/file", "irrelevant"), path="model",
         links={"9": "model/9"}),
    Case("layoutVersionMultiFile", "unknown",
         ("model/1/file", "model/2/file1", "model/2/file2", "irrelevant"), path="model",
         links={"2": "model/2"}),
    Case("layoutVersionMultiFile_2", "unknown",
         ("model/1/file", "model/2/file1", "model/2/file2", "irrelevant"), path="model/2",
         links={"1": "model/2"}),
    # -- tensorflow --
    Case("tensorflowEmpty", "tensorflow", (), links={"1/model.savedmodel": ""}),
    Case("tensorflowSavedModel", "tensorflow", ("1/model.savedmodel/saved_model.pb",),
         links={"1/model.savedmodel": "1/model.savedmodel"}),
    Case("tensorflowGraphDef", "tensorflow", ("1/model.graphdef",),
         links={"1/model.graphdef": "1/model.graphdef"}),
    Case("tensorflowGraphDefForFile", "tensorflow", ("saved_model.pb",),
         links={"1/model.graphdef": "saved_model.pb"}),
    Case("tensorflowSavedModelForDir", "tensorflow:1.5", ("saved_model.pb", "variables"),
         links={"1/model.savedmodel": ""}),
    Case("tensorflowAllowSubdir_1", "tensorflow",
         ("saved_model/saved_model.pb", "saved_model/variables"),
         links={"1/model.savedmodel": "saved_model"}),
    Case("tensorflowAllowSubdir_2", "tensorflow", ("model.savedmodel/saved_model.pb",),
         links={"1/model.savedmodel": "model.savedmodel"}),
    Case("tensorflowVersionDirWithFile", "tensorflow", ("1/saved_model.pb",),
         links={"1/model.graphdef": "1/saved_model.pb"}),
    Case("tensorflowVersionDirWithDir", "tensorflow", ("2/saved_model.pb", "2/variables"),
         links={"2/model.savedmodel": "2"}),
    Case("tensorflowSubdirInVersionDir", "tensorflow",
         ("1/saved_model/saved_model.pb", "1/saved_model/variables"),
         links={"1/model.savedmodel": "1/saved_model"}),
    Case("tensorflowAssumeModelDataIfNotAllVersionNumbers", "tensorflow",
         ("1/model.savedmodel/saved_model.pb", "1/model.savedmodel/variables/index",
          "NAN/model.savedmodel/saved_model.pb", "NAN/model.savedmodel/variables/index"),
         links={"1/model.savedmodel": ""}),
    Case("tensorflowSelectHighVersionSubdir_1", "tensorflow",
         ("1/model.savedmodel/saved_model.pb", "1/model.savedmodel/variables/index1",
          "2/model.savedmodel/saved_model.pb", "2/model.savedmodel/variables/index2",
          "5/model.savedmodel/saved_model.pb", "5/model.savedmodel/variables/index5"),
         links={"5/model.savedmodel": "5/model.savedmodel"}),
    Case("tensorflowSelectHighVersionSubdir_2", "tensorflow",
         ("2/model.savedmodel/saved_model.pb", "2/model.savedmodel/variables/index",
          "14/saved_model_14.pb", "14/variables/index_14"),
         links={"14/model.savedmodel": "14"}),
    Case("tensorflowSelectHighVersionSubdir_3", "tensorflow",
         ("2/model.savedmodel/saved_model.pb", "2/model.savedmodel/variables/index",
          "14/saved_model_14.pb"),
         links={"14/model.graphdef": "14/saved_model_14.pb"}),
    Case("tensorflowSavedModelWithConfig", "tensorflow",
         ("1/model.savedmodel/saved_model.pb", "config.pbtxt"), config_in="",
         links={"1": "1"}, config=""),
    Case("tensorflowFilesWithConfig", "tensorflow",
         ("1/anything", "14/anything/at/all", "labels.txt", "config.pbtxt"), config_in="",
         links={"1": "1", "14": "14", "labels.txt": "labels.txt"}, config=""),
    # -- tensorrt (the type is case-insensitive; a version after ':' is ignored) --
    Case("tensorrtWithVersion", "tensorRT", ("1/model.plan",),
         links={"1/model.plan": "1/model.plan"}),
    Case("tensorrtWithVersionRename", "tensorRT:2x", ("2/model_2.plan",),
         links={"2/model.plan": "2/model_2.plan"}),
    Case("tensorrtSimple", "tensorRT", ("model.plan",), links={"1/model.plan": "model.plan"}),
    Case("tensorrtSubdir", "tensorRT", ("myModel/model.plan",), links={"1": "myModel"}),
    Case("tensorrtSimpleMultifile", "tensorRT", ("model.plan", "unexpectedFile"),
         links={"1": ""}),
    Case("tensorrtSubdirMultifile", "tensorRT",
         ("myModel/model.plan", "myModel/unexpectedFile"), links={"1": "myModel"}),
    Case("tensorrtUnexpected", "tensorRT",
         ("myModel/model.plan", "unexpectedDir/unexpectedFile"), links={"1": ""}),
    # -- pytorch --
    Case("pytorchWithVersion", "PyTorch", ("1/model.pt",), links={"1/model.pt": "1/model.pt"}),
    Case("pytorchSimpleRename", "PyTorch", ("model.plan",), links={"1/model.pt": "model.plan"}),
    # -- onnx --
    Case("onnxWithVersionFile", "onnx", ("1/model.onnx",),
         links={"1/model.onnx": "1/model.onnx"}),
    Case("onnxWithVersionDir", "onnx", ("1/model.onnx/model.onnx",),
         links={"1/model.onnx": "1/model.onnx"}),
    Case("onnxWithVersionDirMultifile", "onnx",
         ("1/model.onnx/model.onnx", "1/model.onnx/modelfile.txt"),
         links={"1/model.onnx": "1/model.onnx"}),
    Case("onnxSimpleRename", "onnx", ("model.x",), links={"1/model.onnx": "model.x"}),
    Case("onnxMultifile", "onnx", ("model.x", "variables"), links={"1/model.onnx": ""}),
    Case("onnxSimpleSubdir", "onnx", ("myModel/model.onnx",),
         links={"1/model.onnx": "myModel"}),
    Case("onnxSimpleSubdirMultifile", "onnx", ("myModel/model.onnx", "myModel/variables"),
         links={"1/model.onnx": "myModel"}),
    # -- schema: generates config.pbtxt, or replaces inputs/outputs of the given one --
    Case("schemaOnnxSimpleRename", "onnx", ("my-model.onnx", "my-schema.json"),
         path="my-model.onnx", schema={}, schema_file="my-schema.json",
         links={"1/model.onnx": "my-model.onnx"}, config='backend: "onnxruntime"'),
    Case("schemaBackwardsCompatiblity", "onnx", ("my-model.onnx", "_schema.json"),
         schema={}, schema_file="_schema.json",
         links={"1/model.onnx": "my-model.onnx"}, config='backend: "onnxruntime"'),
    Case("schemaPytorchSimple", "pytorch", ("my-model.pt", "schema.json"), path="my-model.pt",
         schema=SCHEMA_3x32x32, schema_file="schema.json",
         links={"1/model.pt": "my-model.pt"}, config='backend: "pytorch"' + CONFIG_3x32x32),
    Case("schemaTensorflowSavedModelSimple", "tensorflow",
         ("saved_model.pb", "variables", "_schema.json"), schema=SCHEMA_3x32x32,
         schema_file="_schema.json", links={"1/model.savedmodel": ""},
         config='backend: "tensorflow"' + CONFIG_3x32x32),
    Case("schemaOverwritesConfig", "tensorflow",
         ("1/model.graphdef", "some-other-file", "config.pbtxt", "_schema.json"),
         schema={"inputs": [{"name": "NEW_INPUT", "datatype": "FP32", "shape": [1, 64, 64]}]},
         schema_file="_schema.json",
         config_in="""name: "this-should-be-removed" backend: "tensorflow"
             input { name: "SOME_INPUT" data_type: TYPE_FP32 dims: [3, 32, 32] }
             output { name: "OUTPUT" data_type: TYPE_INT64 dims: [1] }""",
         links={"1": "1", "some-other-file": "some-other-file", "_schema.json": "_schema.json"},
         config="""backend: "tensorflow"
             input { name: "NEW_INPUT" data_type: TYPE_FP32 dims: [1, 64, 64] }
             output { name: "OUTPUT" data_type: TYPE_INT64 dims: [1] }"""),
    Case("schemaEdgeMaxBatchSize", "pytorch", ("1/model.pt", "config.pbtxt", "_schema.json"),
         schema={
             "inputs": [
                 {"name": "INPUT", "datatype": "FP32", "shape": [-1, 64, 64]},
                 {"name": "TYPE", "datatype": "INT8", "shape": [-1, 1]},
             ],
             "outputs": [{"name": "OUTPUT", "datatype": "INT64", "shape": [-1, 10]}],
         },
         schema_file="_schema.json",
         config_in='backend: "pytorch" max_batch_size: 100',
         links={"1": "1", "_schema.json": "_schema.json"},
         config="""backend: "pytorch" max_batch_size: 100
             input { name: "INPUT" data_type: TYPE_FP32 dims: [64, 64] }
             input { name: "TYPE" data_type: TYPE_INT8 dims: [1] }
             output { name: "OUTPUT" data_type: TYPE_INT64 dims: [10] }"""),
    Case("schemaEdgeMaxBatchSizeError", "pytorch",
         ("1/model.pt", "config.pbtxt", "_schema.json"),
         schema={
             "inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [-1, 64, 64]}],
             "outputs": [{"name": "OUTPUT", "datatype": "INT64", "shape": [10]}],
         },
         schema_file="_schema.json", config_in="max_batch_size: 100",
         error=FailedPrecondition),
    # The Go sidecar's name-removal test: only `name` goes, the rest stays.
    Case("removeNameFromConfig", "", ("config.pbtxt", "1/model.py"),
         config_in="""platform: "bogus" name: "REMOVE_ME" max_batch_size: 1
             input [{ name: "INPUT__0" data_type: TYPE_UINT8 dims: [1, 28, 28] }]
             output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [10] }]
             instance_group [{ count: 1 kind: KIND_CPU }]""",
         links={"1": "1"},
         config="""platform: "bogus" max_batch_size: 1
             input [{ name: "INPUT__0" data_type: TYPE_UINT8 dims: [1, 28, 28] }]
             output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [10] }]
             instance_group [{ count: 1 kind: KIND_CPU }]"""),
]  # fmt: skip

NEW_CASES = [
    # Triton ignores version dirs starting with 0: a model with only those would not load.
    Case("onlyVersionZero", "python", ("0/model.py",), error=FailedPrecondition),
    Case("onlyVersionsWithLeadingZero", "onnx", ("0/model.onnx", "007/model.onnx"),
         error=FailedPrecondition),
    Case("versionZeroBesideOthers", "onnx", ("0/model.onnx", "3/model.onnx"),
         links={"3/model.onnx": "3/model.onnx"}),
    # python-backend models, a type the Go sidecar did not know.
    Case("pythonFile", "python", ("add.py",), path="add.py", links={"1/model.py": "add.py"}),
    Case("pythonSubdir", "python", ("src/model.py",), links={"1": "src"}),
    Case("pythonVersions", "python", ("1/model.py", "2/model.py"),
         links={"2/model.py": "2/model.py"}),
    Case("pythonNativeTwoVersions", "python", ("config.pbtxt", "1/model.py", "2/model.py"),
         config_in='name: "old" backend: "python"', links={"1": "1", "2": "2"},
         config='backend: "python"'),
    # Keras: a SavedModel dir is served as TensorFlow; an HDF5 file must be converted first.
    Case("kerasFile", "keras", ("model.h5",), path="model.h5", error=FailedPrecondition),
    Case("kerasFileInDir", "keras", ("model.h5",), error=FailedPrecondition),
    Case("kerasSavedModelDir", "keras", ("saved_model.pb", "variables/index"),
         links={"1/model.savedmodel": ""}),
    # Schemas: V2 "BYTES" is Triton's TYPE_STRING; unknown datatypes and bad shapes refused.
    Case("schemaBytes", "onnx", ("model.onnx",), schema={
             "inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [-1]}]},
         links={"1/model.onnx": "model.onnx"},
         config='backend: "onnxruntime" input { name: "TEXT" data_type: TYPE_STRING dims: -1 }'),
    Case("schemaBadDatatype", "onnx", ("model.onnx",), schema={
             "inputs": [{"name": "X", "datatype": "FLOAT32", "shape": [1]}]},
         error=InvalidRequest),
    Case("schemaInvalidDatatype", "onnx", ("model.onnx",), schema={
             "inputs": [{"name": "X", "datatype": "INVALID", "shape": [1]}]},
         error=InvalidRequest),
    Case("schemaBadShape", "onnx", ("model.onnx",), schema={
             "outputs": [{"name": "Y", "datatype": "FP32", "shape": ["3"]}]},
         error=InvalidRequest),
    Case("schemaNoName", "onnx", ("model.onnx",), schema={
             "outputs": [{"datatype": "FP32", "shape": [3]}]},
         error=InvalidRequest),
    Case("schemaNotAnObject", "onnx", ("model.onnx",), schema=[], error=InvalidRequest),  # type: ignore[arg-type]
    Case("schemaBatchDimMissingDims", "onnx", ("config.pbtxt", "1/model.onnx"),
         config_in="max_batch_size: 8",
         schema={"inputs": [{"name": "X", "datatype": "FP32", "shape": []}]},
         error=FailedPrecondition),
    Case("configNotPbtxt", "onnx", ("config.pbtxt", "1/model.onnx"),
         config_in="this is { not a model config", error=FailedPrecondition),
]  # fmt: skip


def make_tree(root: Path, case: Case) -> tuple[Path, Path | None]:
    """Write the case's pulled tree under `root`; answer (model path, schema path)."""
    for name in case.files:
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"data of {name}\n")
    model = root / case.path
    if case.config_in is not None:
        (model / "config.pbtxt").write_text(case.config_in)
    schema = None
    if case.schema is not None:
        schema = root / case.schema_file
        schema.write_text(json.dumps(case.schema))
    return model, schema


def described(plan: Any, tree: Path) -> tuple[dict[str, str], str | None]:
    """The plan as (links relative to the tree, generated config.pbtxt)."""
    links: dict[str, str] = {}
    config = None
    for entry in plan:
        if isinstance(entry, Link):
            assert entry.source.is_relative_to(tree), f"{entry} links outside the pulled tree"
            links[entry.path] = entry.source.relative_to(tree).as_posix().removeprefix(".")
        else:
            assert isinstance(entry, WriteFile)
            assert entry.path == "config.pbtxt"
            config = entry.content
    return links, config


def parsed(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


@pytest.mark.parametrize("case", GO_CASES + NEW_CASES, ids=lambda c: c.id)
def test_layout(case: Case, tmp_path: Path) -> None:
    tree = tmp_path / "pulled"
    tree.mkdir()
    model, schema = make_tree(tree, case)
    if case.error is not None:
        with pytest.raises(case.error):
            plan_triton_layout(model, case.model_type, schema, case.id)
        return
    plan = plan_triton_layout(model, case.model_type, schema, case.id)
    links, config = described(plan, tree)
    assert links == case.links
    if case.config is None:
        assert config is None
    else:
        assert config is not None
        assert parsed(config) == parsed(case.config)
        assert not parsed(config).name
    # Laid out for real, every link leads to pulled data (as Triton will see it).
    repo = tmp_path / "_triton_models" / case.id
    apply_layout(plan, repo)
    for dirpath, dirnames, filenames in os.walk(repo):
        for name in dirnames + filenames:
            assert os.path.exists(os.path.join(dirpath, name)), name


def test_link_in_pulled_tree_pointing_outside_is_kept_by_name(tmp_path: Path) -> None:
    """A link the pulled tree holds (e.g. a PVC file) is linked by its path in the tree."""
    elsewhere = tmp_path / "elsewhere" / "weights.onnx"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"onnx")
    tree = tmp_path / "pulled"
    tree.mkdir()
    (tree / "model.onnx").symlink_to(elsewhere)
    plan = plan_triton_layout(tree, "onnx")
    assert plan == [Link("1/model.onnx", tree / "model.onnx")]


def test_config_linking_outside_is_not_echoed(tmp_path: Path) -> None:
    """A config.pbtxt that is a link to some other file: refused, its text never shown."""
    secret = tmp_path / "elsewhere" / "credentials"
    secret.parent.mkdir()
    secret.write_text("aws_secret_access_key = wJalrXUtnFEMI\n")
    tree = tmp_path / "pulled"
    (tree / "1").mkdir(parents=True)
    (tree / "1" / "model.py").write_text("")
    (tree / "config.pbtxt").symlink_to(secret)
    with pytest.raises(FailedPrecondition) as raised:
        plan_triton_layout(tree, "python", model_id="m")
    message = str(raised.value)
    assert "not a valid Triton model configuration" in message
    assert "wJalrXUtnFEMI" not in message and "aws_secret_access_key" not in message


def test_dangling_link_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "pulled"
    tree.mkdir()
    (tree / "model.onnx").symlink_to(tmp_path / "gone")
    with pytest.raises(FailedPrecondition, match="link to nothing"):
        plan_triton_layout(tree, "onnx")


def test_missing_model_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="no pulled files"):
        plan_triton_layout(tmp_path / "absent", "onnx")


def test_keras_error_names_the_conversion(tmp_path: Path) -> None:
    model = tmp_path / "model.h5"
    model.write_bytes(b"\x89HDF")
    with pytest.raises(FailedPrecondition) as raised:
        plan_triton_layout(model, "keras", model_id="k1")
    assert "SavedModel" in str(raised.value) and "'tensorflow'" in str(raised.value)


def test_bad_datatype_names_the_tensor_and_the_known_types(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"inputs": [{"name": "X", "datatype": "F32", "shape": [1]}]}))
    with pytest.raises(InvalidRequest) as raised:
        plan_triton_layout(tmp_path / "model.onnx", "onnx", schema)
    assert "'X'" in str(raised.value) and "'F32'" in str(raised.value)
    assert "FP32" in str(raised.value)


def test_planner_writes_nothing(tmp_path: Path) -> None:
    tree = tmp_path / "pulled"
    (tree / "1").mkdir(parents=True)
    (tree / "1" / "model.py").write_text("")
    (tree / "config.pbtxt").write_text('name: "x" backend: "python"')
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    plan_triton_layout(tree, "python")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (tree / "config.pbtxt").read_text() == 'name: "x" backend: "python"'


@pytest.mark.parametrize("case", GO_CASES + NEW_CASES, ids=lambda c: c.id)
def test_layout_command(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`mesh-sidecar layout --runtime triton` prints the same plan, or the refusal."""
    tree = tmp_path / "pulled"
    tree.mkdir()
    model, schema = make_tree(tree, case)
    args = ["layout", "--runtime", "triton", "--model-id", case.id]
    args += ["--model-type", case.model_type, str(model), str(tmp_path / "models")]
    if schema is not None:
        args[5:5] = ["--schema", str(schema)]
    code = cli.main(args)
    out, err = capsys.readouterr()
    if case.error is not None:
        assert code == 1
        assert f"{case.error.code.name}: " in err
        return
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{tmp_path / 'models' / '_triton_models' / case.id}/"
    expected = {f"  {path} -> {tree / source}".rstrip("/") for path, source in case.links.items()}
    assert {line for line in lines[1:] if " -> " in line} == expected
    generated = [line for line in lines[1:] if " -> " not in line]
    assert [line.split(" (")[0] for line in generated] == (
        ["  config.pbtxt"] if case.config is not None else []
    )
