"""The input decoding of the simple-string server's ModelInfer, over any input."""

from __future__ import annotations

import grpc
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2
from tritonclient.utils import serialize_byte_tensor

from mesh_sidecar.simple_string.inference import input_elements
from mesh_sidecar.simple_string.models import ModelError


def raw_request(elements: list[bytes], raw: bytes) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="m")
    request.inputs.add(name="INPUT", datatype="BYTES", shape=[len(elements)])
    request.raw_input_contents.append(raw)
    return request


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_raw_contents_as_tritonclient_encodes_them_come_back_whole(elements: list[bytes]) -> None:
    raw = serialize_byte_tensor(np.array(elements, dtype=np.object_)).item() if elements else b""
    assert input_elements(raw_request(elements, raw)) == (elements, [len(elements)])


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_contents_come_back_whole(elements: list[bytes]) -> None:
    request = service_pb2.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype="BYTES", shape=[len(elements)])
    tensor.contents.bytes_contents.extend(elements)
    assert input_elements(request) == (elements, [len(elements)])


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=5))
def test_any_raw_bytes_decode_or_are_invalid_argument(raw: bytes, count: int) -> None:
    request = raw_request([b""] * count, raw)
    try:
        elements, _ = input_elements(request)
    except ModelError as exc:
        assert exc.code == grpc.StatusCode.INVALID_ARGUMENT
    else:
        assert len(elements) == count
