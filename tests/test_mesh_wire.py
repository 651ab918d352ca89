"""Id injection at the wire level, checked by decoding real KServe V2 messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

from mesh_sidecar.mesh.wire import WireFormatError, encode_varint, inject_model_id
from mesh_sidecar.mmesh import model_mesh_pb2


def infer_request(model_name: str = "", n_inputs: int = 1) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model_name, model_version="3", id="req-7")
    for i in range(n_inputs):
        tensor = request.inputs.add(name=f"INPUT{i}", datatype="BYTES", shape=[2])
        tensor.contents.bytes_contents.extend([b"a" * 200, f"x{i}".encode()])
    request.parameters["priority"].int64_param = 5
    request.raw_input_contents.append(b"\x00\x01" * 100)
    return request


@pytest.mark.parametrize("original", ["", "m", "a-much-longer-model-name-than-the-new-one" * 5])
@pytest.mark.parametrize("new_id", ["model-1", "ü-unicode-ñame", "x" * 300])
def test_model_name_is_replaced_and_everything_else_kept(original: str, new_id: str) -> None:
    request = infer_request(original, n_inputs=3)

    out = service_pb2.ModelInferRequest.FromString(
        inject_model_id(request.SerializeToString(), [1], new_id)
    )

    expected = service_pb2.ModelInferRequest()
    expected.CopyFrom(request)
    expected.model_name = new_id
    assert out == expected


def test_every_duplicate_of_the_field_goes_so_the_injected_id_wins() -> None:
    # Non-canonical but valid: model_name twice; a parser keeps the last one.
    first = service_pb2.ModelInferRequest(model_name="a").SerializeToString()
    middle = service_pb2.ModelInferRequest(id="r").SerializeToString()
    last = service_pb2.ModelInferRequest(model_name="b").SerializeToString()

    out = service_pb2.ModelInferRequest.FromString(
        inject_model_id(first + middle + last, [1], "real")
    )

    assert (out.model_name, out.id) == ("real", "r")


def test_nested_path_creates_and_replaces_embedded_messages() -> None:
    # RegisterModelRequest.modelInfo (2) .path (2): a message inside a message.
    empty = model_mesh_pb2.RegisterModelRequest(modelId="m", loadNow=True)
    out = model_mesh_pb2.RegisterModelRequest.FromString(
        inject_model_id(empty.SerializeToString(), [2, 2], "injected")
    )
    assert (out.modelId, out.loadNow, out.modelInfo.path) == ("m", True, "injected")

    full = model_mesh_pb2.RegisterModelRequest(
        modelId="m", modelInfo=model_mesh_pb2.ModelInfo(type="t", path="old", key="k")
    )
    out = model_mesh_pb2.RegisterModelRequest.FromString(
        inject_model_id(full.SerializeToString(), [2, 2], "new")
    )
    assert out.modelInfo == model_mesh_pb2.ModelInfo(type="t", path="new", key="k")


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        (b"\x0a\x05ab", [1]),  # length runs past the end
        (b"\x08", [1]),  # truncated varint
        (b"\x08\x01", [1]),  # field 1 is a varint, not a string
        (b"\x0b\x00", [1]),  # group wire type
        (b"\x00\x01", [1]),  # field number 0
        (b"\x80" * 11, [2]),  # varint too long
    ],
)
def test_bytes_that_are_not_a_message_are_invalid_argument(payload: bytes, path: list[int]) -> None:
    with pytest.raises(WireFormatError) as err:
        inject_model_id(payload, path, "m")
    assert err.value.code.name == "INVALID_ARGUMENT"


@given(
    name=st.text(max_size=40),
    new_id=st.text(min_size=1, max_size=300),
    version=st.text(max_size=10),
    blobs=st.lists(st.binary(max_size=300), max_size=4),
)
def test_any_infer_request_round_trips(
    name: str, new_id: str, version: str, blobs: list[bytes]
) -> None:
    request = service_pb2.ModelInferRequest(
        model_name=name, model_version=version, raw_input_contents=blobs
    )
    out = service_pb2.ModelInferRequest.FromString(
        inject_model_id(request.SerializeToString(), [1], new_id)
    )
    assert (out.model_name, out.model_version, list(out.raw_input_contents)) == (
        new_id,
        version,
        blobs,
    )


@pytest.mark.parametrize("value", [1, 127, 128, 300, 2**32, 2**64 - 1])
def test_varint_matches_protobuf(value: int) -> None:
    message = model_mesh_pb2.RegisterModelRequest(lastUsedTime=value)  # uint64 field 5
    assert message.SerializeToString() == b"\x28" + encode_varint(value)
