"""Helpers of the reliability tests: the seeded models, the storage config, calls."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import grpc

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import SidecarHandle
from mesh_sidecar.testing.storage import S3Server

#: The `record` fixture (tests/conftest.py): notes a tried case for the report.
Record = Callable[..., None]
MODEL_TEXT = "hello "
WEIGHTS = os.urandom(768 * 1024)  # makes a pull take a while through a slow link
BIG_WEIGHTS = os.urandom(3 * 1024 * 1024)
S3_KEY = json.dumps({"storage_key": "store", "model_type": {"name": "string"}})


def write_store_config(
    dirs: SidecarDirs, s3: S3Server, endpoint: str, **overrides: Any
) -> dict[str, Any]:
    config = s3.config(endpoint_url=endpoint, **overrides)
    (dirs.storage_config_dir / "store").write_text(json.dumps(config))
    return config


def load_request(model_id: str, path: str = "rel/m1", key: str = S3_KEY) -> Any:
    return pb.LoadModelRequest(modelId=model_id, modelType="string", modelPath=path, modelKey=key)


def load_code(sidecar: SidecarHandle, model_id: str, path: str = "rel/m1", **kw: Any) -> str:
    """The status code name a loadModel call ends with ("OK" on success)."""
    try:
        sidecar.stub.loadModel(load_request(model_id, path, **kw), timeout=120)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    return "OK"


def unload(sidecar: SidecarHandle, model_id: str) -> None:
    sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId=model_id), timeout=30)


def wait_for(check: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    """Poll `check` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
