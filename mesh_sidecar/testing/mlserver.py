"""A real MLServer for tests and benchmarks, from the venv that `make install` builds.

MLServer lives in a venv of its own (`.venv-mlserver`, or MLSERVER_VENV): it
pins its own grpcio, protobuf and web stack, which the sidecar's need not
match. It is configured through its `MLSERVER_*` environment variables, as a
ServingRuntime configures it, rather than a `settings.json` in the repository
dir: the sidecar empties that dir at start-up (the purge), which would delete
the file.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from mesh_sidecar.runtimes.mlserver import MLServerAdapter
from mesh_sidecar.testing.processes import ManagedProcess, free_port, start_process, wait_for_port

#: The repository module MLServer imports to find a model's settings without a scan.
REPOSITORY_MODULE = "mesh_sidecar.runtimes.mlserver_repository.ModelDirRepository"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]

_TRAIN_IRIS = """
import sys
import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

features, labels = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=500).fit(features, labels), sys.argv[1])
"""

_TRAIN_IRIS_LIGHTGBM = """
import sys
import lightgbm
from sklearn.datasets import load_iris

features, labels = load_iris(return_X_y=True)
params = {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1}
lightgbm.train(params, lightgbm.Dataset(features, labels), num_boost_round=5).save_model(
    sys.argv[1]
)
"""


def mlserver_venv() -> Path:
    """The venv holding MLServer: MLSERVER_VENV, else the project's `.venv-mlserver`."""
    return Path(os.environ.get("MLSERVER_VENV", _PROJECT_ROOT / ".venv-mlserver"))


def mlserver_available() -> bool:
    """Whether `make install` has built the MLServer venv."""
    return (mlserver_venv() / "bin" / "mlserver").is_file()


@dataclass
class MLServerHandle:
    """A running MLServer: its gRPC address, its repository dir and its process."""

    process: ManagedProcess
    grpc_port: int
    http_port: int
    repository: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


def mlserver_env(
    grpc_port: int,
    http_port: int,
    metrics_port: int,
    *,
    parallel_workers: int = 0,
    fast_repository: bool = True,
    load_at_startup: bool = False,
) -> dict[str, str]:
    """MLServer's settings as environment variables.

    `parallel_workers=0` serves inference in the main process: loads are faster,
    and uvloop >= 0.22 cannot hang them. `fast_repository` installs the
    repository module that finds a model without scanning the repository.
    `load_at_startup` loads every model in the repository before MLServer is
    ready (the sidecar wants it off: it loads on ModelMesh's request).
    """
    env = {
        "MLSERVER_HOST": "127.0.0.1",
        "MLSERVER_GRPC_PORT": str(grpc_port),
        "MLSERVER_HTTP_PORT": str(http_port),
        "MLSERVER_METRICS_PORT": str(metrics_port),
        "MLSERVER_LOAD_MODELS_AT_STARTUP": str(load_at_startup).lower(),
        "MLSERVER_PARALLEL_WORKERS": str(parallel_workers),
    }
    if fast_repository:
        env["MLSERVER_MODEL_REPOSITORY_IMPLEMENTATION"] = REPOSITORY_MODULE
    return env


@contextmanager
def run_mlserver(
    root_model_dir: Path,
    *,
    parallel_workers: int = 0,
    fast_repository: bool = True,
    load_at_startup: bool = False,
    timeout: float = 90.0,
) -> Iterator[MLServerHandle]:
    """Start `mlserver start ROOT_MODEL_DIR/_mlserver_models` on free ports; yield once ready."""
    repository = root_model_dir / MLServerAdapter.repository_dir
    repository.mkdir(parents=True, exist_ok=True)
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    env = mlserver_env(
        grpc_port,
        http_port,
        metrics_port,
        parallel_workers=parallel_workers,
        fast_repository=fast_repository,
        load_at_startup=load_at_startup,
    )
    command = [str(mlserver_venv() / "bin" / "mlserver"), "start", str(repository)]
    process = start_process(command, env, name="mlserver", cwd=root_model_dir)
    handle = MLServerHandle(process, grpc_port, http_port, repository)
    try:
        wait_for_port(grpc_port, process, timeout)
        _wait_server_ready(handle, timeout)
        yield handle
    finally:
        process.stop()


def _wait_server_ready(handle: MLServerHandle, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    client = triton_grpc.InferenceServerClient(handle.address)
    try:
        while time.monotonic() < deadline:
            if handle.process.popen.poll() is not None:
                raise RuntimeError(f"MLServer exited:\n{handle.process.output()}")
            try:
                if client.is_server_ready():
                    return
            except InferenceServerException:
                pass
            time.sleep(0.1)
    finally:
        client.close()
    raise TimeoutError(f"MLServer not ready after {timeout}s:\n{handle.process.output()}")


#: One flower of each iris species, and the species a model from `train_iris_model`
#: must answer for them.
IRIS_FLOWERS = (
    (5.1, 3.5, 1.4, 0.2),
    (6.4, 3.2, 4.5, 1.5),
    (6.3, 3.3, 6.0, 2.5),
)
IRIS_SPECIES = [0, 1, 2]


def train_iris_model(dest: Path, kind: str = "sklearn") -> Path:
    """Train a tiny iris classifier with MLServer's own libraries and save it at `dest`.

    `kind` is "sklearn" (a joblib file) or "lightgbm" (a LightGBM model file).
    Trained here, never downloaded.
    """
    script = {"sklearn": _TRAIN_IRIS, "lightgbm": _TRAIN_IRIS_LIGHTGBM}[kind]
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(mlserver_venv() / "bin" / "python"), "-c", script, str(dest)],
        check=True,
        capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return dest
