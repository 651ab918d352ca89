"""Fixtures of this repository's tests: a sample PVC model, a sidecar in front of it, and
session-wide real storage servers (moto S3, GCS emulator, Azurite, HTTP(S))."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import ServerHandle, SidecarHandle, run_sidecar
from mesh_sidecar.testing.storage import (
    AZURITE_ACCOUNT,
    FileServer,
    Pki,
    S3Server,
    free_port,
    make_pki,
    moto_command,
    running,
    server_cert_files,
)


@pytest.fixture
def pvc_model(sidecar_dirs: SidecarDirs) -> Path:
    """Claim `claim1` with models/m1 (text "hello "), and storage key `localpvc` for it."""
    model = sidecar_dirs.pvc_mounts_dir / "claim1" / "models" / "m1"
    model.mkdir(parents=True)
    (model / "model.txt").write_text("hello ")
    (sidecar_dirs.storage_config_dir / "localpvc").write_text(
        json.dumps({"type": "pvc", "name": "claim1"})
    )
    return model


@pytest.fixture
def sidecar(
    simple_string_server: ServerHandle, sidecar_dirs: SidecarDirs, pvc_model: Path
) -> Iterator[SidecarHandle]:
    """`mesh-sidecar serve --runtime simple-string`, READY."""
    with run_sidecar(
        "simple-string",
        simple_string_server.port,
        sidecar_dirs.root_model_dir,
        sidecar_dirs.storage_config_dir,
        sidecar_dirs.pvc_mounts_dir,
    ) as handle:
        yield handle


ROOT = Path(__file__).resolve().parents[1]
AZURITE = ROOT / ".work" / "azurite" / "node_modules" / ".bin" / "azurite-blob"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server, enforcing signatures (so bad credentials are refused)."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # The first three requests (creating an IAM user, its key and policy) are unsigned.
    with running(moto_command(port), port, {"INITIAL_NO_AUTH_ACTION_COUNT": "3"}):
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        iam.create_user(UserName="puller")
        key = iam.create_access_key(UserName="puller")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="puller", PolicyName="all", PolicyDocument=json.dumps(policy))
        admin = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        admin.create_bucket(Bucket="models")
        yield S3Server(endpoint, port, key["AccessKeyId"], key["SecretAccessKey"], admin)


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    """gcp-storage-emulator, in memory; the client library finds it via STORAGE_EMULATOR_HOST."""
    port = free_port()
    emulator = str(Path(sys.executable).parent / "gcp-storage-emulator")
    cmd = [emulator, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"]
    with running(cmd, port):
        host = f"http://127.0.0.1:{port}"
        previous = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = host
        try:
            yield host
        finally:
            if previous is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = previous


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service; answers the account URL."""
    if not AZURITE.exists():
        pytest.fail("Azurite is missing: run `make install`")
    port = free_port()
    # Azurite may write a log or state next to where it runs: keep that out of the tree.
    with running(azurite_command(port), port, cwd=tmp_path_factory.mktemp("azurite")):
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"


def azurite_command(port: int, *options: str) -> list[str]:
    return [
        str(AZURITE),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--loose",
        "--skipApiVersionCheck",
        "--inMemoryPersistence",
        "--disableTelemetry",  # no traffic off this machine
        *options,
    ]


@pytest.fixture(scope="session")
def pki() -> Pki:
    return make_pki()


@pytest.fixture(scope="session")
def azurite_oauth(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[str]:
    """Azurite's blob service over HTTPS, taking Entra ID bearer tokens as well as keys.

    `--oauth basic` checks a token's issuer, audience and lifetime, not its
    signature. Answers the account URL (the server certificate is `pki`'s).
    """
    if not AZURITE.exists():
        pytest.fail("Azurite is missing: run `make install`")
    tmp = tmp_path_factory.mktemp("azurite-oauth")
    cert, key = server_cert_files(pki, tmp)
    port = free_port()
    tls = ("--cert", str(cert), "--key", str(key))
    with running(azurite_command(port, "--oauth", "basic", *tls), port, cwd=tmp):
        yield f"https://127.0.0.1:{port}/{AZURITE_ACCOUNT}"


@pytest.fixture(scope="session")
def https_server(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    """HTTPS with a private CA that demands a client certificate (mutual TLS)."""
    server = FileServer(pki, require_client_cert=True, tmp=tmp_path_factory.mktemp("tls"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def http_server() -> Iterator[FileServer]:
    server = FileServer()
    yield server
    server.stop()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--campaign",
        action="store_true",
        help="also run the long tests of the reliability campaign (as `make reliability` does)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--campaign"):
        return
    skip = pytest.mark.skip(reason="long reliability-campaign case: `make reliability` runs it")
    for item in items:
        if "campaign" in item.keywords:
            item.add_marker(skip)


# -- results of the reliability campaign (docs/reliability.md is generated from them) --

#: The report generator reads this file (see tests/reliability/report.py).
RESULTS_ENV = "RELIABILITY_RESULTS"
_results: list[dict[str, Any]] = []
_tests: list[dict[str, Any]] = []

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


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _tests.append(
            {"test": report.nodeid, "outcome": report.outcome, "seconds": report.duration}
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get(RESULTS_ENV)
    if target:
        Path(target).write_text(json.dumps({"cases": _results, "tests": _tests}, indent=1))
