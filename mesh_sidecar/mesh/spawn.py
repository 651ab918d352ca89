"""Starts serving instances for the coordinator: a model server plus a sidecar, per instance."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mesh_sidecar.errors import FailedPrecondition
from mesh_sidecar.mesh.instances import Instance
from mesh_sidecar.runtimes.registry import RUNTIMES

STOP_GRACE_S = 5.0
RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0
STABLE_AFTER_S = 60.0  # a process that ran this long is restarted without delay growth

log = logging.getLogger("mesh_sidecar.mesh")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ProcessSpec:
    """How to (re)start one process of an instance."""

    role: str  # "server" or "sidecar"
    cmd: tuple[str, ...]
    env: Mapping[str, str]
    output: IO[bytes] | None


@dataclass
class SpawnedInstance:
    """One model server + sidecar pair started by the coordinator.

    Like a kubelet restarting a pod's containers, `supervise()` starts again a
    process that exits while the instance is in use; the restarted sidecar
    purges and answers READY, and the coordinator takes the instance back.
    """

    name: str
    adapter_port: int
    runtime_port: int
    model_dir: Path
    specs: list[ProcessSpec] = field(default_factory=list)
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    _supervisor: asyncio.Task[None] | None = None

    def instance(self) -> Instance:
        return Instance(
            self.name, f"127.0.0.1:{self.adapter_port}", f"127.0.0.1:{self.runtime_port}"
        )

    async def _start(self, spec: ProcessSpec) -> asyncio.subprocess.Process:
        # Own session: Ctrl-C reaches the coordinator only, which stops these in order.
        return await asyncio.create_subprocess_exec(
            *spec.cmd,
            env=dict(spec.env),
            stdout=spec.output,
            stderr=spec.output,
            start_new_session=True,
        )

    async def start(self) -> None:
        for spec in self.specs:
            self.processes.append(await self._start(spec))

    def supervise(self) -> None:
        """Restart processes that exit, until `stop()`."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._restart_exited())

    async def _restart_exited(self) -> None:
        delay, last_restart = RESTART_DELAY_S, 0.0
        loop = asyncio.get_running_loop()
        while True:
            waits = {asyncio.ensure_future(p.wait()): i for i, p in enumerate(self.processes)}
            try:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
            if loop.time() - last_restart > STABLE_AFTER_S:
                delay = RESTART_DELAY_S
            last_restart = loop.time()
            for finished in done:
                index = waits[finished]
                spec = self.specs[index]
                log.warning(
                    "%s %s exited with %s: restarting it in %.0fs",
                    self.name,
                    spec.role,
                    self.processes[index].returncode,
                    delay,
                )
                await asyncio.sleep(delay)
                self.processes[index] = await self._start(spec)
            # A process that keeps failing is restarted less and less often.
            delay = min(delay * 2, MAX_RESTART_DELAY_S)

    async def stop(self) -> None:
        """SIGTERM both processes (the sidecar first), SIGKILL what is left after a grace period."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for proc in reversed(self.processes):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        for proc in self.processes:
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for spec in self.specs:
            if spec.output is not None:
                spec.output.close()


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "ab")  # closed by SpawnedInstance.stop


async def spawn_instance(
    index: int,
    runtime: str,
    root_model_dir: Path,
    env: Mapping[str, str],
    log_dir: Path | None = None,
) -> SpawnedInstance:
    """Start instance `index`: the runtime's own model server, then `mesh-sidecar serve`.

    Each instance gets its own ports and its own model dir under `root_model_dir`;
    everything else (STORAGE_CONFIG_DIR, PVC_MOUNTS_DIR, CONTAINER_MEM_REQ_BYTES,
    ...) is inherited from `env`.
    """
    adapter_cls = RUNTIMES.get(runtime)
    name = f"instance-{index}"
    model_dir = root_model_dir / name
    model_dir.mkdir(parents=True, exist_ok=True)
    runtime_port, adapter_port = free_port(), free_port()
    server_cmd = adapter_cls.server_command(runtime_port, model_dir)
    if server_cmd is None:
        raise FailedPrecondition(
            f"runtime {runtime!r} cannot start its own model server: start one per instance "
            "with its sidecar and pass --instance ADAPTER_ADDR=RUNTIME_ADDR"
        )
    sidecar_cmd = [sys.executable, "-m", "mesh_sidecar.adapter.cli", "serve", "--runtime", runtime]
    child_env = {
        **env,
        "ADAPTER_PORT": str(adapter_port),
        "RUNTIME_PORT": str(runtime_port),
        "RUNTIME_HOST": "127.0.0.1",
        "ROOT_MODEL_DIR": str(model_dir),
        "METRICS_PORT": "0",
    }
    spawned = SpawnedInstance(name, adapter_port, runtime_port, model_dir)
    for role, cmd in (("server", server_cmd), ("sidecar", sidecar_cmd)):
        output = None if log_dir is None else _open_log(log_dir / f"{name}-{role}.log")
        spawned.specs.append(ProcessSpec(role, tuple(cmd), child_env, output))
    await spawned.start()
    return spawned


async def spawn_instances(
    count: int,
    runtime: str,
    root_model_dir: Path,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> list[SpawnedInstance]:
    """Start `count` instances; stop any already started if one fails to start."""
    started: list[SpawnedInstance] = []
    try:
        for index in range(count):
            started.append(
                await spawn_instance(
                    index, runtime, root_model_dir, os.environ if env is None else env, log_dir
                )
            )
    except BaseException:
        await asyncio.gather(*(s.stop() for s in started), return_exceptions=True)
        raise
    return started
