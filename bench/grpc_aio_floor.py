"""The floor under the coordinator's figures: what one grpc.aio call costs on this machine.

Starts a grpc.aio server whose only method answers the request bytes as they
came (no protobuf, no work), then sends it `--rate` raw-bytes requests per
second for `--duration` seconds from a grpc.aio client, open loop, and prints
the CPU each process used per second and the latency. A request through the
coordinator is four such call ends (bench client, coordinator server side,
coordinator client side, model server), so four times the per-end cost here
is about the least the density bench's chain can cost.

    .venv/bin/python bench/grpc_aio_floor.py [--rate 1000 --duration 10 --loop asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import grpc
import uvloop
from proc_stats import cpu_seconds, percentile

from mesh_sidecar.testing.processes import free_port

METHOD = "/bench.Echo/Echo"


async def serve(port: int) -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def load(port: int, server_pid: int, rate: float, duration: float) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    await channel.channel_ready()
    call = channel.unary_unary(METHOD)
    body = b"\x0a\x0cmodel-000123" * 4
    for _ in range(200):  # warm up
        await call(body, timeout=10)
    latencies: list[float] = []
    pending: set[asyncio.Task[None]] = set()

    async def one(scheduled: float) -> None:
        await call(body, metadata=(("mm-model-id", "model-000123"),), timeout=30)
        latencies.append((time.perf_counter() - scheduled) * 1000)

    client_before, server_before = cpu_seconds(os.getpid()), cpu_seconds(server_pid)
    start = time.perf_counter()
    for index in range(int(rate * duration)):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - start
    client = (cpu_seconds(os.getpid()) - client_before) / elapsed
    server = (cpu_seconds(server_pid) - server_before) / elapsed
    await channel.close()
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    versions = f"grpcio {grpc.__version__}, {loop}"
    print(f"grpc.aio echo, {rate:.0f} requests/s for {duration:.0f}s ({versions})")
    print(f"  CPU cores used: client {client:.2f}, server {server:.2f}")
    per_client, per_server = client / rate * 1000, server / rate * 1000
    print(f"  CPU per call end: client {per_client:.3f} ms, server {per_server:.3f} ms")
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    print(f"  latency: p50 {p50:.3f} ms, p99 {p99:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of both processes (default uvloop, as the mesh's servers use)",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the server process
    args = parser.parse_args()
    run = uvloop.run if args.loop == "uvloop" else asyncio.run
    if args.serve:
        run(serve(args.serve))
        return
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(port), "--loop", args.loop]
    server = subprocess.Popen(command)
    try:
        run(load(port, server.pid, args.rate, args.duration))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
