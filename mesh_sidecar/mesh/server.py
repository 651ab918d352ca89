"""The coordinator's gRPC port: mmesh.ModelMesh plus the inference proxy for everything else."""

from __future__ import annotations

import grpc

from mesh_sidecar.errors import Unavailable
from mesh_sidecar.mesh.api import ModelMeshServicer
from mesh_sidecar.mesh.coordinator import Coordinator
from mesh_sidecar.mesh.instances import CHANNEL_OPTIONS
from mesh_sidecar.mesh.proxy import InferenceProxy
from mesh_sidecar.mmesh import model_mesh_pb2_grpc as mm_grpc


async def start_mesh_server(
    coordinator: Coordinator, host: str, port: int
) -> tuple[grpc.aio.Server, int]:
    """Serve the coordinator on host:port (0 picks a free port); returns the server and port."""
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    # The ModelMesh methods are registered by name, so they win over the catch-all proxy.
    mm_grpc.add_ModelMeshServicer_to_server(ModelMeshServicer(coordinator), server)
    server.add_generic_rpc_handlers((InferenceProxy(coordinator),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise Unavailable(f"cannot listen on {host}:{port}")
    await server.start()
    return server, bound
