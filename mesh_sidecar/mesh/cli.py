"""`mesh-sidecar mesh`: the embedded coordinator (ModelMesh's API and routing on one machine).

    mesh-sidecar mesh --port 8033 --spawn 2 --runtime simple-string
    mesh-sidecar mesh --port 8033 --instance 127.0.0.1:8085=127.0.0.1:8001

Spawned instances inherit the environment (STORAGE_CONFIG_DIR, PVC_MOUNTS_DIR,
CONTAINER_MEM_REQ_BYTES, ...) and each gets its own dir under ROOT_MODEL_DIR.
Once ready, one JSON line on stdout gives the port and each instance's
addresses and process ids. Ctrl-C (or SIGTERM) stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from mesh_sidecar.aio import run_server
from mesh_sidecar.errors import SidecarError
from mesh_sidecar.mesh.app import parse_instance, start_mesh
from mesh_sidecar.mesh.coordinator import MeshSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=8033, help="gRPC port (ModelMesh's default 8033)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--spawn", type=int, default=0, metavar="N", help="start N instances")
    parser.add_argument("--runtime", help="runtime of the spawned instances, e.g. simple-string")
    parser.add_argument(
        "--instance",
        action="append",
        default=[],
        metavar="ADAPTER_ADDR=RUNTIME_ADDR",
        help="a running sidecar and its model server (repeatable)",
    )
    parser.add_argument(
        "--root-model-dir",
        type=Path,
        default=Path(os.environ["ROOT_MODEL_DIR"]) if os.environ.get("ROOT_MODEL_DIR") else None,
        help="parent of the spawned instances' model dirs (default: $ROOT_MODEL_DIR or a temp dir)",
    )
    parser.add_argument("--log-dir", type=Path, help="write spawned processes' output here")
    parser.add_argument(
        "--load-timeout-ms", type=int, help="override the instances' modelLoadingTimeoutMs"
    )
    parser.add_argument(
        "--hot-requests-per-s",
        type=int,
        default=MeshSettings.hot_requests_per_s,
        help="a model with this many requests in one second gets a second copy",
    )


def run(args: argparse.Namespace) -> int:
    if args.spawn < 0 or (args.spawn and not args.runtime):
        print("mesh: --spawn N needs --runtime NAME", file=sys.stderr)
        return 2
    if not args.spawn and not args.instance:
        print("mesh: give --spawn N --runtime NAME, or --instance ADAPTER=RUNTIME", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return run_server(_serve(args))
    except (SidecarError, ValueError) as exc:
        print(f"mesh: {exc}", file=sys.stderr)
        return 1


async def _serve(args: argparse.Namespace) -> int:
    instances = [parse_instance(spec, args.spawn + i) for i, spec in enumerate(args.instance)]
    settings = MeshSettings(
        load_timeout_ms=args.load_timeout_ms, hot_requests_per_s=args.hot_requests_per_s
    )
    with tempfile.TemporaryDirectory(prefix="mesh-models-") as scratch:
        root = args.root_model_dir or Path(scratch)
        mesh = await start_mesh(
            port=args.port,
            host=args.host,
            spawn=args.spawn,
            runtime=args.runtime,
            instances=instances,
            root_model_dir=root,
            log_dir=args.log_dir,
            settings=settings,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(json.dumps(mesh.describe()), flush=True)
        try:
            await stop.wait()
        finally:
            await mesh.stop()
    return 0
