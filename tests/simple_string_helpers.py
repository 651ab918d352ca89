"""Helpers of the simple-string tests: a server with chosen flags, and model dirs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mesh_sidecar.runtimes.simple_string import SimpleStringAdapter
from mesh_sidecar.testing.processes import (
    ServerHandle,
    free_port,
    start_process,
    wait_for_port,
)


@contextmanager
def simple_string_server(*flags: str) -> Iterator[ServerHandle]:
    """The server started by the runtime's own `server_command`, with extra `flags`."""
    port = free_port()
    command = SimpleStringAdapter.server_command(port, Path("."))
    assert command is not None
    proc = start_process([*command, *flags], name="simple-string")
    try:
        wait_for_port(port, proc)
        yield ServerHandle(port, proc)
    finally:
        proc.stop()


def address(server: ServerHandle) -> str:
    return f"127.0.0.1:{server.port}"


def make_model(root: Path, name: str, text: str) -> Path:
    """A model dir `root/name` holding model.txt with `text`."""
    model = root / name
    model.mkdir(parents=True)
    (model / "model.txt").write_text(text)
    return model
