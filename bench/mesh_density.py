"""Density: many simple-string models on two instances behind the embedded coordinator.

1. Registers and loads `--models` models (PVC-style dir) on 2 spawned
   instances, sized so that all of them fit.
2. Open-loop load: `--rate` ModelInfer requests per second for `--duration`
   seconds, each to a uniformly random model through the coordinator
   (mm-model-id); a comma-separated `--rate` runs one loop per rate. Latency
   counts from the scheduled send time, so a slow answer delays no one else's
   clock. Every answer's text is checked: a model
   answers "<id>:" + input, so a misrouted request is caught. The client is
   kept cheap (raw bytes, requests serialized up front): it runs on the same
   cores as what it measures.
3. Churn: `--churn-models` registered in all (more than fit), then the same
   open loop over all of them at `--churn-rate`: most requests miss, load just
   in time and evict the least recently used model.

Prints achieved rate, p50/p99, errors and misrouted answers for each phase,
load throughput and the RSS of every process. Before the open loops it runs
`grpc_aio_floor.py` for 5 s: the CPU one grpc.aio call end costs on the machine
right then, since the tail at 1,000/s follows it (docs/mesh.md).

    .venv/bin/python bench/mesh_density.py [--models 20000 --rate 1000 --duration 60
        --churn-models 100000 --churn-rate 200 --churn-duration 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import tritonclient.grpc.service_pb2 as v2
import uvloop
from proc_stats import cpu_seconds, percentile, rss_mb

from mesh_sidecar.mmesh import model_mesh_pb2 as pb
from mesh_sidecar.mmesh import model_mesh_pb2_grpc as pb_grpc
from mesh_sidecar.testing.mesh import MeshHandle, run_mesh

KEY = json.dumps({"storage_key": "localpvc", "model_type": {"name": "string"}})
UNIT = 8192


def model_id(i: int) -> str:
    return f"model-{i:06d}"


def make_models(claim: Path, count: int) -> None:
    for i in range(count):
        directory = claim / "models" / model_id(i)
        directory.mkdir(parents=True)
        (directory / "model.txt").write_text(f"{model_id(i)}:")


async def register_all(
    stub: pb_grpc.ModelMeshStub, ids: range, load: bool, concurrency: int = 64
) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    queue = iter(ids)

    async def worker() -> None:
        for i in queue:
            info = pb.ModelInfo(type="string", path=f"models/{model_id(i)}", key=KEY)
            request = pb.RegisterModelRequest(
                modelId=model_id(i), modelInfo=info, loadNow=load, sync=load
            )
            try:
                answer = await stub.registerModel(request, timeout=600)
                outcomes[pb.ModelStatusInfo.ModelStatus.Name(answer.status)] += 1
            except grpc.aio.AioRpcError as exc:
                outcomes[exc.code().name] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def infer_request(payload: bytes) -> bytes:
    """A serialized ModelInfer request with one BYTES element (the coordinator writes the id)."""
    request = v2.ModelInferRequest(model_name="")
    tensor = request.inputs.add(name="INPUT", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(payload)
    return request.SerializeToString()


async def open_loop(
    address: str,
    model_count: int,
    rate: float,
    duration: float,
    seed: int,
    latencies: list[float],
) -> dict[str, float]:
    """Send `rate` requests/s for `duration` s to random models; answer-checked.

    The client shares the machine's cores with what it measures, so it costs as
    little as it can: every request is serialized before the clock starts and
    sent as raw bytes, and an answer is parsed only to compare its output with
    the text the model must answer ("<id>:" + input). Each answered request's
    latency (ms) is appended to `latencies`.
    """
    rng = random.Random(seed)
    errors: Counter[str] = Counter()
    details: dict[str, str] = {}
    misrouted = 0
    total = int(rate * duration)
    plan = []
    for index in range(total):
        target = model_id(rng.randrange(model_count))
        payload = f"#{index}".encode()
        plan.append(
            (infer_request(payload), (("mm-model-id", target),), f"{target}:".encode() + payload)
        )
    channel = grpc.aio.insecure_channel(address)
    infer = channel.unary_unary(MODEL_INFER)
    pending: set[asyncio.Task[None]] = set()

    async def one(index: int, scheduled: float) -> None:
        nonlocal misrouted
        body, metadata, expected = plan[index]
        try:
            answer = await infer(body, metadata=metadata, timeout=30)
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] += 1
            details.setdefault(exc.code().name, exc.details() or "")
            return
        latencies.append((time.perf_counter() - scheduled) * 1000)
        if _output_text(v2.ModelInferResponse.FromString(answer)) != expected:
            misrouted += 1

    start = time.perf_counter()
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(index, scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    sent_for = time.perf_counter() - start
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - start
    await channel.close()
    return {
        "sent": total,
        "ok": len(latencies),
        "achieved_rate": len(latencies) / elapsed,
        "send_rate": total / sent_for,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
        "errors": sum(errors.values()),
        "error_codes": dict(errors),  # type: ignore[dict-item]
        "error_details": details,  # type: ignore[dict-item]
        "misrouted": misrouted,
    }


def _output_text(answer: v2.ModelInferResponse) -> bytes:
    if answer.raw_output_contents:
        raw = answer.raw_output_contents[0]
        return bytes(raw[4:])  # one BYTES element: 4-byte length prefix
    return bytes(answer.outputs[0].contents.bytes_contents[0])


def print_machine_floor() -> None:
    """What a grpc.aio call end costs on this machine now (the echo of grpc_aio_floor.py)."""
    floor = Path(__file__).with_name("grpc_aio_floor.py")
    command = [sys.executable, str(floor), "--rate", "1000", "--duration", "5"]
    echo = subprocess.run(command, capture_output=True, text=True, check=True)
    print("machine floor, " + echo.stdout.strip())


def report(title: str, figures: dict[str, float]) -> None:
    print(title)
    for key, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"  {key}: {shown}")


def pids(mesh: MeshHandle) -> dict[str, int]:
    found = {"coordinator": mesh.process.popen.pid, "client": os.getpid()}
    for inst in mesh.instances:
        found[f"{inst.name} server"], found[f"{inst.name} sidecar"] = inst.pids
    return found


async def measured(mesh: MeshHandle, work: Any) -> tuple[dict[str, float], str]:
    """Run `work`; also answer the CPU each process used per second of it."""
    before = {name: cpu_seconds(pid) for name, pid in pids(mesh).items()}
    start = time.perf_counter()
    figures = await work
    elapsed = time.perf_counter() - start
    cpu = ", ".join(
        f"{name} {(cpu_seconds(pid) - before[name]) / elapsed:.2f}"
        for name, pid in pids(mesh).items()
    )
    return figures, f"CPU cores used: {cpu}"


def process_rss(mesh: MeshHandle) -> str:
    parts = [f"coordinator {rss_mb(mesh.process.popen.pid):.0f} MB"]
    for inst in mesh.instances:
        server, sidecar = inst.pids
        parts.append(
            f"{inst.name} server {rss_mb(server):.0f} MB / sidecar {rss_mb(sidecar):.0f} MB"
        )
    return ", ".join(parts)


def plot(phases: dict[str, list[float]], path: Path) -> None:
    """Latency by percentile, one line per phase, with the p99 target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quantiles = [q / 1000 for q in range(500, 1000, 5)] + [0.995, 0.999]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, samples in phases.items():
        ax.plot(
            [q * 100 for q in quantiles], [percentile(samples, q) for q in quantiles], label=label
        )
    ax.axhline(10, color="grey", linestyle="--", linewidth=1, label="p99 target (10 ms)")
    ax.axvline(99, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency through the coordinator (ms)")
    ax.set_yscale("log")
    ax.set_title("ModelInfer through the embedded coordinator, 2 instances")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


async def run(args: argparse.Namespace, mesh: MeshHandle) -> None:
    channel = grpc.aio.insecure_channel(mesh.address)
    stub = pb_grpc.ModelMeshStub(channel)

    start = time.perf_counter()
    outcomes = await register_all(stub, range(args.models), load=True)
    took = time.perf_counter() - start
    print(
        f"registered + loaded {args.models} models in {took:.1f}s "
        f"({args.models / took:.0f} loads/s): {dict(outcomes)}"
    )
    print(f"RSS: {process_rss(mesh)}")
    if args.calibrate:
        print_machine_floor()
    phases: dict[str, list[float]] = {}

    for seed, rate in enumerate(args.rate, start=1):
        latencies = phases[f"{args.models:,} loaded, {rate:,.0f}/s"] = []
        figures, cpu = await measured(
            mesh, open_loop(mesh.address, args.models, rate, args.duration, seed, latencies)
        )
        report(
            f"open loop over {args.models} loaded models, {rate}/s for {args.duration}s", figures
        )
        print(cpu)
        print(f"RSS: {process_rss(mesh)}")

    if args.churn_models > args.models:
        start = time.perf_counter()
        outcomes = await register_all(stub, range(args.models, args.churn_models), load=False)
        took = time.perf_counter() - start
        print(f"registered {args.churn_models - args.models} more in {took:.1f}s: {dict(outcomes)}")
        latencies = phases[
            f"churn: {args.churn_models:,} registered, {args.churn_rate:,.0f}/s"
        ] = []
        figures, cpu = await measured(
            mesh,
            open_loop(
                mesh.address,
                args.churn_models,
                args.churn_rate,
                args.churn_duration,
                0,
                latencies,
            ),
        )
        report(
            f"churn: open loop over {args.churn_models} registered models "
            f"({args.models} fit), {args.churn_rate}/s for {args.churn_duration}s",
            figures,
        )
        print(cpu)
        print(f"RSS: {process_rss(mesh)}")
    await channel.close()
    if args.plot:
        plot(phases, args.plot)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=20000)
    parser.add_argument(
        "--rate",
        type=lambda text: [float(r) for r in text.split(",")],
        default=[1000.0],
        help="requests/s; a comma-separated list runs one open loop per rate",
    )
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--churn-models", type=int, default=100000)
    parser.add_argument("--churn-rate", type=float, default=200)
    parser.add_argument("--churn-duration", type=float, default=30)
    parser.add_argument("--loading-concurrency", type=int, default=4)
    parser.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the grpc.aio echo before the open loops (5 s)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=Path(".work/bench/mesh-density.png"),
        help="PNG of latency by percentile per phase (matplotlib)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-mesh-density-") as tmp:
        root = Path(tmp)
        models, configs, pvcs = root / "models", root / "configs", root / "pvc"
        for path in (models, configs, pvcs):
            path.mkdir()
        start = time.perf_counter()
        make_models(pvcs / "claim1", max(args.models, args.churn_models))
        print(
            f"wrote {max(args.models, args.churn_models)} model dirs in "
            f"{time.perf_counter() - start:.1f}s"
        )
        (configs / "localpvc").write_text(json.dumps({"type": "pvc", "name": "claim1"}))
        # Each tiny model takes one 8 KiB unit: room for --models on two instances, no more.
        per_instance = -(-args.models // 2)
        env = {
            "CONTAINER_MEM_REQ_BYTES": str(per_instance * UNIT),
            "MEM_BUFFER_BYTES": "0",
            "DEFAULT_MODELSIZE": str(UNIT),
            "LOADING_CONCURRENCY": str(args.loading_concurrency),
            "LOG_LEVEL": "WARNING",
        }
        with run_mesh(
            "simple-string", 2, models, configs, pvcs, env, log_dir=root / "logs"
        ) as mesh:
            uvloop.run(run(args, mesh))


if __name__ == "__main__":
    main()
