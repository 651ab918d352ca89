"""A real Triton Inference Server for tests and benchmarks, from the nvidia-pytriton wheel.

The wheel ships a CPU build of `tritonserver` (2.51) with the python backend;
`make install` puts it in `.venv-triton` and copies the python backend stub
built for that venv's Python next to the backend. The server needs:

- LD_LIBRARY_PATH: the wheel's bundled libs (`nvidia_pytriton.libs/`) and the
  directory of the venv's base `libpython3.X.so.1.0` (the stub links it);
- PATH starting with the venv's `bin/`: the stub runs `model.py` with the first
  `python` on PATH's packages (numpy comes from the venv);
- `--backend-directory` pointing into the wheel.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mesh_sidecar.testing.processes import ManagedProcess, free_port, start_process

#: Where `make install` puts the venv, unless MESH_SIDECAR_TRITON_VENV says otherwise.
DEFAULT_VENV = Path(__file__).resolve().parents[2] / ".venv-triton"


@dataclass(frozen=True)
class TritonInstall:
    """The files of one installed nvidia-pytriton Triton."""

    venv: Path
    home: Path  # .../site-packages/pytriton/tritonserver
    libs: Path  # .../site-packages/nvidia_pytriton.libs

    @classmethod
    def find(cls, venv: Path | None = None) -> TritonInstall:
        """The Triton in `venv` (default: MESH_SIDECAR_TRITON_VENV, else `.venv-triton`)."""
        venv = venv or Path(os.environ.get("MESH_SIDECAR_TRITON_VENV", DEFAULT_VENV))
        for site in sorted(venv.glob("lib/python3*/site-packages")):
            home = site / "pytriton" / "tritonserver"
            if (home / "bin" / "tritonserver").exists():
                return cls(venv, home, site / "nvidia_pytriton.libs")
        raise FileNotFoundError(f"no nvidia-pytriton Triton in {venv}: run `make install`")

    @property
    def binary(self) -> Path:
        return self.home / "bin" / "tritonserver"

    def env(self) -> dict[str, str]:
        """The variables `tritonserver` needs on top of the caller's environment."""
        lib_dirs = [str(self.libs), *self._libpython_dirs()]
        if os.environ.get("LD_LIBRARY_PATH"):
            lib_dirs.append(os.environ["LD_LIBRARY_PATH"])
        return {
            "LD_LIBRARY_PATH": os.pathsep.join(lib_dirs),
            "PATH": os.pathsep.join([str(self.venv / "bin"), os.environ.get("PATH", "")]),
        }

    def _libpython_dirs(self) -> list[str]:
        # A venv records its base interpreter's bin dir as `home`; libpython sits in ../lib.
        config = self.venv / "pyvenv.cfg"
        for line in config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return [str(Path(value.strip()).parent / "lib")]
        return []

    def command(
        self,
        repository: Path,
        grpc_port: int,
        http_port: int | None = None,
        metrics_port: int | None = None,
    ) -> list[str]:
        """`tritonserver` in explicit model control on 127.0.0.1; HTTP/metrics off if no port."""
        cmd = [
            str(self.binary),
            f"--model-repository={repository}",
            "--model-control-mode=explicit",
            # As the Go sidecar's docs run it: with strict readiness, one model that ever
            # failed to load keeps server-ready false for good, even after its unload.
            "--strict-readiness=false",
            f"--backend-directory={self.home / 'backends'}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc_port}",
            "--exit-timeout-secs=5",
        ]
        if http_port is None:
            cmd.append("--allow-http=false")
        else:
            cmd += ["--http-address=127.0.0.1", f"--http-port={http_port}"]
        if metrics_port is None:
            cmd.append("--allow-metrics=false")
        else:
            cmd += ["--metrics-address=127.0.0.1", f"--metrics-port={metrics_port}"]
        return cmd


@dataclass
class TritonServer:
    """A running Triton: its ports, its model repository and its process."""

    grpc_port: int
    http_port: int
    metrics_port: int
    repository: Path
    process: ManagedProcess

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


def wait_triton_ready(
    address: str, proc: ManagedProcess | None = None, timeout: float = 60
) -> None:
    """Poll Triton's server-ready over gRPC until it says so."""
    import tritonclient.grpc as triton_grpc
    from tritonclient.utils import InferenceServerException

    client = triton_grpc.InferenceServerClient(address)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc is not None and proc.popen.poll() is not None:
                raise RuntimeError(
                    f"tritonserver exited with {proc.popen.returncode}:\n{proc.output()}"
                )
            try:
                if client.is_server_ready(client_timeout=2):
                    return
            except InferenceServerException:
                pass
            time.sleep(0.1)
    finally:
        client.close()
    raise TimeoutError(f"Triton not ready after {timeout}s\n{proc.output() if proc else ''}")


@contextmanager
def run_triton(repository: Path, install: TritonInstall | None = None) -> Iterator[TritonServer]:
    """Start Triton on `repository` on free loopback ports; yield once it is ready."""
    install = install or TritonInstall.find()
    repository.mkdir(parents=True, exist_ok=True)
    ports = free_port(), free_port(), free_port()
    proc = start_process(install.command(repository, *ports), install.env(), name="tritonserver")
    try:
        wait_triton_ready(f"127.0.0.1:{ports[0]}", proc)
        yield TritonServer(*ports, repository, proc)
    finally:
        proc.stop()
