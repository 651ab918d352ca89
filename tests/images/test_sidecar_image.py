"""The sidecar image, run with podman as ModelMesh Serving runs it, driven from outside.

Two containers of the image share the host's network, as the containers of a
serving pod share theirs: the simple-string model server, and the sidecar
started as `/opt/app/simple-string-adapter` with the controller's environment,
as uid 2000, every capability dropped, a read-only root filesystem, `/models`
as a writable mount, the storage-config dir at `/storage-config` and a claim
under `/pvc_mounts`. `make image-test` builds the image and sets
MESH_SIDECAR_IMAGE; without it these tests are skipped.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.mmesh import model_runtime_pb2_grpc as pb_grpc
from mesh_sidecar.testing.containers import podman, remove, run_command, ulimit_flags
from mesh_sidecar.testing.processes import (
    ManagedProcess,
    free_port,
    start_process,
    wait_for_port,
    wait_runtime_ready,
)

IMAGE = os.environ.get("MESH_SIDECAR_IMAGE", "")
# images/examples/simple-string, built on IMAGE by `make image-test`.
SERVER_IMAGE = os.environ.get("SIMPLE_STRING_IMAGE", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not IMAGE, reason="needs a built image: `make image-test` builds one and sets it"
    ),
]

APP_UID = 2000
MEM_REQ = 2 * 1024**3
MEM_BUFFER = 268435456
CLAIM = "models-claim"
STORAGE_KEY = "localpvc"
MODEL_TEXT = "hello "


@dataclass
class Pod:
    """The two running containers, their host dirs and the sidecar's ModelRuntime stub."""

    adapter_port: int
    runtime_port: int
    sidecar: ManagedProcess
    server: ManagedProcess
    sidecar_name: str
    models_dir: Path
    pvc_dir: Path
    stub: pb_grpc.ModelRuntimeStub
    status: pb.RuntimeStatusResponse


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    root = tmp_path_factory.mktemp("pod")
    models_dir, config_dir, pvc_dir = root / "models", root / "storage-config", root / "pvc"
    model = pvc_dir / "models" / "m1"
    model.mkdir(parents=True)
    (model / "model.txt").write_text(MODEL_TEXT)
    config_dir.mkdir()
    (config_dir / STORAGE_KEY).write_text(json.dumps({"type": "pvc", "name": CLAIM}))
    # An emptyDir is writable by the pod's user; so is this dir.
    models_dir.mkdir()
    os.chown(models_dir, APP_UID, 0)

    suffix = uuid.uuid4().hex[:8]
    server_name, sidecar_name = f"mesh-ss-{suffix}", f"mesh-sidecar-{suffix}"
    runtime_port, adapter_port = free_port(), free_port()
    # As in a serving pod, the model server sees the same /models and claims.
    shared = [f"{models_dir}:/models", f"{pvc_dir}:/pvc_mounts/{CLAIM}:ro"]
    # Loopback only: the containers share the host's network.
    if SERVER_IMAGE:
        server_cmd = run_command(
            server_name,
            SERVER_IMAGE,
            ["--port", str(runtime_port), "--host", "127.0.0.1"],
            mounts=shared,
        )
    else:
        server_cmd = run_command(
            server_name,
            IMAGE,
            ["mesh-sidecar", "simple-string-server", "--port", str(runtime_port)],
            mounts=shared,
        )
    server = start_process(server_cmd, name="simple-string-container")
    # The environment ModelMesh Serving sets on the adapter container.
    env = {
        "ADAPTER_PORT": str(adapter_port),
        "RUNTIME_PORT": str(runtime_port),
        "CONTAINER_MEM_REQ_BYTES": str(MEM_REQ),
        "MEM_BUFFER_BYTES": str(MEM_BUFFER),
        "LOADTIME_TIMEOUT": "90000",
        "USE_EMBEDDED_PULLER": "true",
        "METRICS_PORT": str(free_port()),
    }
    mounts = [*shared, f"{config_dir}:/storage-config:ro"]
    sidecar = start_process(
        run_command(sidecar_name, IMAGE, ["/opt/app/simple-string-adapter"], env, mounts),
        name="sidecar-container",
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{adapter_port}")
    try:
        wait_for_port(runtime_port, server, timeout=60)
        wait_for_port(adapter_port, sidecar, timeout=60)
        stub = pb_grpc.ModelRuntimeStub(channel)
        status = wait_runtime_ready(stub, sidecar, timeout=60)
        yield Pod(
            adapter_port,
            runtime_port,
            sidecar,
            server,
            sidecar_name,
            models_dir,
            pvc_dir,
            stub,
            status,
        )
    finally:
        channel.close()
        for proc, name in ((sidecar, sidecar_name), (server, server_name)):
            proc.stop()
            remove(name)


def infer(port: int, model_id: str, text: str) -> str:
    """One KServe V2 inference on the model server, as ModelMesh forwards it."""
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        data = triton.InferInput("INPUT", [1], "BYTES")
        data.set_data_from_numpy(np.array([text.encode()], dtype=np.object_))
        out = client.infer(model_id, [data]).as_numpy("OUTPUT")
    finally:
        client.close()
    assert out is not None
    value = out[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def test_runtime_status_is_ready_with_the_controllers_figures(pod: Pod) -> None:
    assert pod.status.status == pb.RuntimeStatusResponse.READY
    assert pod.status.capacityInBytes == MEM_REQ - MEM_BUFFER
    assert pod.status.modelLoadingTimeoutMs == 90000


def test_loads_a_model_from_a_mounted_claim_and_unloads_it(pod: Pod) -> None:
    key = json.dumps({"storage_key": STORAGE_KEY, "model_type": {"name": "string"}})
    loaded = pod.stub.loadModel(
        pb.LoadModelRequest(modelId="m1", modelType="string", modelPath="models/m1", modelKey=key),
        timeout=60,
    )
    assert loaded.sizeInBytes == int(len(MODEL_TEXT) * 1.25)
    assert (pod.models_dir / "m1").exists()
    assert infer(pod.runtime_port, "m1", "world") == MODEL_TEXT + "world"

    pod.stub.unloadModel(pb.UnloadModelRequest(modelId="m1"), timeout=30)
    assert list(pod.models_dir.iterdir()) == []
    assert (pod.pvc_dir / "models" / "m1" / "model.txt").read_text() == MODEL_TEXT
    with pytest.raises(grpc.RpcError) as err:
        pod.stub.modelSize(pb.ModelSizeRequest(modelId="m1"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_sidecar_runs_as_uid_2000(pod: Pod) -> None:
    uid = podman("exec", pod.sidecar_name, "python", "-c", "import os; print(os.getuid())")
    assert uid == str(APP_UID)
    assert podman("image", "inspect", IMAGE, "--format", "{{.User}}") == str(APP_UID)


def test_the_image_sets_no_entrypoint_and_carries_the_launchers() -> None:
    info = json.loads(podman("image", "inspect", IMAGE))[0]
    assert not info["Config"].get("Entrypoint")
    labels = info["Config"]["Labels"]
    for label in ("version", "revision", "source"):
        assert labels.get(f"org.opencontainers.image.{label}")
    listing = podman(
        "run",
        "--rm",
        *ulimit_flags(),
        "--network",
        "host",
        IMAGE,
        "python",
        "-c",
        "import os; print(*os.listdir('/opt/app'))",
    ).split()
    for launcher in ("triton-adapter", "mlserver-adapter", "puller", "simple-string-adapter"):
        assert launcher in listing


def test_the_image_stays_within_its_size_budget() -> None:
    # Under 200 MB uncompressed, as podman reports it (docs/images.md): a new
    # dependency that ships binaries or unstripped libraries shows up here.
    size = int(podman("image", "inspect", IMAGE, "--format", "{{.Size}}"))
    assert size < 200_000_000, f"{IMAGE} is {size:,} bytes uncompressed"
