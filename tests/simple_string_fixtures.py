"""Start a real simple-string server as a subprocess on a free port, for tests."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc as triton

from mesh_sidecar.runtimes.simple_string import SimpleStringAdapter

START_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RunningServer:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def simple_string_server(log_dir: Path, *extra_args: str) -> Iterator[RunningServer]:
    """The server started by the runtime's own `server_command`, stopped with SIGTERM."""
    port = free_port()
    command = SimpleStringAdapter.server_command(port, log_dir)
    assert command is not None
    log_path = log_dir / f"simple-string-{port}.log"
    log = log_path.open("wb")
    process = subprocess.Popen([*command, *extra_args], stdout=log, stderr=subprocess.STDOUT)
    server = RunningServer(port, process, log_path)
    try:
        client = triton.InferenceServerClient(server.address)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"simple-string server exited with {process.returncode}")
            try:
                if client.is_server_ready():
                    break
            except triton.InferenceServerException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("simple-string server did not become ready")
            time.sleep(0.1)
        client.close()
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def make_model(root: Path, name: str, text: str) -> Path:
    """A model dir `root/name` holding model.txt with `text`."""
    model = root / name
    model.mkdir(parents=True)
    (model / "model.txt").write_text(text)
    return model
