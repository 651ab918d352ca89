"""`mesh-sidecar serve --runtime NAME`: the sidecar process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from mesh_sidecar.adapter.config import ConfigError, Settings, load_settings
from mesh_sidecar.adapter.logs import setup_logging
from mesh_sidecar.adapter.metrics import Metrics
from mesh_sidecar.adapter.models import ModelManager
from mesh_sidecar.adapter.server import ModelRuntimeServicer, ReadinessTracker
from mesh_sidecar.aio import run_server
from mesh_sidecar.errors import SidecarError
from mesh_sidecar.mmesh import model_runtime_pb2_grpc as pb_grpc
from mesh_sidecar.runtimes.base import RuntimeAdapter, RuntimeSettings
from mesh_sidecar.runtimes.registry import RUNTIMES

log = logging.getLogger("mesh_sidecar.serve")

DRAIN_SECONDS = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runtime", required=True, help="runtime adapter name (see `mesh-sidecar runtimes`)"
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an adapter-specific option (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"mesh-sidecar: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    options = dict(opt.partition("=")[::2] for opt in args.option)
    try:
        adapter_class = RUNTIMES.get(args.runtime)
    except SidecarError as exc:
        print(f"mesh-sidecar: {exc}", file=sys.stderr)
        return 2
    if settings.capacity_bytes < settings.min_capacity_for_modelmesh:
        log.warning(
            "capacity is below what ModelMesh accepts",
            extra={
                "capacity_bytes": settings.capacity_bytes,
                "minimum_bytes": settings.min_capacity_for_modelmesh,
            },
        )
    runtime = adapter_class(
        RuntimeSettings(
            address=settings.runtime_address,
            root_model_dir=settings.root_model_dir,
            model_size_multiplier=settings.modelsize_multiplier,
            options=options,
        )
    )
    run_server(serve(settings, runtime))
    return 0


async def serve(settings: Settings, runtime: RuntimeAdapter) -> None:
    """Serve until SIGTERM or SIGINT, then drain in-flight calls and stop."""
    metrics = Metrics()
    metrics.serve(settings.metrics_port)
    models = ModelManager(settings, runtime, metrics)
    health_servicer = health.aio.HealthServicer()
    readiness = ReadinessTracker(runtime, models, health_servicer)

    server = grpc.aio.server()
    pb_grpc.add_ModelRuntimeServicer_to_server(
        ModelRuntimeServicer(settings, models, readiness), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"[::]:{settings.adapter_port}")
    await server.start()
    log.info(
        "serving",
        extra={
            "event": "start",
            "port": settings.adapter_port,
            "runtime": runtime.name,
            "runtime_address": settings.runtime_address,
        },
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    becoming_ready = asyncio.create_task(readiness.run())
    await stop.wait()
    log.info("draining", extra={"event": "stop"})
    becoming_ready.cancel()
    await server.stop(DRAIN_SECONDS)
    await models.close()
    await runtime.close()
    log.info("stopped", extra={"event": "stopped"})
