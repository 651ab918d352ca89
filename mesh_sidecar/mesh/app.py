"""A running coordinator: its instances (spawned or given), the Coordinator and its gRPC server."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from mesh_sidecar.mesh.coordinator import Coordinator, MeshSettings
from mesh_sidecar.mesh.instances import Instance
from mesh_sidecar.mesh.server import start_mesh_server
from mesh_sidecar.mesh.spawn import SpawnedInstance, spawn_instances


@dataclass
class RunningMesh:
    """Everything `start_mesh` started; `stop()` ends it all."""

    port: int
    coordinator: Coordinator
    server: grpc.aio.Server
    spawned: list[SpawnedInstance] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """The ports and processes, as printed by `mesh-sidecar mesh` once ready."""
        pids = {s.name: [p.pid for p in s.processes] for s in self.spawned}
        return {
            "event": "mesh_ready",
            "port": self.port,
            "instances": [
                {
                    "name": st.name,
                    "adapter_address": st.instance.adapter_address,
                    "runtime_address": st.instance.runtime_address,
                    "pids": pids.get(st.name, []),
                }
                for st in self.coordinator.states.values()
            ],
        }

    async def stop(self) -> None:
        await self.server.stop(grace=1.0)
        await self.coordinator.stop()
        await asyncio.gather(*(s.stop() for s in self.spawned), return_exceptions=True)


def parse_instance(spec: str, index: int) -> Instance:
    """ADAPTER_ADDR=RUNTIME_ADDR (host:port each) -> an Instance."""
    adapter, sep, runtime = spec.partition("=")
    if not sep or not adapter or not runtime:
        raise ValueError(f"--instance wants ADAPTER_ADDR=RUNTIME_ADDR, got {spec!r}")
    return Instance(f"instance-{index}", adapter, runtime)


async def start_mesh(
    *,
    port: int,
    host: str = "127.0.0.1",
    spawn: int = 0,
    runtime: str | None = None,
    instances: Sequence[Instance] = (),
    root_model_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    settings: MeshSettings | None = None,
) -> RunningMesh:
    """Spawn `spawn` instances of `runtime` (plus any given), wait for READY, then serve."""
    spawned: list[SpawnedInstance] = []
    if spawn:
        if runtime is None or root_model_dir is None:
            raise ValueError("spawning instances needs a runtime and a root model dir")
        spawned = await spawn_instances(spawn, runtime, root_model_dir, env, log_dir)
    all_instances = [s.instance() for s in spawned] + list(instances)
    coordinator = Coordinator(all_instances, settings)
    try:
        await coordinator.start()
        server, bound = await start_mesh_server(coordinator, host, port)
    except BaseException:
        await coordinator.stop()
        await asyncio.gather(*(s.stop() for s in spawned), return_exceptions=True)
        raise
    for instance in spawned:
        instance.supervise()
    return RunningMesh(bound, coordinator, server, spawned)
