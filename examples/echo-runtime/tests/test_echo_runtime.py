"""Tests of the echo runtime, as its author runs them: `pytest` in this directory,
with the package installed next to mesh-sidecar.

The fixtures `sidecar_dirs` (and the helpers of `mesh_sidecar.testing.processes`)
come with mesh-sidecar's pytest plugin: real processes on free ports.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as kserve
from echo_runtime.adapter import EchoAdapter

from mesh_sidecar.errors import FailedPrecondition
from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.runtimes.base import ModelFiles, RuntimeSettings
from mesh_sidecar.runtimes.layout import Link
from mesh_sidecar.runtimes.registry import RUNTIMES
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import (
    ServerHandle,
    free_port,
    run_sidecar,
    start_process,
    wait_for_port,
)

KEY = json.dumps({"storage_key": "local"})


def model_files(path: Path) -> ModelFiles:
    return ModelFiles(
        model_id="m1", model_type="string", model_type_version=None, path=path, disk_size_bytes=1
    )


def test_the_sidecar_finds_it_through_the_entry_point() -> None:
    assert RUNTIMES.get("echo") is EchoAdapter
    assert RUNTIMES.specs()["echo"].origin == "mesh-sidecar-echo-runtime"


def test_layout_links_the_pulled_text(tmp_path: Path) -> None:
    adapter = EchoAdapter(RuntimeSettings(address="unused:1", root_model_dir=tmp_path))
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "model.txt").write_text("x")
    assert adapter.plan_layout(model_files(tmp_path / "dir")) == [
        Link("model.txt", tmp_path / "dir" / "model.txt")
    ]
    (tmp_path / "single.txt").write_text("x")
    assert adapter.plan_layout(model_files(tmp_path / "single.txt")) == [
        Link("model.txt", tmp_path / "single.txt")
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FailedPrecondition, match=r"has no model\.txt"):
        adapter.plan_layout(model_files(tmp_path / "empty"))


@pytest.fixture
def echo_server(sidecar_dirs: SidecarDirs) -> Iterator[ServerHandle]:
    """The model server, started the way the adapter says, on the sidecar's ROOT_MODEL_DIR."""
    port = free_port()
    command = EchoAdapter.server_command(port, sidecar_dirs.root_model_dir)
    proc = start_process(command, name="echo-server")
    try:
        wait_for_port(port, proc)
        yield ServerHandle(port, proc)
    finally:
        proc.stop()


def test_load_infer_unload_through_the_sidecar(
    echo_server: ServerHandle, sidecar_dirs: SidecarDirs
) -> None:
    model = sidecar_dirs.pvc_mounts_dir / "claim1" / "greeting"
    model.mkdir(parents=True)
    (model / "model.txt").write_text("echo: ")
    (sidecar_dirs.storage_config_dir / "local").write_text(
        json.dumps({"type": "pvc", "name": "claim1"})
    )
    with run_sidecar("echo", echo_server.port, *sidecar_dirs.as_args()) as sidecar:
        sidecar.stub.loadModel(
            pb.LoadModelRequest(
                modelId="greeter",
                modelType="string",
                modelPath="greeting",
                modelKey=KEY,
            ),
            timeout=30,
        )
        laid_out = sidecar_dirs.root_model_dir / "_echo_models" / "greeter" / "model.txt"
        assert laid_out.read_text() == "echo: "

        with kserve.InferenceServerClient(f"127.0.0.1:{echo_server.port}") as client:
            data = kserve.InferInput("INPUT", [1], "BYTES")
            data.set_data_from_numpy(np.array([b"hello"], dtype=np.object_))
            result = client.infer("greeter", [data]).as_numpy("OUTPUT")
            assert result is not None and result[0] == b"echo: hello"

            sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId="greeter"), timeout=10)
            assert not laid_out.parent.exists()
            assert not client.is_model_ready("greeter")

        bad = sidecar_dirs.pvc_mounts_dir / "claim1" / "no-text"
        bad.mkdir()
        with pytest.raises(grpc.RpcError) as err:
            sidecar.stub.loadModel(
                pb.LoadModelRequest(
                    modelId="bad",
                    modelPath="no-text",
                    modelKey=KEY,
                ),
                timeout=30,
            )
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
