"""Model ids become directory names: unsafe ones are refused."""

from __future__ import annotations

import pytest

from mesh_sidecar.adapter.ids import check_model_id
from mesh_sidecar.errors import InvalidRequest


@pytest.mark.parametrize(
    "model_id",
    ["m1", "mnist__isvc-6b2a", "a.b", "x" * 255, "modèle", ".hidden", "with space"],
)
def test_valid_ids(model_id: str) -> None:
    check_model_id(model_id)


@pytest.mark.parametrize(
    "model_id",
    [
        "",
        ".",
        "..",
        "a/b",
        "/abs",
        "a\\b",
        "nul\x00",
        "tab\there",
        "x" * 256,
        "é" * 128,
        "_triton_models",
        ".partial-m1-1234",
    ],
)
def test_unsafe_ids(model_id: str) -> None:
    with pytest.raises(InvalidRequest):
        check_model_id(model_id, reserved={"_triton_models"})
