"""Lay out a pulled model the way Triton wants it: a pure planner, table-tested.

Triton loads `<repository>/<model id>/` holding an optional `config.pbtxt` and
numeric version dirs (`1/model.onnx`, `3/model.savedmodel/`, ...). Models in
storage come in many shapes; these rules turn each shape into that tree, the
same way the Go sidecar (kserve/modelmesh-runtime-adapter) did, so a model that
loaded there loads here:

1. A dir holding `config.pbtxt` is a Triton model dir already: every entry is
   linked as is, and `config.pbtxt` is rewritten without its `name` (Triton
   then names the model by the model id), with a schema applied if given.
2. Otherwise the version is the highest numeric subdir when every subdir is
   numeric (files beside them are ignored), else `1`; a single file is version `1`.
3. The model type decides the name Triton expects for the model data
   (`model.onnx`, `model.pt`, `model.plan`, `model.graphdef`,
   `model.savedmodel/`, `model.py`). A dir whose only entry is the model is
   renamed; a dir with more is linked as the version dir itself (or as the
   type's dir name, for types whose model is a dir).
4. A schema JSON (inputs/outputs: name, datatype, shape) becomes a generated
   `config.pbtxt`, or replaces the inputs and outputs of a given one; with
   `max_batch_size > 0` every schema shape must lead with -1 (the batch dim),
   which is dropped since Triton adds it back.

Beyond the Go rules: Keras HDF5 files are refused (Triton cannot load them),
a dir whose only versions start with `0` (ignored by Triton) is refused, an
unknown schema datatype is refused, and every link names a path inside the
pulled tree (links that the tree itself holds are passed through by name,
never resolved).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from mesh_sidecar.errors import FailedPrecondition, InvalidRequest
from mesh_sidecar.runtimes.layout import LayoutPlan, Link, WriteFile

CONFIG_FILE = "config.pbtxt"
#: A schema file the Go sidecar read from inside the model dir; it is not model data.
LEGACY_SCHEMA_FILE = "_schema.json"


@dataclass(frozen=True)
class TritonFormat:
    """What Triton expects for one model type: the model's name as a dir or a file."""

    backend: str
    dir_name: str | None = None  # the name a model that is a dir gets
    file_name: str | None = None  # the name a model that is one file gets


FORMATS: dict[str, TritonFormat] = {
    "tensorflow": TritonFormat("tensorflow", "model.savedmodel", "model.graphdef"),
    # A Keras SavedModel dir is a TensorFlow SavedModel; HDF5 files are refused below.
    "keras": TritonFormat("tensorflow", "model.savedmodel", None),
    "onnx": TritonFormat("onnxruntime", "model.onnx", "model.onnx"),
    "tensorrt": TritonFormat("tensorrt", None, "model.plan"),
    "pytorch": TritonFormat("pytorch", None, "model.pt"),
    "python": TritonFormat("python", None, "model.py"),
}

#: KServe V2 tensor datatypes (as schema JSON spells them) -> Triton config datatypes.
DATATYPES: dict[str, int] = {
    "BOOL": mc.TYPE_BOOL,
    "UINT8": mc.TYPE_UINT8,
    "UINT16": mc.TYPE_UINT16,
    "UINT32": mc.TYPE_UINT32,
    "UINT64": mc.TYPE_UINT64,
    "INT8": mc.TYPE_INT8,
    "INT16": mc.TYPE_INT16,
    "INT32": mc.TYPE_INT32,
    "INT64": mc.TYPE_INT64,
    "FP16": mc.TYPE_FP16,
    "FP32": mc.TYPE_FP32,
    "FP64": mc.TYPE_FP64,
    "BF16": mc.TYPE_BF16,
    # V2 calls Triton's TYPE_STRING "BYTES"; the Go sidecar also accepted "STRING".
    "BYTES": mc.TYPE_STRING,
    "STRING": mc.TYPE_STRING,
}

