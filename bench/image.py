"""The sidecar image under podman: start to READY, idle memory, load and unload times.

Runs the simple-string server container and the sidecar container as a pod's
two containers (host network on loopback, read-only root, /models and a claim
shared) and prints figures. Build the images first (`make image-test` does):
    .venv/bin/python bench/image.py [--image localhost/mesh-sidecar:dev]
        [--server-image localhost/simple-string-server:dev] [--starts 5] [--loads 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import grpc

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.mmesh import model_runtime_pb2_grpc as pb_grpc
from mesh_sidecar.testing.containers import podman, remove, run_command
from mesh_sidecar.testing.processes import free_port, start_process, wait_for_port

APP_UID = 2000
CLAIM = "bench-claim"
KEY = json.dumps({"storage_key": "localpvc"})


def sidecar_rss_mb(name: str) -> float:
    status = podman("exec", name, "python", "-c", "print(open('/proc/1/status').read())")
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default="localhost/mesh-sidecar:dev")
    parser.add_argument("--server-image", default="localhost/simple-string-server:dev")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--loads", type=int, default=20)
    args = parser.parse_args()

    size = int(podman("image", "inspect", args.image, "--format", "{{.Size}}"))
    print(f"image {args.image}: {size} bytes ({size / 1e6:.0f} MB) uncompressed")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models, config, claim = root / "models", root / "storage-config", root / "pvc"
        (claim / "m").mkdir(parents=True)
        (claim / "m" / "model.txt").write_text("hello ")
        config.mkdir()
        (config / "localpvc").write_text(json.dumps({"type": "pvc", "name": CLAIM}))
        models.mkdir()
        os.chown(models, APP_UID, 0)
        shared = [f"{models}:/models", f"{claim}:/pvc_mounts/{CLAIM}:ro"]

        runtime_port = free_port()
        server_name = f"bench-ss-{uuid.uuid4().hex[:8]}"
        server = start_process(
            run_command(
                server_name,
                args.server_image,
                ["--port", str(runtime_port), "--host", "127.0.0.1"],
                mounts=shared,
            ),
            name="server",
        )
        try:
            wait_for_port(runtime_port, server, timeout=60)
            ready_s, rss = [], []
            load_ms, unload_ms = [], []
            for start in range(args.starts):
                adapter_port = free_port()
                name = f"bench-sidecar-{uuid.uuid4().hex[:8]}"
                env = {
                    "ADAPTER_PORT": str(adapter_port),
                    "RUNTIME_PORT": str(runtime_port),
                    "CONTAINER_MEM_REQ_BYTES": str(2 * 1024**3),
                    "METRICS_PORT": "0",
                }
                began = time.monotonic()
                sidecar = start_process(
                    run_command(
                        name,
                        args.image,
                        ["/opt/app/simple-string-adapter"],
                        env,
                        [*shared, f"{config}:/storage-config:ro"],
                    ),
                    name="sidecar",
                )
                # Connect once the port is open: a gRPC channel that finds it closed
                # backs off for seconds before it tries again.
                wait_for_port(adapter_port, sidecar, timeout=120)
                channel = grpc.insecure_channel(f"127.0.0.1:{adapter_port}")
                stub = pb_grpc.ModelRuntimeStub(channel)
                try:
                    deadline = began + 120
                    while time.monotonic() < deadline:
                        try:
                            status = stub.runtimeStatus(pb.RuntimeStatusRequest(), timeout=2)
                            if status.status == pb.RuntimeStatusResponse.READY:
                                break
                        except grpc.RpcError:
                            pass
                        time.sleep(0.02)
                    else:
                        raise TimeoutError(sidecar.output())
                    ready_s.append(time.monotonic() - began)
                    rss.append(sidecar_rss_mb(name))
                    if start == 0:
                        for i in range(args.loads):
                            request = pb.LoadModelRequest(
                                modelId=f"m{i}", modelType="string", modelPath="m", modelKey=KEY
                            )
                            t0 = time.perf_counter()
                            stub.loadModel(request, timeout=60)
                            load_ms.append((time.perf_counter() - t0) * 1000)
                            t0 = time.perf_counter()
                            stub.unloadModel(pb.UnloadModelRequest(modelId=f"m{i}"), timeout=60)
                            unload_ms.append((time.perf_counter() - t0) * 1000)
                finally:
                    channel.close()
                    sidecar.stop()
                    remove(name)
        finally:
            server.stop()
            remove(server_name)

    print(
        f"podman run -> runtimeStatus READY: median {statistics.median(ready_s):.2f} s "
        f"(min {min(ready_s):.2f}, max {max(ready_s):.2f}, {len(ready_s)} starts)"
    )
    print(f"sidecar RSS when READY: median {statistics.median(rss):.0f} MiB")
    print(
        f"loadModel (PVC, linked) median {statistics.median(load_ms):.1f} ms, "
        f"unloadModel median {statistics.median(unload_ms):.1f} ms ({len(load_ms)} each)"
    )


if __name__ == "__main__":
    main()
