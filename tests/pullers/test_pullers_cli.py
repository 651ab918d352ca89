"""`mesh-sidecar pull` as people and init containers run it: a real process, real servers."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest
from trees import entries, tree

from mesh_sidecar.testing.archives import good_tar, hostile_archives
from mesh_sidecar.testing.storage import FileServer, S3Server

pytestmark = pytest.mark.slow

WEIGHTS = os.urandom(2048)


def run_pull(*args: str, stderr: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mesh_sidecar.adapter.cli", "pull", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def s3(s3_server: S3Server) -> S3Server:
    objects = {
        "cli/mnist/model.bin": WEIGHTS,
        "cli/mnist/sub/empty.txt": b"",
        "cli/mnist2/other.bin": b"sibling",
        "cli/packed/model.tar.gz": good_tar(),
    }
    for key, body in objects.items():
        s3_server.admin.put_object(Bucket="models", Key=key, Body=body)
    return s3_server


def config_file(tmp_path: Path, config: dict[str, Any]) -> str:
    path = tmp_path / "storage-config.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_a_prefix_lands_directly_in_dest(s3: S3Server, tmp_path: Path) -> None:
    cfg = config_file(tmp_path, s3.config(bucket=None))
    done = run_pull("s3://models/cli/mnist", str(tmp_path / "dest"), "--storage-config", cfg)
    assert (done.returncode, done.stderr) == (0, "")
    assert tree(tmp_path / "dest") == {"model.bin": WEIGHTS, "sub/empty.txt": b""}


def test_a_single_object_lands_under_its_name_in_an_existing_empty_dir(
    s3: S3Server, tmp_path: Path
) -> None:
    cfg = config_file(tmp_path, s3.config())
    dest = tmp_path / "mounted"
    dest.mkdir()
    done = run_pull("s3://models/cli/mnist/model.bin", str(dest), "--storage-config", cfg)
    assert done.returncode == 0, done.stderr
    assert entries(dest) == ["model.bin"]


def test_an_archive_is_extracted_into_dest(s3: S3Server, tmp_path: Path) -> None:
    cfg = config_file(tmp_path, s3.config())
    done = run_pull(
        "s3://models/cli/packed/model.tar.gz", str(tmp_path / "d"), "--storage-config", cfg
    )
    assert done.returncode == 0, done.stderr
    assert sorted(tree(tmp_path / "d")) == ["1/model.onnx", "config.pbtxt", "empty"]


def test_bad_credentials_fail_in_one_line_without_the_secret(s3: S3Server, tmp_path: Path) -> None:
    secret = "Wrong+Secret/Key0123456789abcdefghijklmn"
    cfg = config_file(tmp_path, s3.config(secret_access_key=secret))
    done = run_pull("s3://models/cli/mnist", str(tmp_path / "dest"), "--storage-config", cfg)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("mesh-sidecar pull: error: ")
    assert "SignatureDoesNotMatch" in done.stderr
    assert secret not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "dest").exists()


def test_nothing_at_the_path_fails_and_keeps_dest_as_it_was(s3: S3Server, tmp_path: Path) -> None:
    cfg = config_file(tmp_path, s3.config())
    dest = tmp_path / "dest"
    dest.mkdir()
    done = run_pull("s3://models/cli/mnis", str(dest), "--storage-config", cfg)
    assert done.returncode == 1
    assert "no objects" in done.stderr
    assert entries(dest) == []


def test_a_non_empty_dest_is_refused(s3: S3Server, tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "keep.txt").write_text("mine")
    cfg = config_file(tmp_path, s3.config())
    done = run_pull("s3://models/cli/mnist", str(tmp_path / "dest"), "--storage-config", cfg)
    assert done.returncode == 1
    assert entries(tmp_path / "dest") == ["keep.txt"]


@pytest.mark.parametrize(
    "args",
    [
        ["ftp://host/x", "dest"],
        ["s3:///no-bucket", "dest"],
        ["gs://bucket/x", "dest", "--storage-config", "CONFIG"],  # a type that does not match
        ["s3://b/x", "dest", "--storage-config", "MISSING"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    cfg = config_file(tmp_path, {"type": "s3"})
    args = [a.replace("CONFIG", cfg).replace("MISSING", str(tmp_path / "none.json")) for a in args]
    done = run_pull(*args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", ["traversal.tar.gz", "symlink.zip"])
def test_hostile_archives_over_http_are_refused(
    http_server: FileServer, tmp_path: Path, name: str
) -> None:
    http_server.add(f"/cli-hostile/{name}", hostile_archives()[name])
    dest = tmp_path / "box" / "dest"
    dest.mkdir(parents=True)
    done = run_pull(f"{http_server.url}/cli-hostile/{name}", str(dest))
    assert done.returncode == 1
    assert "refusing" in done.stderr
    assert entries(tmp_path) == ["box", "box/dest"]


def test_progress_bar_on_a_terminal_only(http_server: FileServer, tmp_path: Path) -> None:
    http_server.add("/cli/progress.bin", WEIGHTS)
    quiet = run_pull(f"{http_server.url}/cli/progress.bin", str(tmp_path / "quiet"))
    assert (quiet.returncode, quiet.stderr) == (0, "")
    controller, terminal = pty.openpty()
    # A terminal of 30 rows and 120 columns (a fresh pty has none, and bars need a width).
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    try:
        shown = run_pull(
            f"{http_server.url}/cli/progress.bin", str(tmp_path / "tty"), stderr=terminal
        )
        os.close(terminal)
        terminal = -1
        output = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    assert shown.returncode == 0
    assert b"1 files" in output and b"2.00k" in output


def test_a_local_dir_is_linked_and_a_local_archive_extracted(tmp_path: Path) -> None:
    model = tmp_path / "src" / "model"
    (model / "sub").mkdir(parents=True)
    (model / "sub" / "weights.bin").write_bytes(WEIGHTS)
    archive = tmp_path / "src" / "packed.tar.gz"
    archive.write_bytes(good_tar())
    assert run_pull(str(model), str(tmp_path / "linked")).returncode == 0
    assert tree(tmp_path / "linked") == {"sub/weights.bin": WEIGHTS}
    assert run_pull(str(archive), str(tmp_path / "unpacked")).returncode == 0
    assert sorted(tree(tmp_path / "unpacked")) == ["1/model.onnx", "config.pbtxt", "empty"]
    assert archive.is_file() and not archive.is_symlink()  # the source is untouched
