"""The `mesh` fixture example of docs/mesh.md, as written there."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton

from mesh_sidecar.mmesh import model_mesh_pb2 as pb
from mesh_sidecar.testing.mesh import MeshHandle

pytestmark = pytest.mark.slow


def test_my_runtime_end_to_end(mesh: Callable[..., MeshHandle], tmp_path: Path) -> None:
    # ROOT_MODEL_DIR, STORAGE_CONFIG_DIR and PVC_MOUNTS_DIR are tmp_path/models,
    # tmp_path/storage-config and tmp_path/pvc: put the model there first.
    (tmp_path / "pvc/claim1/models/m1").mkdir(parents=True)
    (tmp_path / "pvc/claim1/models/m1/model.txt").write_text("hi ")
    (tmp_path / "storage-config").mkdir()
    (tmp_path / "storage-config/localpvc").write_text('{"type": "pvc", "name": "claim1"}')

    handle = mesh("simple-string", instances=2)
    key = json.dumps({"storage_key": "localpvc"})
    handle.stub.registerModel(
        pb.RegisterModelRequest(
            modelId="m1", modelInfo=pb.ModelInfo(type="string", path="models/m1", key=key)
        )
    )
    data = triton.InferInput("INPUT", [1], "BYTES")
    data.set_data_from_numpy(np.array([b"there"], dtype=np.object_))
    answer = handle.inference_client().infer("m1", [data], headers={"mm-model-id": "m1"})
    assert answer.as_numpy("OUTPUT")[0] == b"hi there"
