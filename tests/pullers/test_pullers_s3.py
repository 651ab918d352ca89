"""S3 puller against moto's S3 server (signatures checked), directly and through a fault proxy."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from trees import entries, tree

from mesh_sidecar.errors import InvalidRequest, NotFound, PermissionDenied, Unavailable
from mesh_sidecar.pullers.base import PullerSettings, PullProgress, StorageSource, pull_atomically
from mesh_sidecar.pullers.s3 import S3Puller
from mesh_sidecar.testing.archives import good_tar, good_zip
from mesh_sidecar.testing.faultproxy import FaultProxy
from mesh_sidecar.testing.processes import free_port
from mesh_sidecar.testing.storage import (
    S3Server,
    make_pki,
    moto_command,
    running,
    server_tls,
    wait_until,
)

MODEL = {
    "models/mnist/model.bin": os.urandom(3000),
    "models/mnist/sub/config.json": b'{"a": 1}',
    "models/mnist/empty.txt": b"",
    "models/mnist/folder/": b"",  # a folder marker, not a file
    "models/mnist2/other.bin": b"not mnist",
    "models/mnist.txt": b"not mnist either",
    "evil/ok.txt": b"ok",
    "evil/../../escape.txt": b"evil",
    "archives/model.tar.gz": good_tar(),
    "archives/zipped/model.zip": good_zip(),
}
BIG = os.urandom(40 * 1024 * 1024 + 123)  # above the multipart threshold: ranged GETs


@pytest.fixture(scope="module")
def s3(s3_server: S3Server) -> S3Server:
    for key, body in MODEL.items():
        s3_server.admin.put_object(Bucket="models", Key=key, Body=body)
    s3_server.admin.put_object(Bucket="models", Key="big/weights.bin", Body=BIG)
    return s3_server


async def test_pulls_the_objects_under_a_prefix_only(s3: S3Server, tmp_path: Path) -> None:
    puller = S3Puller(PullerSettings())
    source = StorageSource("s3", s3.config(), "models/mnist")
    result = await pull_atomically(puller, source, tmp_path / "m")
    assert result.path == tmp_path / "m"
    assert tree(result.path) == {
        "empty.txt": b"",
        "model.bin": MODEL["models/mnist/model.bin"],
        "sub/config.json": b'{"a": 1}',
    }
    assert (result.files, result.bytes) == (3, 3008)
    assert entries(tmp_path) == [
        "m",
        "m/empty.txt",
        "m/model.bin",
        "m/sub",
        "m/sub/config.json",
    ]
    await puller.close()


async def test_a_trailing_slash_and_the_default_bucket_work_too(
    s3: S3Server, tmp_path: Path
) -> None:
    puller = S3Puller(PullerSettings())
    config = s3.config(bucket=None, default_bucket="models")
    result = await pull_atomically(
        puller, StorageSource("s3", config, "/models/mnist/"), tmp_path / "m"
    )
    assert sorted(tree(result.path)) == ["empty.txt", "model.bin", "sub/config.json"]
    await puller.close()


async def test_a_single_object_lands_under_its_name(s3: S3Server, tmp_path: Path) -> None:
    puller = S3Puller(PullerSettings())
    source = StorageSource("s3", s3.config(), "models/mnist/model.bin")
    result = await pull_atomically(puller, source, tmp_path / "m")
    assert result.path == tmp_path / "m" / "model.bin"
    assert result.path.read_bytes() == MODEL["models/mnist/model.bin"]
    await puller.close()


async def test_a_big_object_arrives_whole(s3: S3Server, tmp_path: Path) -> None:
    puller = S3Puller(PullerSettings())
    progress = PullProgress()
    result = await pull_atomically(
        puller, StorageSource("s3", s3.config(), "big"), tmp_path / "m", progress
    )
    data = (result.path / "weights.bin").read_bytes()
    assert hashlib.sha256(data).digest() == hashlib.sha256(BIG).digest()
    assert (progress.bytes, progress.files, progress.total_bytes) == (len(BIG), 1, len(BIG))
    await puller.close()


async def test_size_sums_the_listing_of_the_prefix(s3: S3Server) -> None:
    puller = S3Puller(PullerSettings())
    assert await puller.size(StorageSource("s3", s3.config(), "models/mnist")) == 3008
    await puller.close()


@pytest.mark.parametrize("path", ["archives/model.tar.gz", "archives/zipped"])
async def test_a_single_archive_is_extracted_in_place(
    s3: S3Server, tmp_path: Path, path: str
) -> None:
    puller = S3Puller(PullerSettings())
    result = await pull_atomically(puller, StorageSource("s3", s3.config(), path), tmp_path / "m")
    assert result.path == tmp_path / "m"
    assert tree(result.path) == {
        "config.pbtxt": b"name: 'm'",
        "1/model.onnx": b"\x00" * 1000,
        "empty": b"",
    }
    await puller.close()


async def test_a_key_that_leaves_the_model_dir_is_refused_and_nothing_is_written(
    s3: S3Server, tmp_path: Path
) -> None:
    puller = S3Puller(PullerSettings())
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(InvalidRequest, match="leaves the model directory"):
        await pull_atomically(puller, StorageSource("s3", s3.config(), "evil"), root / "m")
    assert entries(tmp_path) == ["root"]
    await puller.close()


async def test_bad_credentials_are_permission_denied_without_the_secret(
    s3: S3Server, tmp_path: Path
) -> None:
    puller = S3Puller(PullerSettings())
    secret = "definitely-Wrong-Secret-Key-0123456789"
    source = StorageSource("s3", s3.config(secret_access_key=secret), "models/mnist")
    with pytest.raises(PermissionDenied) as caught:
        await pull_atomically(puller, source, tmp_path / "m")
    assert secret not in str(caught.value)
    assert s3.access_key_id not in str(caught.value)
    assert entries(tmp_path) == []
    await puller.close()


def without_config_keys(s3: S3Server) -> dict[str, Any]:
    return s3.config(access_key_id=None, secret_access_key=None)


@pytest.fixture
def chain_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No AWS credentials anywhere (env, files, instance metadata) but what a test sets."""
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                     "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


