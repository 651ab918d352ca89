"""Sidecar benchmarks: start to READY, idle RSS, load overhead, RSS at 20,000 models.

Runs a real simple-string server and a real sidecar on loopback and prints figures.
    .venv/bin/python bench/sidecar.py [--models 20000] [--overhead-runs 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import tritonclient.grpc.service_pb2 as v2
import tritonclient.grpc.service_pb2_grpc as v2_grpc
from proc_stats import rss_mb

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.testing.processes import (
    SIDECAR,
    free_port,
    run_sidecar,
    start_process,
    wait_for_port,
)

KEY = json.dumps({"storage_key": "localpvc"})


def make_models(claim: Path, prefix: str, count: int) -> None:
    for i in range(count):
        model = claim / prefix / f"m{i}"
        model.mkdir(parents=True)
        (model / "model.txt").write_text(f"model {i}: ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=20000)
    parser.add_argument("--overhead-runs", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-sidecar-") as tmp:
        root = Path(tmp)
        models, configs, pvcs = root / "models", root / "configs", root / "pvc"
        for path in (models, configs, pvcs):
            path.mkdir()
        claim = pvcs / "claim1"
        (configs / "localpvc").write_text(json.dumps({"type": "pvc", "name": "claim1"}))
        make_models(claim, "overhead", args.overhead_runs)
        make_models(claim, "density", args.models)

        port = free_port()
        server = start_process(
            [*SIDECAR, "simple-string-server", "--port", str(port)], name="simple-string"
        )
        wait_for_port(port, server)
        direct = v2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))

        started = time.monotonic()
        env = {"LOADING_CONCURRENCY": "8", "CONTAINER_MEM_REQ_BYTES": str(64 * 1024**3)}
        with run_sidecar("simple-string", port, models, configs, pvcs, env) as sidecar:
            ready_s = time.monotonic() - started
            time.sleep(1.0)
            idle = rss_mb(sidecar.process.popen.pid)
            print(f"start to READY: {ready_s * 1000:.0f} ms (process spawn included)")
            print(f"sidecar idle RSS: {idle:.1f} MB (target < 80 MB)")

            direct_ms, sidecar_ms = [], []
            for i in range(args.overhead_runs):
                path = str(claim / "overhead" / f"m{i}")
                t0 = time.perf_counter()
                direct.RepositoryModelLoad(
                    v2.RepositoryModelLoadRequest(
                        model_name=f"direct{i}",
                        parameters={"path": v2.ModelRepositoryParameter(string_param=path)},
                    )
                )
                direct_ms.append((time.perf_counter() - t0) * 1000)
                direct.RepositoryModelUnload(
                    v2.RepositoryModelUnloadRequest(model_name=f"direct{i}")
                )
                t0 = time.perf_counter()
                sidecar.stub.loadModel(
                    pb.LoadModelRequest(modelId=f"s{i}", modelPath=f"overhead/m{i}", modelKey=KEY)
                )
                sidecar_ms.append((time.perf_counter() - t0) * 1000)
                sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId=f"s{i}"))
            d, s = statistics.median(direct_ms), statistics.median(sidecar_ms)
            print(
                f"load, median of {args.overhead_runs}: direct RepositoryModelLoad "
                f"{d:.2f} ms, sidecar loadModel {s:.2f} ms, overhead {s - d:.2f} ms "
                f"(target < 2 ms)"
            )

            t0 = time.monotonic()

            def load(i: int) -> None:
                sidecar.stub.loadModel(
                    pb.LoadModelRequest(modelId=f"d{i}", modelPath=f"density/m{i}", modelKey=KEY),
                    timeout=60,
                )

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(load, range(args.models)))
            took = time.monotonic() - t0
            print(
                f"{args.models} models loaded through the sidecar in {took:.1f} s "
                f"({args.models / took:.0f} loads/s)"
            )
            print(
                f"RSS with {args.models} models: server {rss_mb(server.popen.pid):.1f} MB, "
                f"sidecar {rss_mb(sidecar.process.popen.pid):.1f} MB (target: server < 1 GB)"
            )
        server.stop()


if __name__ == "__main__":
    main()
