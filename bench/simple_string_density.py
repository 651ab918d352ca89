"""Density of the simple-string server: load N models, print its RSS and the time taken.

    python bench/simple_string_density.py [--models 20000] [--concurrency 64] [--api v2|mmesh]

Starts the server on a free port, writes N model dirs to a temp dir, loads
them all (KServe V2 RepositoryModelLoad with the `path` parameter, or
mmesh.ModelRuntime loadModel), checks one inference, and prints the server's
RSS before and after. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.mmesh import model_runtime_pb2_grpc as pb_grpc
from mesh_sidecar.runtimes.simple_string import SimpleStringAdapter


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_ready(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    for _ in range(300):
        try:
            if (await stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=1)).ready:
                return
        except grpc.RpcError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("server did not become ready")


async def load_all(
    load_one: Callable[[int], Awaitable[object]], count: int, concurrency: int
) -> None:
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            await load_one(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def measure(args: argparse.Namespace, models: Path) -> None:
    port = free_port()
    command = SimpleStringAdapter.server_command(port, models)
    assert command is not None
    proc = await asyncio.create_subprocess_exec(*command, "--log-level", "WARNING")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            v2 = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            runtime = pb_grpc.ModelRuntimeStub(channel)
            await wait_ready(v2)
            idle = rss_bytes(proc.pid)

            async def load_v2(i: int) -> object:
                request = service_pb2.RepositoryModelLoadRequest(model_name=f"m{i}")
                request.parameters["path"].string_param = str(models / f"m{i}")
                return await v2.RepositoryModelLoad(request)

            async def load_mmesh(i: int) -> object:
                return await runtime.loadModel(
                    pb.LoadModelRequest(modelId=f"m{i}", modelPath=str(models / f"m{i}"))
                )

            started = time.perf_counter()
            await load_all(
                load_v2 if args.api == "v2" else load_mmesh, args.models, args.concurrency
            )
            elapsed = time.perf_counter() - started
            loaded = rss_bytes(proc.pid)
            index = await v2.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True))
            request = service_pb2.ModelInferRequest(model_name=f"m{args.models - 1}")
            request.inputs.add(
                name="INPUT", datatype="BYTES", shape=[1]
            ).contents.bytes_contents.append(b"ok")
            answer = await v2.ModelInfer(request)
    finally:
        proc.terminate()
        await proc.wait()
    mib = 1 << 20
    print(f"api: {args.api}, models: {args.models}, concurrency: {args.concurrency}")
    print(f"loaded (index, ready): {len(index.models)}")
    print(f"inference on the last model: {answer.raw_output_contents[0][4:]!r}")
    print(f"RSS idle: {idle / mib:.1f} MiB")
    print(f"RSS with {args.models} models: {loaded / mib:.1f} MiB")
    print(f"RSS per model: {(loaded - idle) / args.models:.0f} bytes")
    print(f"load time: {elapsed:.2f} s ({args.models / elapsed:.0f} loads/s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--api", choices=["v2", "mmesh"], default="v2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        for i in range(args.models):
            (models / f"m{i}").mkdir()
            (models / f"m{i}" / "model.txt").write_text(f"model {i}: ")
        asyncio.run(measure(args, models))