async def test_without_keys_in_the_config_the_environments_keys_are_used(
    s3: S3Server, chain_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    chain_env.setenv("AWS_ACCESS_KEY_ID", s3.access_key_id)
    chain_env.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_access_key)
    puller = S3Puller(PullerSettings())
    source = StorageSource("s3", without_config_keys(s3), "big")
    result = await pull_atomically(puller, source, tmp_path / "m")
    assert tree(result.path) == {"weights.bin": BIG}
    await puller.close()

    chain_env.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-key-0123456789")
    puller = S3Puller(PullerSettings())
    with pytest.raises(PermissionDenied):
        await pull_atomically(puller, source, tmp_path / "again")
    assert entries(tmp_path) == ["m", "m/weights.bin"]
    await puller.close()


@pytest.fixture(scope="module")
def unsigned_sts_moto() -> Iterator[str]:
    """A moto server that does not check signatures: moto answers STS's unsigned
    AssumeRoleWithWebIdentity only then. It serves S3 too, with one model."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with running(moto_command(port), port):
        admin = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                             aws_access_key_id="seed", aws_secret_access_key="seed")  # fmt: skip
        admin.create_bucket(Bucket="models")
        admin.put_object(Bucket="models", Key="models/mnist/model.bin", Body=BIG[:5000])
        yield endpoint


async def test_without_keys_a_web_identity_token_is_exchanged_at_sts(
    unsigned_sts_moto: str, chain_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # IRSA: the pod gets a role ARN and a token file, and STS trades them for
    # temporary keys; with no other credentials anywhere, signing needs those.
    config = {"type": "s3", "endpoint_url": unsigned_sts_moto, "region": "us-east-1",
              "bucket": "models"}  # fmt: skip
    source = StorageSource("s3", config, "models/mnist")
    puller = S3Puller(PullerSettings())
    with pytest.raises(PermissionDenied, match="no usable AWS credentials"):
        await pull_atomically(puller, source, tmp_path / "none")
    await puller.close()

    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln")
    chain_env.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/model-reader")
    chain_env.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    chain_env.setenv("AWS_ENDPOINT_URL_STS", unsigned_sts_moto)
    chain_env.setenv("AWS_REGION", "us-east-1")
    puller = S3Puller(PullerSettings())
    result = await pull_atomically(puller, source, tmp_path / "m")
    assert tree(result.path) == {"model.bin": BIG[:5000]}
    assert entries(tmp_path) == ["m", "m/model.bin", "token"]
    await puller.close()


@pytest.mark.parametrize(
    ("bucket", "path"),
    [("models", "models/nothing"), ("models", "models/mnis"), ("no-such-bucket", "m")],
)
async def test_nothing_at_the_path_is_not_found(
    s3: S3Server, tmp_path: Path, bucket: str, path: str
) -> None:
    puller = S3Puller(PullerSettings())
    with pytest.raises(NotFound):
        await pull_atomically(
            puller, StorageSource("s3", s3.config(bucket=bucket), path), tmp_path / "m"
        )
    assert entries(tmp_path) == []
    await puller.close()


async def test_no_bucket_is_an_invalid_request(s3: S3Server, tmp_path: Path) -> None:
    puller = S3Puller(PullerSettings())
    with pytest.raises(InvalidRequest, match="bucket"):
        await pull_atomically(
            puller, StorageSource("s3", s3.config(bucket=None), "m"), tmp_path / "m"
        )
    await puller.close()


@pytest.mark.slow
async def test_connection_resets_are_retried(s3: S3Server, tmp_path: Path) -> None:
    proxy = FaultProxy(s3.port, mode="reset", count=3)
    puller = S3Puller(PullerSettings())
    try:
        source = StorageSource("s3", s3.config(endpoint_url=proxy.endpoint), "models/mnist")
        result = await pull_atomically(puller, source, tmp_path / "m")
        assert sorted(tree(result.path)) == ["empty.txt", "model.bin", "sub/config.json"]
        assert proxy.faulted == 3
    finally:
        proxy.close()
        await puller.close()


@pytest.mark.slow
async def test_a_store_that_keeps_resetting_is_unavailable(s3: S3Server, tmp_path: Path) -> None:
    proxy = FaultProxy(s3.port, mode="reset")
    puller = S3Puller(PullerSettings())
    try:
        config = s3.config(endpoint_url=proxy.endpoint, max_attempts="3")
        with pytest.raises(Unavailable, match="unreachable"):
            await pull_atomically(
                puller, StorageSource("s3", config, "models/mnist"), tmp_path / "m"
            )
        # Bounded: max_attempts tries (urllib3 may redial a dropped pooled connection once).
        assert 3 <= proxy.faulted <= 4
        assert entries(tmp_path) == []
    finally:
        proxy.close()
        await puller.close()


@pytest.mark.slow
async def test_a_stalled_store_times_out_as_unavailable(s3: S3Server, tmp_path: Path) -> None:
    proxy = FaultProxy(s3.port, mode="stall")
    puller = S3Puller(PullerSettings())
    try:
        config = s3.config(endpoint_url=proxy.endpoint, read_timeout="0.5", max_attempts="2")
        with pytest.raises(Unavailable):
            await pull_atomically(
                puller, StorageSource("s3", config, "models/mnist"), tmp_path / "m"
            )
        assert entries(tmp_path) == []
    finally:
        proxy.close()
        await puller.close()


@pytest.mark.slow
async def test_a_cancelled_pull_stops_and_leaves_nothing(s3: S3Server, tmp_path: Path) -> None:
    # The listing's connection is forwarded; the downloads' new connections stall.
    proxy = FaultProxy(s3.port, mode="stall", after=1)
    puller = S3Puller(PullerSettings())
    try:
        config = s3.config(endpoint_url=proxy.endpoint, read_timeout="120")
        task = asyncio.create_task(
            pull_atomically(puller, StorageSource("s3", config, "models/mnist"), tmp_path / "m")
        )
        await asyncio.to_thread(wait_until, lambda: proxy.faulted > 0)
        task.cancel()
        # Far less than the read timeout: the pull does not wait for the stalled request.
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        assert entries(tmp_path) == []
    finally:
        proxy.close()
        await puller.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def tls_front(s3: S3Server, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """The store behind TLS with a certificate of a private CA: (endpoint, CA PEM)."""
    pki = make_pki()
    context = server_tls(pki, tmp_path)

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", s3.port)
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    server = await asyncio.start_server(forward, "127.0.0.1", 0, ssl=context)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}", pki.ca
    finally:
        server.close()


async def test_an_https_endpoint_with_a_private_ca(s3: S3Server, tmp_path: Path) -> None:
    """`certificate` lets the listing and the downloads through; without it the pull
    fails, nothing written."""
    root = tmp_path / "root"
    root.mkdir()
    async with tls_front(s3, tmp_path) as (endpoint, ca):
        puller = S3Puller(PullerSettings())
        config = s3.config(endpoint_url=endpoint, certificate=ca)
        result = await pull_atomically(puller, StorageSource("s3", config, "big"), root / "m")
        data = (result.path / "weights.bin").read_bytes()
        assert hashlib.sha256(data).digest() == hashlib.sha256(BIG).digest()
        with pytest.raises(Unavailable, match="TLS"):
            await pull_atomically(
                puller, StorageSource("s3", s3.config(endpoint_url=endpoint), "big"), root / "n"
            )
        assert entries(root) == ["m", "m/weights.bin"]
        await puller.close()


# -- behind an HTTP proxy ------------------------------------------------------------
# botocore (the listing) and the AWS Common Runtime (the downloads) both read
# HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment.


@contextlib.contextmanager
def http_proxy(tmp_path: Path, *flags: str) -> Iterator[tuple[int, Path]]:
    """An HTTP forward proxy (proxy.py) on loopback: its port and its access log."""
    port = free_port()
    log = tmp_path / "proxy.log"
    cmd = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", str(port)]
    cmd += ["--num-workers", "1", "--num-acceptors", "1", "--log-file", str(log), *flags]
    with running(cmd, port):
        yield port, log


def relayed_bytes(log: Path) -> int:
    """Bytes the proxy carried from the store, over the connections closed so far."""
    return sum(int(n) for n in re.findall(r" - (\d+) bytes - ", log.read_text()))


def use_proxy(monkeypatch: pytest.MonkeyPatch, name: str, url: str, no_proxy: str = "") -> None:
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(variable, raising=False)
        monkeypatch.delenv(variable.lower(), raising=False)
    monkeypatch.setenv(name, url)
    monkeypatch.setenv("NO_PROXY", no_proxy)


async def test_behind_an_http_proxy_with_credentials_the_objects_come_through_it(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with http_proxy(tmp_path, "--basic-auth", "puller:proxy-secret") as (port, log):
        use_proxy(monkeypatch, "HTTP_PROXY", f"http://puller:proxy-secret@127.0.0.1:{port}")
        puller = S3Puller(PullerSettings())
        source = StorageSource("s3", s3.config(), "models/mnist")
        result = await pull_atomically(puller, source, tmp_path / "m")
        assert tree(result.path) == {
            "empty.txt": b"",
            "model.bin": MODEL["models/mnist/model.bin"],
            "sub/config.json": b'{"a": 1}',
        }
        result = await pull_atomically(
            puller, StorageSource("s3", s3.config(), "big"), tmp_path / "b"
        )
        data = (result.path / "weights.bin").read_bytes()
        assert hashlib.sha256(data).digest() == hashlib.sha256(BIG).digest()
        await puller.close()
        # The proxy logs a connection when it closes: the downloads' close with the client.
        await asyncio.to_thread(wait_until, lambda: relayed_bytes(log) > len(BIG) + 3008)

        use_proxy(monkeypatch, "HTTP_PROXY", f"http://puller:wrong-secret@127.0.0.1:{port}")
        puller = S3Puller(PullerSettings())
        with pytest.raises(PermissionDenied, match="Proxy Authentication Required") as caught:
            await pull_atomically(puller, source, tmp_path / "n")
        assert "wrong-secret" not in str(caught.value)
        assert not (tmp_path / "n").exists()
        await puller.close()


async def test_an_https_endpoint_through_an_https_proxy_tunnel(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with tls_front(s3, tmp_path) as (endpoint, ca):
        with http_proxy(tmp_path) as (port, log):
            use_proxy(monkeypatch, "HTTPS_PROXY", f"http://127.0.0.1:{port}")
            puller = S3Puller(PullerSettings())
            config = s3.config(endpoint_url=endpoint, certificate=ca)
            result = await pull_atomically(
                puller, StorageSource("s3", config, "big"), tmp_path / "m"
            )
            data = (result.path / "weights.bin").read_bytes()
            assert hashlib.sha256(data).digest() == hashlib.sha256(BIG).digest()
            await puller.close()
            await asyncio.to_thread(wait_until, lambda: relayed_bytes(log) > len(BIG))
            assert f"CONNECT 127.0.0.1:{endpoint.rsplit(':', 1)[1]}" in log.read_text()


async def test_a_proxy_that_is_down_fails_the_pull_unless_no_proxy_names_the_store(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    down = f"http://puller:proxy-secret@127.0.0.1:{free_port()}"
    puller = S3Puller(PullerSettings())
    use_proxy(monkeypatch, "HTTP_PROXY", down)
    config = s3.config(max_attempts="1")
    with pytest.raises(Unavailable, match="unreachable") as caught:
        await pull_atomically(puller, StorageSource("s3", config, "models/mnist"), root / "m")
    assert "proxy-secret" not in str(caught.value)
    assert entries(root) == []
    await puller.close()

    # Excluded by NO_PROXY: the listing and the downloads go direct.
    use_proxy(monkeypatch, "HTTP_PROXY", down, no_proxy="localhost,127.0.0.1")
    puller = S3Puller(PullerSettings())
    result = await pull_atomically(puller, StorageSource("s3", config, "big"), root / "b")
    assert (result.path / "weights.bin").stat().st_size == len(BIG)
    await puller.close()
