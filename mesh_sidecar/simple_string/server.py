"""`mesh-sidecar simple-string-server`: one grpc.aio server, two services, one port.

It serves KServe V2 `inference.GRPCInferenceService` (what the sidecar's
`simple-string` runtime and inference clients use) and `mmesh.ModelRuntime`
(what makes it a custom runtime for the `forward` runtime) over one store of
models.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import grpc
from tritonclient.grpc import service_pb2_grpc

from mesh_sidecar.aio import run_server
from mesh_sidecar.mmesh import model_runtime_pb2_grpc
from mesh_sidecar.simple_string.inference import SimpleStringInferenceServicer
from mesh_sidecar.simple_string.model_runtime import (
    RuntimeLimits,
    SimpleStringModelRuntimeServicer,
)
from mesh_sidecar.simple_string.models import ModelStore

log = logging.getLogger("mesh_sidecar.simple_string")

#: How long in-flight calls get to finish after SIGTERM.
SHUTDOWN_GRACE_SECONDS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's command-line flags."""
    defaults = RuntimeLimits()
    parser.add_argument("--port", type=int, required=True, help="gRPC port")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--model-repository",
        type=Path,
        help="dir of model dirs, used when a load request gives no path",
    )
    parser.add_argument(
        "--capacity-bytes",
        type=int,
        default=defaults.capacity_bytes,
        help="capacityInBytes of runtimeStatus (default %(default)s)",
    )
    parser.add_argument(
        "--max-loading-concurrency",
        type=int,
        default=defaults.max_loading_concurrency,
        help="maxLoadingConcurrency of runtimeStatus (default %(default)s)",
    )
    parser.add_argument(
        "--loading-timeout-ms",
        type=int,
        default=defaults.loading_timeout_ms,
        help="modelLoadingTimeoutMs of runtimeStatus (default %(default)s)",
    )
    parser.add_argument(
        "--default-model-size",
        type=int,
        default=defaults.default_model_size,
        help="defaultModelSizeInBytes of runtimeStatus (default %(default)s)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=defaults.max_concurrency,
        help="> 0: limitModelConcurrency on, each load answers this maxConcurrency",
    )
    parser.add_argument("--log-level", default="INFO", help="log level (default INFO)")


async def serve(host: str, port: int, store: ModelStore, limits: RuntimeLimits) -> None:
    """Serve until SIGTERM or SIGINT, then drain in-flight calls."""
    server = grpc.aio.server()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        SimpleStringInferenceServicer(store), server
    )
    model_runtime_pb2_grpc.add_ModelRuntimeServicer_to_server(
        SimpleStringModelRuntimeServicer(store, limits), server
    )
    address = f"{host}:{port}"
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    log.info("simple-string server listening on %s", address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("stopping: draining in-flight calls")
    await server.stop(SHUTDOWN_GRACE_SECONDS)


def run(args: argparse.Namespace) -> int:
    """Entry point of `mesh-sidecar simple-string-server`."""
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    limits = RuntimeLimits(
        capacity_bytes=args.capacity_bytes,
        max_loading_concurrency=args.max_loading_concurrency,
        loading_timeout_ms=args.loading_timeout_ms,
        default_model_size=args.default_model_size,
        max_concurrency=args.max_concurrency,
    )
    try:
        limits.check()
    except ValueError as exc:
        print(f"simple-string-server: {exc}", file=sys.stderr)
        return 2
    store = ModelStore(args.model_repository)
    try:
        run_server(serve(args.host, args.port, store, limits))
    except OSError as exc:
        print(f"simple-string-server: {exc}", file=sys.stderr)
        return 1
    return 0
