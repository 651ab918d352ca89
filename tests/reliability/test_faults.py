"""Faults between the sidecar and its storage, its model server and its disk.

Each case checks what a caller (ModelMesh) sees, that nothing partial is left
under ROOT_MODEL_DIR, and that the next load of the same model works.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from stack import (
    MODEL_TEXT,
    Record,
    load_code,
    load_request,
    unload,
    wait_for,
    write_store_config,
)

from mesh_sidecar.testing.checks import files_under, infer_text, server_models, stray_entries
from mesh_sidecar.testing.faultproxy import FaultProxy
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import (
    SIDECAR,
    ServerHandle,
    SidecarHandle,
    free_port,
    run_sidecar,
    start_process,
    wait_for_port,
)
from mesh_sidecar.testing.storage import S3Server

pytestmark = pytest.mark.slow

SLOW_DOWN = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
    b"<Message>Please reduce your request rate.</Message></Error>"
)
INTERNAL = b"<Error><Code>InternalError</Code><Message>We encountered an error</Message></Error>"


def model_files(root: Path, model_id: str) -> list[str]:
    return [p for p in files_under(root) if p.split("/")[0] == model_id]


def check_next_load_works(sidecar: SidecarHandle, server_port: int, model_id: str) -> None:
    assert load_code(sidecar, model_id) == "OK"
    assert infer_text(f"127.0.0.1:{server_port}", model_id, ["world"]) == [MODEL_TEXT + "world"]
    unload(sidecar, model_id)
    assert files_under(sidecar.root_model_dir) == []


# (case, proxy settings, code of the first load): faults that retries get past answer OK.
CAMPAIGN = pytest.mark.campaign
STORAGE_FAULTS: list[Any] = [
    ("connection reset x2, then recovers", {"mode": "reset", "count": 2}, "OK"),
    pytest.param(
        "answer truncated x2, then recovers", {"mode": "truncate", "count": 2}, "OK", marks=CAMPAIGN
    ),
    pytest.param(
        "slow link (256 KiB/s)",
        {"mode": "slow", "bytes_per_second": 256 * 1024},
        "OK",
        marks=CAMPAIGN,
    ),
    (
        "HTTP 503 SlowDown x3, then recovers",
        {"mode": "http", "count": 3, "http_status": "503 Slow Down", "http_body": SLOW_DOWN},
        "OK",
    ),
    pytest.param(
        "HTTP 500 x2, then recovers",
        {"mode": "http", "count": 2, "http_status": "500 Internal Server Error"},
        "OK",
        marks=CAMPAIGN,
    ),
    ("connection reset on every attempt", {"mode": "reset"}, "UNAVAILABLE"),
    pytest.param("stalled on every attempt", {"mode": "stall"}, "UNAVAILABLE", marks=CAMPAIGN),
    pytest.param(
        "HTTP 503 on every attempt",
        {"mode": "http", "http_status": "503 Slow Down", "http_body": SLOW_DOWN},
        "UNAVAILABLE",
        marks=CAMPAIGN,
    ),
    pytest.param(
        "HTTP 500 on every attempt",
        {"mode": "http", "http_status": "500 Internal Server Error", "http_body": INTERNAL},
        "UNAVAILABLE",
        marks=CAMPAIGN,
    ),
]


@pytest.mark.parametrize(
    ("case", "fault", "expected"),
    STORAGE_FAULTS,
    ids=[(c.values if hasattr(c, "values") else c)[0] for c in STORAGE_FAULTS],
)
def test_storage_faults(
    s3_sidecar: SidecarHandle,
    simple_string_server: ServerHandle,
    proxy: FaultProxy,
    record: Record,
    case: str,
    fault: dict[str, Any],
    expected: str,
) -> None:
    for name, value in fault.items():
        setattr(proxy, name, value)
    started = time.monotonic()
    code = load_code(s3_sidecar, "m1")
    seconds = time.monotonic() - started
    root = s3_sidecar.root_model_dir
    left = stray_entries(root) if code == "OK" else files_under(root)
    record(
        "storage fault (S3 via fault proxy)",
        case,
        f"{code}; {proxy.faulted} connections faulted; partial left: {len(left)}",
        code=code,
        seconds=round(seconds, 1),
    )
    assert code == expected
    assert left == []
    if code == "OK":
        assert server_models(f"127.0.0.1:{simple_string_server.port}") == {"m1"}
    unload(s3_sidecar, "m1")  # ModelMesh unloads after a failed load too
    proxy.mode = "pass"
    check_next_load_works(s3_sidecar, simple_string_server.port, "m1")


@CAMPAIGN
def test_storage_down_for_the_whole_load(
    simple_string_server: ServerHandle,
    sidecar_dirs: SidecarDirs,
    s3_models: S3Server,
    record: Record,
) -> None:
    proxy = FaultProxy(s3_models.port)
    port = proxy.port
    proxy.close()  # nothing listens there: connection refused on every attempt
    write_store_config(sidecar_dirs, s3_models, f"http://127.0.0.1:{port}", max_attempts="3")
    with run_sidecar("simple-string", simple_string_server.port, *sidecar_dirs.as_args()) as sc:
        code = load_code(sc, "m1")
        left = files_under(sidecar_dirs.root_model_dir)
        record("storage fault (S3 via fault proxy)", "storage down (refused)", code, code=code)
        assert code == "UNAVAILABLE"
        assert left == []
        write_store_config(sidecar_dirs, s3_models, s3_models.endpoint)
        unload(sc, "m1")
        check_next_load_works(sc, simple_string_server.port, "m1")


def start_server(port: int) -> ServerHandle:
    """A simple-string server on `port` (a restart reuses the port, as a pod's container does)."""
    proc = start_process(
        [*SIDECAR, "simple-string-server", "--port", str(port)], name="simple-string"
    )
    wait_for_port(port, proc)
    return ServerHandle(port, proc)


@pytest.fixture
def servers() -> Iterator[list[ServerHandle]]:
    """Model servers a test starts, killed and restarted at will; all stopped at the end."""
    started: list[ServerHandle] = []
    yield started
    for server in started:
        server.process.stop()


@CAMPAIGN
def test_model_server_killed_mid_load_then_restarted(
    servers: list[ServerHandle],
    sidecar_dirs: SidecarDirs,
    s3_models: S3Server,
    record: Record,
) -> None:
    port = free_port()
    servers.append(start_server(port))
    proxy = FaultProxy(s3_models.port, mode="slow", bytes_per_second=512 * 1024)
    write_store_config(sidecar_dirs, s3_models, proxy.endpoint)
    root = sidecar_dirs.root_model_dir
    try:
        with run_sidecar("simple-string", port, *sidecar_dirs.as_args()) as sidecar:
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(load_code, sidecar, "m1")
                wait_for(lambda: stray_entries(root) != [], what="the pull to start")
                servers[0].process.stop(signal.SIGKILL)
                code = pending.result()
            left = files_under(root)
            record("model server fault", "killed (SIGKILL) mid-load", code, code=code)
            assert code == "UNAVAILABLE"
            assert left == []
            unload(sidecar, "m1")
            servers.append(start_server(port))
            proxy.mode = "pass"
            check_next_load_works(sidecar, port, "m1")
    finally:
        proxy.close()


def test_model_server_restarted_after_ready_gets_its_models_back(
    servers: list[ServerHandle],
    sidecar_dirs: SidecarDirs,
    s3_models: S3Server,
    record: Record,
) -> None:
    """A restarted model server has lost every model ModelMesh believes loaded here; the
    sidecar loads them again from the files it kept, so its answers stay true."""
    port = free_port()
    servers.append(start_server(port))
    write_store_config(sidecar_dirs, s3_models, s3_models.endpoint)
    address = f"127.0.0.1:{port}"
    with run_sidecar("simple-string", port, *sidecar_dirs.as_args()) as sidecar:
        assert load_code(sidecar, "m1") == "OK"
        assert load_code(sidecar, "m2") == "OK"
        servers[0].process.stop(signal.SIGKILL)
        servers.append(start_server(port))
        started = time.monotonic()
        wait_for(lambda: server_models(address) == {"m1", "m2"}, what="models to be restored")
        restored_in = time.monotonic() - started
        record(
            "model server fault",
            "restarted after READY (2 models loaded)",
            f"both models loaded again by the sidecar in {restored_in:.1f} s",
            code="OK",
        )
        assert infer_text(address, "m1", ["world"]) == [MODEL_TEXT + "world"]
        # A repeated load and modelSize agree with the server again.
        assert load_code(sidecar, "m2") == "OK"
        unload(sidecar, "m1")
        unload(sidecar, "m2")
        assert server_models(address) == set()
        assert files_under(sidecar_dirs.root_model_dir) == []
        check_next_load_works(sidecar, port, "m1")


def test_sidecar_sigkilled_mid_pull_then_restarted(
    simple_string_server: ServerHandle,
    sidecar_dirs: SidecarDirs,
    s3_models: S3Server,
    record: Record,
) -> None:
    proxy = FaultProxy(s3_models.port, mode="slow", bytes_per_second=256 * 1024)
    write_store_config(sidecar_dirs, s3_models, proxy.endpoint)
    root = sidecar_dirs.root_model_dir
    server_port = simple_string_server.port
    try:
        with run_sidecar("simple-string", server_port, *sidecar_dirs.as_args()) as sidecar:
            assert load_code(sidecar, "m0", path="rel/big") == "OK"  # stale after the crash
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(load_code, sidecar, "m1")
                wait_for(lambda: stray_entries(root) != [], what="the pull to start")
                sidecar.process.stop(signal.SIGKILL)
                code = pending.result()
            partial = stray_entries(root)
            assert partial, "the kill left no partial dir to clean up: the test proves nothing"
        proxy.mode = "pass"
        with run_sidecar("simple-string", server_port, *sidecar_dirs.as_args()) as sidecar:
            left = files_under(root)
            stale = server_models(f"127.0.0.1:{server_port}")
            record(
                "sidecar fault",
                "SIGKILL mid-pull, restarted",
                f"caller saw {code}; {len(partial)} partial dir(s) after the kill; "
                f"{len(left)} entries and {len(stale)} stale models after the restart",
                code=code,
            )
            assert code == "UNAVAILABLE"
            assert left == []  # the purge before READY removed the partial dir and m0's files
            assert stale == set()  # and unloaded m0 from the model server
            check_next_load_works(sidecar, server_port, "m1")
    finally:
        proxy.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of our own (needs root and mount)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_disk_full_during_a_pull(
    simple_string_server: ServerHandle,
    sidecar_dirs: SidecarDirs,
    s3_models: S3Server,
    small_disk: Path,
    record: Record,
) -> None:
    write_store_config(sidecar_dirs, s3_models, s3_models.endpoint)
    port = simple_string_server.port
    dirs = (small_disk, sidecar_dirs.storage_config_dir, sidecar_dirs.pvc_mounts_dir)
    with run_sidecar("simple-string", port, *dirs) as sidecar:
        code = load_code(sidecar, "big", path="rel/big")  # 3 MiB onto 2 MiB
        left = files_under(small_disk)
        record("disk full", "3 MiB model onto a 2 MiB tmpfs", code, code=code)
        assert code == "RESOURCE_EXHAUSTED"
        assert left == []
        unload(sidecar, "big")
        # Space taken by something else: the pull of a smaller model fails the same way...
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * (1536 * 1024))
        code = load_code(sidecar, "m1")
        record("disk full", "768 KiB model with 512 KiB free", code, code=code)
        assert code == "RESOURCE_EXHAUSTED"
        assert files_under(small_disk) == ["filler"]
        unload(sidecar, "m1")
        # ...and works once the space is back.
        filler.unlink()
        check_next_load_works(sidecar, port, "m1")


