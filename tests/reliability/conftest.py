"""Fixtures of the reliability campaign: a seeded S3 store behind a fault proxy, a
sidecar in front of a real simple-string server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stack import BIG_WEIGHTS, MODEL_TEXT, WEIGHTS, write_store_config

from mesh_sidecar.testing.faultproxy import FaultProxy
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import ServerHandle, SidecarHandle, run_sidecar
from mesh_sidecar.testing.storage import S3Server


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
