"""The simple-string server's model store, without a server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from simple_string_helpers import make_model

from mesh_sidecar.simple_string.models import (
    MODEL_OVERHEAD_BYTES,
    ModelError,
    ModelStore,
    predict_size,
)


async def test_a_load_and_an_unload_of_one_name_do_not_overlap(tmp_path: Path) -> None:
    model = make_model(tmp_path, "m", "text")
    store = ModelStore()
    # The load reads its file in a thread; the unload must wait for it, then find it loaded.
    await asyncio.gather(store.load("m", model), store.unload("m"))
    assert "m" not in store


async def test_different_names_load_side_by_side(tmp_path: Path) -> None:
    store = ModelStore()
    sizes = await asyncio.gather(
        *(store.load(f"m{i}", make_model(tmp_path, f"m{i}", "x" * i)) for i in range(20))
    )
    assert sizes == [MODEL_OVERHEAD_BYTES + i for i in range(20)]
    assert len(store) == 20


async def test_index_lists_repository_models_that_are_not_loaded(tmp_path: Path) -> None:
    make_model(tmp_path, "loaded", "x")
    make_model(tmp_path, "idle", "x")
    (tmp_path / "not-a-model").mkdir()
    store = ModelStore(tmp_path)
    await store.load("loaded", store.resolve("loaded", ""))
    assert await store.index(ready_only=False) == [("loaded", True), ("idle", False)]
    assert await store.index(ready_only=True) == [("loaded", True)]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "nul\0"])
def test_names_that_would_leave_the_repository_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelError) as exc:
        ModelStore(tmp_path).resolve(name, "")
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_predicted_size_is_the_loaded_size_or_unknown(tmp_path: Path) -> None:
    assert predict_size(make_model(tmp_path, "m", "12345")) == MODEL_OVERHEAD_BYTES + 5
    assert predict_size(tmp_path / "absent") is None