KERAS_ADVICE = (
    "Triton cannot load a Keras HDF5 file: convert it to a TensorFlow SavedModel "
    "(tf.keras.models.load_model('model.h5').save('model.savedmodel') with TensorFlow 2) "
    "and deploy that dir with model type 'tensorflow'"
)


def normalize_model_type(model_type: str) -> str:
    """`TensorRT:8` -> `tensorrt`: lower case, without the version after a colon."""
    return model_type.split(":", 1)[0].strip().lower()


def plan_triton_layout(
    model_path: Path,
    model_type: str,
    schema_path: Path | None = None,
    model_id: str = "",
) -> LayoutPlan:
    """The tree Triton needs for a pulled model, relative to `_triton_models/<model id>`.

    Reads the pulled tree (its top level, one version dir, `config.pbtxt`) and the
    schema; writes nothing. Raises FailedPrecondition for a model Triton cannot
    serve as it is, InvalidRequest for a bad schema.
    """
    kind = normalize_model_type(model_type)
    fmt = FORMATS.get(kind)
    schema = _read_schema(schema_path) if schema_path is not None else None
    what = f"model {model_id!r}" if model_id else "the model"
    _check_not_dangling(model_path, what)
    if not model_path.exists():
        raise FailedPrecondition(f"{what}: no pulled files at {model_path.name!r}")
    if not model_path.is_dir():
        if kind == "keras":
            raise FailedPrecondition(f"{what}: {KERAS_ADVICE}")
        return _plan_model_at(model_path, "1", fmt, schema)
    entries = _list(model_path, what)
    if CONFIG_FILE in entries:
        return _plan_native(model_path, entries, schema, what)
    entries.pop(LEGACY_SCHEMA_FILE, None)
    version = _highest_version(entries, what)
    if version is None:
        version = "1"
    else:
        model_path = model_path / version
        entries = _list(model_path, what)
    if len(entries) == 1 and fmt is not None:
        # The dir only wraps the model (`myModel/model.onnx`): link the model itself.
        model_path = model_path / next(iter(entries))
        _check_not_dangling(model_path, what)
    if kind == "keras" and not model_path.is_dir():
        raise FailedPrecondition(f"{what}: {KERAS_ADVICE}")
    return _plan_model_at(model_path, version, fmt, schema)


def _plan_model_at(
    model_path: Path, version: str, fmt: TritonFormat | None, schema: mc.ModelConfig | None
) -> list[Link | WriteFile]:
    """Link the model (a file or a dir) into version dir `version`, named for its format."""
    if model_path.is_dir():
        name = fmt.dir_name if fmt is not None else None
        link = f"{version}/{name}" if name else version
    else:
        name = fmt.file_name if fmt is not None else None
        link = f"{version}/{name or model_path.name}"
    plan: list[Link | WriteFile] = [Link(link, model_path)]
    if schema is not None:
        config = mc.ModelConfig(backend=fmt.backend if fmt is not None else "")
        config.input.extend(schema.input)
        config.output.extend(schema.output)
        plan.append(WriteFile(CONFIG_FILE, _render_config(config)))
    return plan


def _plan_native(
    model_dir: Path, entries: Iterable[str], schema: mc.ModelConfig | None, what: str
) -> list[Link | WriteFile]:
    """A Triton model dir already: link every entry, rewrite `config.pbtxt`."""
    plan: list[Link | WriteFile] = []
    for name in entries:
        if name == CONFIG_FILE:
            config = _read_config(model_dir / name, what)
            plan.append(WriteFile(CONFIG_FILE, _render_config(_adapt_config(config, schema))))
        else:
            _check_not_dangling(model_dir / name, what)
            plan.append(Link(name, model_dir / name))
    return plan


