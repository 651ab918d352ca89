"""Which headers pick the model, and which reach the model server."""

from __future__ import annotations

import pytest

from mesh_sidecar.errors import InvalidRequest
from mesh_sidecar.mesh.proxy import forward_metadata, read_target


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ([("mm-model-id", "m1")], ("m1", False)),
        ([("mm-model-id-bin", "ü-model".encode())], ("ü-model", False)),
        ([("mm-vmodel-id", "v1"), ("x-other", "1")], ("v1", True)),
        ([("mm-vmodel-id-bin", b"v\xc3\xbc")], ("vü", True)),
    ],
)
def test_the_model_comes_from_one_header(
    metadata: list[tuple[str, str | bytes]], expected: tuple[str, bool]
) -> None:
    assert read_target(metadata) == expected


@pytest.mark.parametrize(
    "metadata",
    [
        [],
        [("x-model", "m1")],
        [("mm-model-id", "m1"), ("mm-vmodel-id", "v1")],
        [("mm-model-id-bin", b"m"), ("mm-vmodel-id-bin", b"v")],
        [("mm-model-id", "")],
        [("mm-model-id-bin", b"\xff\xfe")],
    ],
)
def test_neither_both_or_bad_headers_are_invalid_argument(
    metadata: list[tuple[str, str | bytes]],
) -> None:
    with pytest.raises(InvalidRequest) as err:
        read_target(metadata)
    assert err.value.code.name == "INVALID_ARGUMENT"


def test_mm_headers_are_stripped_and_the_concrete_id_added() -> None:
    metadata = [
        ("mm-vmodel-id", "v1"),
        ("mm-balanced", "true"),
        ("MM-Custom", "x"),
        ("user-agent", "grpc-python/1"),
        ("authorization", "Bearer abc"),
        ("x-request-id", "42"),
        ("trace-bin", b"\x01\x02"),
    ]
    assert forward_metadata(metadata, "m7") == (
        ("authorization", "Bearer abc"),
        ("x-request-id", "42"),
        ("trace-bin", b"\x01\x02"),
        ("mm-model-id", "m7"),
    )


def test_an_id_that_is_not_ascii_travels_in_the_bin_header() -> None:
    assert forward_metadata([], "modèle") == (("mm-model-id-bin", "modèle".encode()),)
