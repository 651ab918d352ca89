"""HTTP(S) puller against real servers: HTTPS with a private CA and mutual TLS, plain HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from trees import entries, tree

from mesh_sidecar.errors import InvalidRequest, NotFound, PermissionDenied, Unavailable
from mesh_sidecar.pullers.base import PullerSettings, StorageSource, pull_atomically
from mesh_sidecar.pullers.http import HttpPuller, model_url
from mesh_sidecar.testing.archives import good_tar, hostile_archives
from mesh_sidecar.testing.faultproxy import FaultProxy
from mesh_sidecar.testing.storage import FileServer, Pki

WEIGHTS = os.urandom(5000)


def tls_config(server: FileServer, pki: Pki, **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "url": server.url,
        "certificate": pki.ca,
        "client_certificate": pki.client_cert,
        "client_key": pki.client_key,
        **extra,
    }


async def pull(config: dict[str, Any], path: str, dest: Path, **settings: Any) -> Path:
    puller = HttpPuller(PullerSettings(**settings))
    try:
        result = await pull_atomically(puller, StorageSource("http", config, path), dest)
        return result.path
    finally:
        await puller.close()


def test_the_model_path_is_joined_to_the_url_and_the_query_kept() -> None:
    assert model_url("https://h/base/?sig=abc", "/models/m.onnx") == (
        "https://h/base/models/m.onnx?sig=abc"
    )
    assert model_url("https://h/file.onnx?x=1", "") == "https://h/file.onnx?x=1"
    assert model_url("http://h", "a b/c") == "http://h/a%20b/c"
    with pytest.raises(InvalidRequest):
        model_url("ftp://h/x", "m")


async def test_mutual_tls_download(https_server: FileServer, pki: Pki, tmp_path: Path) -> None:
    https_server.add("/models/model.onnx", WEIGHTS)
    path = await pull(tls_config(https_server, pki), "models/model.onnx", tmp_path / "m")
    assert path == tmp_path / "m" / "model.onnx"
    assert path.read_bytes() == WEIGHTS


async def test_without_the_client_certificate_the_server_refuses(
    https_server: FileServer, pki: Pki, tmp_path: Path
) -> None:
    https_server.add("/models/model.onnx", WEIGHTS)
    config = {"type": "http", "url": https_server.url, "certificate": pki.ca, "max_attempts": 1}
    with pytest.raises(Unavailable):
        await pull(config, "models/model.onnx", tmp_path / "m")
    assert entries(tmp_path) == []


async def test_an_unknown_ca_is_refused(https_server: FileServer, pki: Pki, tmp_path: Path) -> None:
    config = tls_config(https_server, pki, certificate=None, max_attempts=1)
    with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await pull(config, "models/model.onnx", tmp_path / "m")


async def test_headers_are_sent_and_never_shown(http_server: FileServer, tmp_path: Path) -> None:
    token = "Bearer s3cr3t-t0ken-value"
    http_server.add("/private/model.bin", WEIGHTS, need_header=("Authorization", token))
    config = {"type": "http", "url": http_server.url, "headers": {"Authorization": token}}
    path = await pull(config, "private/model.bin", tmp_path / "ok")
    assert path.read_bytes() == WEIGHTS
    wrong = {
        "type": "http",
        "url": http_server.url + "?sig=SIGNATURE123",
        "headers": {"Authorization": ["nope-not-it"]},
    }
    with pytest.raises(PermissionDenied) as caught:
        await pull(wrong, "private/model.bin", tmp_path / "denied")
    assert "SIGNATURE123" not in str(caught.value)
    assert "nope-not-it" not in str(caught.value)
    assert not (tmp_path / "denied").exists()


async def test_an_error_page_is_never_saved_as_the_model(
    http_server: FileServer, tmp_path: Path
) -> None:
    with pytest.raises(NotFound, match="HTTP 404"):
        await pull({"type": "http", "url": http_server.url}, "missing.onnx", tmp_path / "m")
    assert entries(tmp_path) == []


async def test_500_then_200_is_retried(http_server: FileServer, tmp_path: Path) -> None:
    route = http_server.add("/flaky/model.bin", WEIGHTS, fail_first=[500, 503])
    path = await pull({"type": "http", "url": http_server.url}, "flaky/model.bin", tmp_path / "m")
    assert path.read_bytes() == WEIGHTS
    assert route.hits == 3


async def test_a_server_that_keeps_failing_is_unavailable_after_bounded_retries(
    http_server: FileServer, tmp_path: Path
) -> None:
    route = http_server.add("/down/model.bin", WEIGHTS, fail_first=[500] * 10)
    config = {"type": "http", "url": http_server.url, "max_attempts": "3"}
    with pytest.raises(Unavailable, match="HTTP 500"):
        await pull(config, "down/model.bin", tmp_path / "m")
    assert route.hits == 3
    assert entries(tmp_path) == []


async def test_redirects_are_followed_within_limits(
    http_server: FileServer, tmp_path: Path
) -> None:
    http_server.add("/real/model.bin", WEIGHTS)
    http_server.add("/moved", status=302, headers={"Location": "/real/model.bin"})
    path = await pull({"type": "http", "url": http_server.url}, "moved", tmp_path / "m")
    assert path == tmp_path / "m" / "model.bin"
    http_server.add("/loop", status=302, headers={"Location": "/loop"})
    with pytest.raises(InvalidRequest, match="redirects"):
        await pull({"type": "http", "url": http_server.url}, "loop", tmp_path / "loop")


async def test_content_md5_is_checked(http_server: FileServer, tmp_path: Path) -> None:
    good = base64.b64encode(hashlib.md5(WEIGHTS).digest()).decode()
    http_server.add("/md5/good.bin", WEIGHTS, headers={"Content-MD5": good})
    path = await pull({"type": "http", "url": http_server.url}, "md5/good.bin", tmp_path / "ok")
    assert path.read_bytes() == WEIGHTS
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    http_server.add("/md5/bad.bin", WEIGHTS, headers={"Content-MD5": bad})
    config = {"type": "http", "url": http_server.url, "max_attempts": 2}
    with pytest.raises(Unavailable, match="checksum"):
        await pull(config, "md5/bad.bin", tmp_path / "bad")


async def test_an_empty_file_is_pulled(http_server: FileServer, tmp_path: Path) -> None:
    http_server.add("/empty.txt", b"")
    path = await pull({"type": "http", "url": http_server.url}, "empty.txt", tmp_path / "m")
    assert path.read_bytes() == b""


async def test_an_archive_url_is_extracted(http_server: FileServer, tmp_path: Path) -> None:
    http_server.add("/arch/model.tar.gz", good_tar())
    path = await pull({"type": "http", "url": http_server.url}, "arch/model.tar.gz", tmp_path / "m")
    assert path == tmp_path / "m"
    assert sorted(tree(path)) == ["1/model.onnx", "config.pbtxt", "empty"]


@pytest.mark.parametrize("name", sorted(hostile_archives()))
async def test_hostile_archives_are_refused_and_nothing_is_kept(
    http_server: FileServer, tmp_path: Path, name: str
) -> None:
    http_server.add(f"/hostile/{name}", hostile_archives()[name])
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(InvalidRequest, match="refusing"):
        await pull({"type": "http", "url": http_server.url}, f"hostile/{name}", root / "m")
    assert entries(tmp_path) == ["root"]


async def test_a_zip_bomb_stops_at_the_limit(http_server: FileServer, tmp_path: Path) -> None:
    from mesh_sidecar.testing.archives import zip_bomb

    http_server.add("/bomb.zip", zip_bomb(32 * 1024 * 1024))
    with pytest.raises(InvalidRequest, match="beyond"):
        await pull(
            {"type": "http", "url": http_server.url},
            "bomb.zip",
            tmp_path / "m",
            archive_max_bytes=4 * 1024 * 1024,
        )
    assert entries(tmp_path) == []


@pytest.mark.slow
async def test_resets_are_retried(http_server: FileServer, tmp_path: Path) -> None:
    http_server.add("/reset/model.bin", WEIGHTS)
    proxy = FaultProxy(http_server.port, mode="reset", count=2)
    try:
        config = {"type": "http", "url": proxy.endpoint}
        path = await pull(config, "reset/model.bin", tmp_path / "m")
        assert path.read_bytes() == WEIGHTS
        assert proxy.faulted == 2
    finally:
        proxy.close()


@pytest.mark.slow
async def test_a_stall_times_out_and_a_cancel_stops_at_once(
    http_server: FileServer, tmp_path: Path
) -> None:
    http_server.add("/stall/model.bin", WEIGHTS)
    proxy = FaultProxy(http_server.port, mode="stall")
    try:
        config = {"type": "http", "url": proxy.endpoint, "read_timeout": "0.3", "max_attempts": 2}
        with pytest.raises(Unavailable, match="after 2 attempts"):
            await pull(config, "stall/model.bin", tmp_path / "timeout")
        slow = {"type": "http", "url": proxy.endpoint, "read_timeout": "300"}
        task = asyncio.create_task(pull(slow, "stall/model.bin", tmp_path / "cancelled"))
        await asyncio.to_thread(proxy.connected.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        assert entries(tmp_path) == []
    finally:
        proxy.close()