def _adapt_config(config: mc.ModelConfig, schema: mc.ModelConfig | None) -> mc.ModelConfig:
    """Drop `name` (Triton checks it against the dir name, i.e. the model id); apply a schema."""
    config.ClearField("name")
    if schema is None:
        return config
    inputs, outputs = list(schema.input), list(schema.output)
    if config.max_batch_size > 0:
        # Triton prepends the batch dim itself when max_batch_size > 0; a schema states
        # it explicitly, so it must be there to drop.
        tensors: list[Any] = [*inputs, *outputs]
        if not all(t.dims and t.dims[0] == -1 for t in tensors):
            raise FailedPrecondition(
                "config.pbtxt has max_batch_size > 0, so every input and output of the "
                "schema must have -1 (the batch dimension) as its first dimension"
            )
        for tensor in tensors:
            del tensor.dims[0]
    if inputs:
        del config.input[:]
        config.input.extend(inputs)
    if outputs:
        del config.output[:]
        config.output.extend(outputs)
    return config


def _render_config(config: mc.ModelConfig) -> str:
    text: str = text_format.MessageToString(config, as_utf8=True)
    return text


def _read_config(path: Path, what: str) -> mc.ModelConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FailedPrecondition(
            f"{what}: cannot read config.pbtxt ({type(exc).__name__})"
        ) from exc
    config = mc.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        # Only the position: the file's text could be anything the link points at.
        where = f"line {exc.GetLine()}, column {exc.GetColumn()}" if exc.GetLine() else "?"
        raise FailedPrecondition(
            f"{what}: config.pbtxt is not a valid Triton model configuration (at {where})"
        ) from exc
    return config


def _read_schema(path: Path) -> mc.ModelConfig:
    """A schema JSON as a ModelConfig holding only its inputs and outputs."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(
            f"the schema is not a readable JSON file ({type(exc).__name__})"
        ) from exc
    if not isinstance(doc, dict):
        raise InvalidRequest("the schema must be a JSON object with 'inputs' and 'outputs'")
    config = mc.ModelConfig()
    for key, field in (("inputs", config.input), ("outputs", config.output)):
        tensors = doc.get(key)
        if tensors is None:
            continue
        if not isinstance(tensors, list):
            raise InvalidRequest(f"schema {key!r} must be a list of tensors")
        for index, tensor in enumerate(tensors):
            name, datatype, shape = _tensor(tensor, f"schema {key}[{index}]")
            field.add(name=name, data_type=datatype, dims=shape)
    return config


def _tensor(tensor: Any, where: str) -> tuple[str, int, list[int]]:
    if not isinstance(tensor, dict):
        raise InvalidRequest(f"{where} must be an object with name, datatype and shape")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{where} needs a non-empty 'name'")
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        known = ", ".join(DATATYPES)
        raise InvalidRequest(f"{where} ({name!r}): unknown datatype {datatype!r} (known: {known})")
    shape = tensor.get("shape", [])
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
    ):
        raise InvalidRequest(f"{where} ({name!r}): shape must be a list of integers >= -1")
    return name, DATATYPES[datatype], shape


def _list(path: Path, what: str) -> dict[str, bool]:
    """Entry name -> is it a dir (through links), sorted by name.

    scandir answers from the dir listing itself for all but links, so a model
    dir of 10,000 files costs one listing, not 10,000 stats.
    """
    try:
        with os.scandir(path) as entries:
            return {entry.name: entry.is_dir() for entry in sorted(entries, key=_name)}
    except OSError as exc:
        raise FailedPrecondition(f"{what}: cannot list its files ({exc.strerror})") from exc


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _check_not_dangling(path: Path, what: str) -> None:
    if path.is_symlink() and not path.exists():
        raise FailedPrecondition(f"{what}: {path.name!r} is a link to nothing")


def _highest_version(entries: dict[str, bool], what: str) -> str | None:
    """The highest version subdir if every subdir is a version, else None (files do not count).

    Triton ignores version dirs whose name starts with 0; a model with only those
    would load nothing, so it is refused rather than laid out.
    """
    subdirs = [name for name, is_dir in entries.items() if is_dir]
    if not subdirs or not all(name.isascii() and name.isdigit() for name in subdirs):
        return None
    usable = [name for name in subdirs if not name.startswith("0")]
    if not usable:
        raise FailedPrecondition(
            f"{what}: its only version dirs ({', '.join(subdirs)}) start with 0, which "
            "Triton ignores; number versions from 1"
        )
    return max(usable, key=int)
