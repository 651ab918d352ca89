"""Fixtures of the reliability campaign: a seeded S3 store behind a fault proxy, a
sidecar in front of a real simple-string server, and the results file the report
is generated from."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.testing.faultproxy import FaultProxy
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import ServerHandle, SidecarHandle, run_sidecar
from mesh_sidecar.testing.storage import S3Server

#: The report generator reads this file (see tests/reliability/report.py).
RESULTS_ENV = "RELIABILITY_RESULTS"
MODEL_TEXT = "hello "
WEIGHTS = os.urandom(768 * 1024)  # makes a pull take a while through a slow link
BIG_WEIGHTS = os.urandom(3 * 1024 * 1024)
S3_KEY = json.dumps({"storage_key": "store", "model_type": {"name": "string"}})

_results: list[dict[str, Any]] = []

Record = Callable[..., None]


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Record:
    """Notes one tried case for the report: its class, what was tried and what happened."""

    def note(kind: str, case: str, outcome: str, tries: int = 1, **figures: Any) -> None:
        _results.append(
            {
                "class": kind,
                "case": case,
                "outcome": outcome,
                "tries": tries,
                "test": request.node.nodeid,
                **figures,
            }
        )

    return note


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get(RESULTS_ENV)
    if target and _results:
        path = Path(target)
        old = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps(old + _results, indent=1))


@pytest.fixture(scope="session")
def s3_models(s3_server: S3Server) -> S3Server:
    """Bucket `models`: `m1` (model.txt + 768 KiB of weights) and `big` (3 MiB of weights)."""
    admin = s3_server.admin
    admin.put_object(Bucket="models", Key="rel/m1/model.txt", Body=MODEL_TEXT.encode())
    admin.put_object(Bucket="models", Key="rel/m1/weights.bin", Body=WEIGHTS)
    admin.put_object(Bucket="models", Key="rel/big/model.txt", Body=b"big ")
    admin.put_object(Bucket="models", Key="rel/big/weights.bin", Body=BIG_WEIGHTS)
    return s3_server


@pytest.fixture
def proxy(s3_models: S3Server) -> Iterator[FaultProxy]:
    """A fault proxy in front of the S3 server, forwarding until a test sets a fault."""
    fault = FaultProxy(s3_models.port)
    yield fault
    fault.close()


def write_store_config(
    dirs: SidecarDirs, s3: S3Server, endpoint: str, **overrides: Any
) -> dict[str, Any]:
    config = s3.config(endpoint_url=endpoint, **overrides)
    (dirs.storage_config_dir / "store").write_text(json.dumps(config))
    return config


@pytest.fixture
def s3_sidecar(
    simple_string_server: ServerHandle,
    sidecar_dirs: SidecarDirs,
    s3_models: S3Server,
    proxy: FaultProxy,
) -> Iterator[SidecarHandle]:
    """A READY sidecar (simple-string runtime) whose storage key `store` goes through `proxy`.

    Short timeouts and few attempts keep the failing cases quick.
    """
    write_store_config(
        sidecar_dirs,
        s3_models,
        proxy.endpoint,
        read_timeout="2",
        connect_timeout="2",
        max_attempts="4",
    )
    with run_sidecar("simple-string", simple_string_server.port, *sidecar_dirs.as_args()) as handle:
        yield handle


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
