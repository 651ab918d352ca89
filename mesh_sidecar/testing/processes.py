"""Start and stop real processes on free loopback ports, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.mmesh import model_runtime_pb2_grpc as pb_grpc

SIDECAR = [sys.executable, "-m", "mesh_sidecar.adapter.cli"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ManagedProcess:
    """A child process whose output goes to a log file, shown when it misbehaves."""

    name: str
    popen: subprocess.Popen[bytes]
    log: IO[bytes]

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the process and wait; kill it if it does not stop in time."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()
        return self.popen.returncode


def start_process(
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    name: str = "process",
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start `cmd` with `env` added to this process's environment."""
    log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)  # noqa: SIM115
    full_env = {**os.environ, **(env or {})}
    popen = subprocess.Popen(
        list(cmd),
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        start_new_session=True,
    )
    return ManagedProcess(name, popen, log)


def wait_for_port(port: int, proc: ManagedProcess | None = None, timeout: float = 30.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.output()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    detail = proc.output() if proc is not None else ""
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s\n{detail}")


def wait_runtime_ready(stub: Any, proc: ManagedProcess | None = None, timeout: float = 60.0) -> Any:
    """Poll runtimeStatus, as ModelMesh does, until READY; answer the READY response."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.output()}")
        try:
            status = stub.runtimeStatus(pb.RuntimeStatusRequest(), timeout=2)
            if status.status == pb.RuntimeStatusResponse.READY:
                return status
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        time.sleep(0.1)
    raise TimeoutError(f"runtime not READY after {timeout}s\n{proc.output() if proc else ''}")


@dataclass
class SidecarHandle:
    """A running sidecar: its port, a ModelRuntime stub, its dirs and its process."""

    adapter_port: int
    process: ManagedProcess
    channel: grpc.Channel
    stub: Any
    root_model_dir: Path
    status: Any = None
    env: dict[str, str] = field(default_factory=dict)


@contextmanager
def run_sidecar(
    runtime: str,
    runtime_port: int,
    root_model_dir: Path,
    storage_config_dir: Path,
    pvc_mounts_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    wait_ready: bool = True,
) -> Iterator[SidecarHandle]:
    """Start `mesh-sidecar serve --runtime RUNTIME` and yield once it answers READY."""
    port = free_port()
    env = {
        "ADAPTER_PORT": str(port),
        "RUNTIME_PORT": str(runtime_port),
        "RUNTIME_HOST": "127.0.0.1",
        "ROOT_MODEL_DIR": str(root_model_dir),
        "STORAGE_CONFIG_DIR": str(storage_config_dir),
        "PVC_MOUNTS_DIR": str(pvc_mounts_dir),
        "CONTAINER_MEM_REQ_BYTES": str(2 * 1024**3),
        "METRICS_PORT": "0",
        **(extra_env or {}),
    }
    proc = start_process([*SIDECAR, "serve", "--runtime", runtime], env, name="sidecar")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    handle = SidecarHandle(
        port, proc, channel, pb_grpc.ModelRuntimeStub(channel), root_model_dir, env=env
    )
    try:
        wait_for_port(port, proc)
        if wait_ready:
            handle.status = wait_runtime_ready(handle.stub, proc)
        yield handle
    finally:
        channel.close()
        proc.stop()


@dataclass
class ServerHandle:
    """A running model server: its gRPC port and its process."""

    port: int
    process: ManagedProcess


@contextmanager
def run_simple_string_server() -> Iterator[ServerHandle]:
    """Start `mesh-sidecar simple-string-server` on a free port; yield once it listens."""
    port = free_port()
    proc = start_process(
        [*SIDECAR, "simple-string-server", "--port", str(port)], name="simple-string"
    )
    try:
        wait_for_port(port, proc)
        yield ServerHandle(port, proc)
    finally:
        proc.stop()
