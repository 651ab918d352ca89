"""The standalone puller: `serve --runtime forward` in front of a custom runtime that
serves mmesh.ModelRuntime itself (the simple-string server does)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from test_sidecar_e2e import KEY

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.mmesh import model_runtime_pb2_grpc as pb_grpc
from mesh_sidecar.testing.checks import files_under, infer_text
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import (
    SIDECAR,
    free_port,
    run_sidecar,
    start_process,
    wait_for_port,
)

pytestmark = pytest.mark.slow


def test_forward_pulls_rewrites_and_forwards(sidecar_dirs: SidecarDirs, pvc_model: Path) -> None:
    port = free_port()
    server = start_process(
        [
            *SIDECAR,
            "simple-string-server",
            "--port",
            str(port),
            "--capacity-bytes",
            str(3 * 1024**3),
            "--max-loading-concurrency",
            "3",
            "--default-model-size",
            "65536",
        ],
        name="custom-runtime",
    )
    try:
        wait_for_port(port, server)
        with run_sidecar("forward", port, *sidecar_dirs.as_args()) as sidecar:
            # runtimeStatus carries the custom server's own figures.
            status = sidecar.status
            assert status.capacityInBytes == 3 * 1024**3
            assert status.maxLoadingConcurrency == 3
            assert status.defaultModelSizeInBytes == 65536
            assert list(
                status.methodInfos["inference.GRPCInferenceService/ModelInfer"].idInjectionPath
            ) == [1]

            request = pb.LoadModelRequest(
                modelId="m1", modelType="string", modelPath="models/m1", modelKey=KEY
            )
            loaded = sidecar.stub.loadModel(request, timeout=30)
            assert loaded.sizeInBytes > 0
            assert infer_text(f"127.0.0.1:{port}", "m1", ["there"]) == ["hello there"]
            size = sidecar.stub.modelSize(pb.ModelSizeRequest(modelId="m1"), timeout=5)
            assert size.sizeInBytes == loaded.sizeInBytes

            # The server saw local files: the pulled dir under ROOT_MODEL_DIR.
            assert (sidecar_dirs.root_model_dir / "m1" / "model.txt").exists()

            # Unloaded behind the sidecar's back: NOT_FOUND still counts as unloaded.
            direct = pb_grpc.ModelRuntimeStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
            direct.unloadModel(pb.UnloadModelRequest(modelId="m1"), timeout=5)
            sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId="m1"), timeout=10)
            assert files_under(sidecar_dirs.root_model_dir) == []

            # A model the server refuses: its code and reason reach the caller, nothing left.
            (sidecar_dirs.pvc_mounts_dir / "claim1" / "models" / "empty").mkdir()
            with pytest.raises(grpc.RpcError) as err:
                sidecar.stub.loadModel(
                    pb.LoadModelRequest(modelId="bad", modelPath="models/empty", modelKey=KEY),
                    timeout=30,
                )
            assert err.value.code() != grpc.StatusCode.OK
            assert "model.txt" in err.value.details()
            assert files_under(sidecar_dirs.root_model_dir) == []
    finally:
        server.stop()
