"""Triton benchmarks: the sidecar's load overhead, and the planner on a 10,000-file model.

Load overhead: the same python-backend model, laid out the same way, loaded on the
same real Triton (nvidia-pytriton) two ways, alternately: a direct
RepositoryModelLoad of a laid-out copy, and loadModel through `mesh-sidecar serve
--runtime triton` from a PVC (pull by links + layout + load). Each load is
followed by an unload that waits until Triton has let go. Prints the medians and
the median of the per-pair differences.

    .venv/bin/python bench/triton_overhead.py [--runs 100] [--files 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import grpc
import tritonclient.grpc.service_pb2 as v2
import tritonclient.grpc.service_pb2_grpc as v2_grpc

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.pullers.base import PullerSettings, StorageSource, pull_atomically
from mesh_sidecar.pullers.pvc import PvcPuller
from mesh_sidecar.runtimes.layout import apply_layout
from mesh_sidecar.runtimes.triton_layout import plan_triton_layout
from mesh_sidecar.testing.processes import run_sidecar
from mesh_sidecar.testing.triton import run_triton
from mesh_sidecar.testing.triton_models import write_model

# Triton tears the python backend's stub process down after the unload answers; let it
# finish so one load does not pay for the previous model's exit.
SETTLE_S = 0.5

KEY = json.dumps({"storage_key": "localpvc", "model_type": "python"})


def wait_unloaded(stub: v2_grpc.GRPCInferenceServiceStub, name: str) -> None:
    while True:
        index = stub.RepositoryIndex(v2.RepositoryIndexRequest(), timeout=10)
        states = {m.state for m in index.models if m.name == name}
        if not states & {"READY", "LOADING", "UNLOADING"}:
            return
        time.sleep(0.02)


def load_overhead(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="triton-bench-") as tmp:
        base = Path(tmp)
        root, config_dir, pvc = base / "models", base / "storage-config", base / "pvc"
        for path in (root, config_dir, pvc):
            path.mkdir()
        (config_dir / "localpvc").write_text(json.dumps({"type": "pvc", "name": "claim"}))
        model = write_model(pvc / "claim" / "add", {1: 1.0})
        with (
            run_triton(root / "_triton_models") as triton,
            run_sidecar("triton", triton.grpc_port, root, config_dir, pvc) as sidecar,
        ):
            # The direct model: the same files, laid out once by the same planner.
            apply_layout(plan_triton_layout(model, "python"), root / "_triton_models" / "direct")
            channel = grpc.insecure_channel(triton.grpc_address)
            triton_stub = v2_grpc.GRPCInferenceServiceStub(channel)
            direct: list[float] = []
            through: list[float] = []
            for _ in range(runs):
                started = time.perf_counter()
                triton_stub.RepositoryModelLoad(
                    v2.RepositoryModelLoadRequest(model_name="direct"), timeout=60
                )
                direct.append(time.perf_counter() - started)
                triton_stub.RepositoryModelUnload(
                    v2.RepositoryModelUnloadRequest(model_name="direct"), timeout=60
                )
                wait_unloaded(triton_stub, "direct")
                time.sleep(SETTLE_S)

                started = time.perf_counter()
                sidecar.stub.loadModel(
                    pb.LoadModelRequest(modelId="via-sidecar", modelPath="add", modelKey=KEY),
                    timeout=60,
                )
                through.append(time.perf_counter() - started)
                sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId="via-sidecar"), timeout=60)
                time.sleep(SETTLE_S)
            channel.close()
    ms = 1000.0
    diffs = [(s - d) * ms for s, d in zip(through, direct, strict=True)]
    print(f"load, median of {runs} (python-backend model, Triton 2.51 CPU):")
    print(f"  direct RepositoryModelLoad : {statistics.median(direct) * ms:8.1f} ms")
    print(f"  through the sidecar (PVC)  : {statistics.median(through) * ms:8.1f} ms")
    print(f"  overhead, median of pairs  : {statistics.median(diffs):8.1f} ms")
    quartiles = statistics.quantiles(diffs, n=4)
    print(f"  overhead, quartiles        : {quartiles[0]:.1f} .. {quartiles[2]:.1f} ms")
    # 95% confidence interval of the median from order statistics: how much the
    # machine's noise (Triton starting a process per load) leaves of the figure.
    ranked = sorted(diffs)
    half = 1.96 * math.sqrt(len(ranked)) / 2
    low = max(0, math.floor(len(ranked) / 2 - half))
    high = min(len(ranked) - 1, math.ceil(len(ranked) / 2 + half))
    print(f"  overhead median, 95% CI    : {ranked[low]:.1f} .. {ranked[high]:.1f} ms")


def sidecar_steps(runs: int) -> None:
    """What the sidecar adds on the load path besides gRPC hops: pull by links, plan, lay out."""
    with tempfile.TemporaryDirectory(prefix="triton-steps-") as tmp:
        base = Path(tmp)
        pvc, root = base / "pvc", base / "models"
        write_model(pvc / "claim" / "add", {1: 1.0})
        puller = PvcPuller(PullerSettings(pvc_mounts_dir=pvc))
        source = StorageSource("pvc", {"name": "claim"}, "add")
        (root / "_triton_models").mkdir(parents=True)
        times = []
        for i in range(runs):
            started = time.perf_counter()
            pulled = asyncio.run(pull_atomically(puller, source, root / f"m{i}"))
            plan = plan_triton_layout(pulled.path, "python", model_id=f"m{i}")
            apply_layout(plan, root / "_triton_models" / f"m{i}")
            times.append(time.perf_counter() - started)
        print(f"sidecar steps (PVC pull by links + plan + lay out), median of {runs}:")
        print(f"  {statistics.median(times) * 1000:8.3f} ms")


def planner_time(files: int, runs: int = 20) -> None:
    with tempfile.TemporaryDirectory(prefix="triton-plan-") as tmp:
        flat = Path(tmp) / "flat"  # 10,000 files at the top: linked as one version dir
        flat.mkdir()
        for i in range(files):
            (flat / f"part-{i:05d}.bin").write_bytes(b"")
        native = Path(tmp) / "native"  # a Triton dir: config.pbtxt + 10,000 files in 1/
        (native / "1").mkdir(parents=True)
        (native / "config.pbtxt").write_text('name: "x" backend: "python"')
        for i in range(files):
            (native / "1" / f"part-{i:05d}.bin").write_bytes(b"")
        print(f"planner, median of {runs}, {files} files:")
        for label, path in (("flat dir, type onnx", flat), ("native, config.pbtxt", native)):
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                plan = plan_triton_layout(path, "onnx")
                times.append(time.perf_counter() - started)
            entries = len(plan)
            median = statistics.median(times) * 1000
            print(f"  {label:<22}: {median:8.3f} ms ({entries} entries)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--files", type=int, default=10000)
    args = parser.parse_args()
    planner_time(args.files)
    sidecar_steps(args.runs)
    load_overhead(args.runs)


if __name__ == "__main__":
    main()
