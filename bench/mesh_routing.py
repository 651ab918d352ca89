"""Routing overhead of the embedded coordinator: ModelInfer through it vs straight to the server.

Starts `mesh-sidecar mesh --spawn 1 --runtime simple-string`, loads one model,
then sends the same ModelInfer request, one at a time, to the model server
directly and through the coordinator (mm-model-id header, id injection,
forwarding), alternating in rounds so both see the same machine load.
Prints p50 / p99 of each path and the difference.

    .venv/bin/python bench/mesh_routing.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import grpc
import tritonclient.grpc.service_pb2 as v2
import tritonclient.grpc.service_pb2_grpc as v2_grpc
from proc_stats import cpu_seconds, percentile

from mesh_sidecar.mmesh import model_mesh_pb2 as pb
from mesh_sidecar.testing.mesh import run_mesh

KEY = json.dumps({"storage_key": "localpvc", "model_type": {"name": "string"}})


def time_calls(
    stub: v2_grpc.GRPCInferenceServiceStub,
    request: v2.ModelInferRequest,
    metadata: tuple[tuple[str, str], ...],
    count: int,
) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        answer = stub.ModelInfer(request, metadata=metadata, timeout=10)
        samples.append((time.perf_counter() - start) * 1000)
        assert answer.raw_output_contents or answer.outputs
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="per path")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-mesh-routing-") as tmp:
        root = Path(tmp)
        models, configs, pvcs = root / "models", root / "configs", root / "pvc"
        for path in (models, configs, pvcs):
            path.mkdir()
        (pvcs / "claim1" / "models" / "m0").mkdir(parents=True)
        (pvcs / "claim1" / "models" / "m0" / "model.txt").write_text("m0:")
        (configs / "localpvc").write_text(json.dumps({"type": "pvc", "name": "claim1"}))

        with run_mesh("simple-string", 1, models, configs, pvcs, log_dir=root / "logs") as mesh:
            info = pb.ModelInfo(type="string", path="models/m0", key=KEY)
            mesh.stub.registerModel(
                pb.RegisterModelRequest(modelId="m0", modelInfo=info, loadNow=True, sync=True)
            )
            request = v2.ModelInferRequest(model_name="m0")
            tensor = request.inputs.add(name="INPUT", datatype="BYTES", shape=[1])
            tensor.contents.bytes_contents.append(b"x")

            direct_channel = grpc.insecure_channel(mesh.instances[0].runtime_address)
            mesh_channel = grpc.insecure_channel(mesh.address)
            direct = v2_grpc.GRPCInferenceServiceStub(direct_channel)
            routed = v2_grpc.GRPCInferenceServiceStub(mesh_channel)
            header = (("mm-model-id", "m0"),)
            time_calls(direct, request, (), 200)  # warm up both paths
            time_calls(routed, request, header, 200)

            direct_ms: list[float] = []
            routed_ms: list[float] = []
            per_round = max(1, args.requests // args.rounds)
            coordinator_cpu = 0.0
            for _ in range(args.rounds):
                direct_ms += time_calls(direct, request, (), per_round)
                before = cpu_seconds(mesh.process.popen.pid)
                routed_ms += time_calls(routed, request, header, per_round)
                coordinator_cpu += cpu_seconds(mesh.process.popen.pid) - before
            direct_channel.close()
            mesh_channel.close()

    d50, d99 = percentile(direct_ms, 0.5), percentile(direct_ms, 0.99)
    r50, r99 = percentile(routed_ms, 0.5), percentile(routed_ms, 0.99)
    print(f"ModelInfer, {len(direct_ms)} sequential requests per path (ms)")
    print(f"  straight to the model server: p50 {d50:.3f}  p99 {d99:.3f}")
    print(f"  through the coordinator:      p50 {r50:.3f}  p99 {r99:.3f}")
    print(f"  routing overhead:             p50 {r50 - d50:.3f}  p99 {r99 - d99:.3f}")
    print(f"  mean overhead {statistics.fmean(routed_ms) - statistics.fmean(direct_ms):.3f} ms")
    print(f"  coordinator CPU per routed request: {coordinator_cpu / len(routed_ms) * 1000:.3f} ms")


if __name__ == "__main__":
    main()