def test_loads_cancelled_at_random_points(
    s3_sidecar: SidecarHandle,
    simple_string_server: ServerHandle,
    proxy: FaultProxy,
    record: Record,
) -> None:
    proxy.mode = "slow"
    proxy.bytes_per_second = 1024 * 1024  # a load takes about 0.8 s
    rng = random.Random(9)
    root = s3_sidecar.root_model_dir
    address = f"127.0.0.1:{simple_string_server.port}"
    outcomes: dict[str, int] = {}
    tries = 8
    for _ in range(tries):
        deadline = rng.uniform(0.01, 1.2)
        try:
            s3_sidecar.stub.loadModel(load_request("m1"), timeout=deadline)
            code = "OK"
        except grpc.RpcError as exc:
            code = exc.code().name
        outcomes[code] = outcomes.get(code, 0) + 1
        # Either the load finished before the cancel reached it, or nothing is left.
        wait_for(lambda: stray_entries(root) == [], what="the cancelled pull to clean up")
        loaded = server_models(address) == {"m1"}
        assert loaded or files_under(root) == [], f"after {code}: {files_under(root)}"
        unload(s3_sidecar, "m1")  # as ModelMesh does after a failed or timed-out load
        assert files_under(root) == []
        assert server_models(address) == set()
    record(
        "cancellation",
        "loadModel cancelled by the caller's deadline at random points (0-1.2 s)",
        ", ".join(f"{n} x {c}" for c, n in sorted(outcomes.items())),
        tries=tries,
    )
    proxy.mode = "pass"
    check_next_load_works(s3_sidecar, simple_string_server.port, "m1")
