"""The `mesh` fixture: a real embedded coordinator with N spawned instances of a runtime.

    def test_my_runtime(mesh):
        handle = mesh("my-runtime", instances=2)
        handle.stub.registerModel(...)          # mmesh.ModelMesh
        client = handle.inference_client()     # tritonclient, through the coordinator
        client.infer(..., headers={"mm-model-id": "m1"})

The coordinator runs as `mesh-sidecar mesh --spawn N --runtime NAME`, exactly
as a user starts it, so the test exercises the real processes and ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from mesh_sidecar.mmesh import model_mesh_pb2_grpc as mm_grpc
from mesh_sidecar.testing.processes import SIDECAR, ManagedProcess, free_port, start_process

READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class MeshInstance:
    """One spawned instance: its sidecar and model server addresses and process ids."""

    name: str
    adapter_address: str
    runtime_address: str
    pids: tuple[int, ...]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the instance's processes (model server and sidecar)."""
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill_sidecar(self, sig: int = signal.SIGKILL) -> None:
        """Signal only the sidecar (the last process started)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pids[-1], sig)

    def signal_server(self, sig: int) -> None:
        """Signal only the model server (e.g. SIGSTOP to make it hang)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pids[0], sig)


@dataclass
class MeshHandle:
    """A running coordinator: its port, a ModelMesh stub and its instances."""

    port: int
    process: ManagedProcess
    channel: grpc.Channel
    stub: Any  # mmesh.ModelMeshStub
    instances: list[MeshInstance] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def inference_client(self) -> Any:
        """A tritonclient gRPC client talking to the coordinator."""
        import tritonclient.grpc as triton_grpc

        return triton_grpc.InferenceServerClient(self.address)


def _watch_output(proc: ManagedProcess, ready: dict[str, Any], event: threading.Event) -> None:
    # The coordinator prints one JSON line once every instance is READY.
    log_path = Path(proc.log.name)
    while not event.is_set() and proc.popen.poll() is None:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"mesh_ready"' in line:
                ready.update(json.loads(line))
                event.set()
                return
        time.sleep(0.05)
    event.set()


@contextlib.contextmanager
def run_mesh(
    runtime: str,
    instances: int,
    root_model_dir: Path,
    storage_config_dir: Path,
    pvc_mounts_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    log_dir: Path | None = None,
) -> Iterator[MeshHandle]:
    """Start `mesh-sidecar mesh --spawn N --runtime NAME`; yield once all instances are READY."""
    port = free_port()
    env = {
        "ROOT_MODEL_DIR": str(root_model_dir),
        "STORAGE_CONFIG_DIR": str(storage_config_dir),
        "PVC_MOUNTS_DIR": str(pvc_mounts_dir),
        "CONTAINER_MEM_REQ_BYTES": str(2 * 1024**3),
        **(extra_env or {}),
    }
    cmd = [*SIDECAR, "mesh", "--port", str(port), "--spawn", str(instances), "--runtime", runtime]
    if log_dir is not None:
        cmd += ["--log-dir", str(log_dir)]
    proc = start_process([*cmd, *extra_args], env, name="mesh")
    ready: dict[str, Any] = {}
    event = threading.Event()
    watcher = threading.Thread(target=_watch_output, args=(proc, ready, event), daemon=True)
    watcher.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        if not event.wait(READY_TIMEOUT_S) or not ready:
            raise RuntimeError(f"mesh not ready after {READY_TIMEOUT_S}s:\n{proc.output()}")
        handle = MeshHandle(
            port,
            proc,
            channel,
            mm_grpc.ModelMeshStub(channel),
            [
                MeshInstance(
                    i["name"], i["adapter_address"], i["runtime_address"], tuple(i["pids"])
                )
                for i in ready["instances"]
            ],
        )
        yield handle
    finally:
        event.set()
        channel.close()
        proc.stop(signal.SIGINT, timeout=30.0)


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Callable[..., MeshHandle]]:
    """Factory: `mesh(runtime, instances=2, extra_env=None, extra_args=())` -> MeshHandle.

    Uses ROOT_MODEL_DIR, STORAGE_CONFIG_DIR and PVC_MOUNTS_DIR under tmp_path
    (`tmp_path / "models"`, `"storage-config"`, `"pvc"`), created if missing,
    so a test can put its storage config and PVC models there first.
    """
    dirs = [tmp_path / "models", tmp_path / "storage-config", tmp_path / "pvc"]
    with contextlib.ExitStack() as stack:

        def start(
            runtime: str,
            instances: int = 2,
            extra_env: Mapping[str, str] | None = None,
            extra_args: Sequence[str] = (),
        ) -> MeshHandle:
            for path in dirs:
                path.mkdir(exist_ok=True)
            return stack.enter_context(
                run_mesh(
                    runtime,
                    instances,
                    dirs[0],
                    dirs[1],
                    dirs[2],
                    extra_env=extra_env,
                    extra_args=extra_args,
                    log_dir=tmp_path / "mesh-logs",
                )
            )

        yield start
