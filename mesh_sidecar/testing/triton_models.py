"""Small python-backend models for a real Triton: `OUT = IN + addend`, one addend per version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tritonclient.grpc as triton_grpc

CONFIG = """backend: "python"
name: "named-in-storage"
input [{ name: "IN" data_type: TYPE_FP32 dims: [-1] }]
output [{ name: "OUT" data_type: TYPE_FP32 dims: [-1] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""

SCHEMA = {
    "inputs": [{"name": "IN", "datatype": "FP32", "shape": [-1]}],
    "outputs": [{"name": "OUT", "datatype": "FP32", "shape": [-1]}],
}

ADD_MODEL = """import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        answers = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            out = pb_utils.Tensor("OUT", x + {addend})
            answers.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return answers
"""

FAILING_MODEL = """class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("{reason}")
"""


def add_model_source(addend: float) -> str:
    return ADD_MODEL.replace("{addend}", repr(float(addend)))


def write_model(root: Path, addends: dict[int, float], config: bool = True) -> Path:
    """A Triton model dir: config.pbtxt (with a stale `name`) and one version per addend."""
    root.mkdir(parents=True, exist_ok=True)
    if config:
        (root / "config.pbtxt").write_text(CONFIG)
    for version, addend in addends.items():
        (root / str(version)).mkdir()
        (root / str(version) / "model.py").write_text(add_model_source(addend))
    return root


def write_failing_model(root: Path, reason: str) -> Path:
    """A model dir whose model.py raises `reason` when Triton initialises it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.pbtxt").write_text(CONFIG)
    (root / "1").mkdir()
    (root / "1" / "model.py").write_text(FAILING_MODEL.replace("{reason}", reason))
    return root


def infer_add(address: str, model_id: str, values: list[float]) -> list[float]:
    """ModelInfer on one of these models: the OUT tensor for IN = `values`."""
    client = triton_grpc.InferenceServerClient(address)
    try:
        data = triton_grpc.InferInput("IN", [len(values)], "FP32")
        data.set_data_from_numpy(np.array(values, dtype=np.float32))
        out = client.infer(model_id, [data]).as_numpy("OUT")
    finally:
        client.close()
    assert out is not None
    return [float(v) for v in out]


def index_states(address: str) -> dict[str, str]:
    """Model name -> state, from Triton's own repository index."""
    client = triton_grpc.InferenceServerClient(address)
    try:
        return {m.name: m.state for m in client.get_model_repository_index().models}
    finally:
        client.close()
