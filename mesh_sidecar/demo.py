"""`make demo`: the sidecar end to end on one machine, printed as it happens.

Starts the simple-string model server and `mesh-sidecar serve --runtime
simple-string`, then acts as ModelMesh would: waits for READY, loads a model
from a PVC-style dir, infers through the model server, and unloads.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import tritonclient.grpc as triton

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.testing.processes import run_sidecar, run_simple_string_server


def say(text: str) -> None:
    print(text, flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mesh-sidecar-demo-") as tmp:
        root = Path(tmp)
        models, configs, pvcs = root / "models", root / "storage-config", root / "pvc"
        for path in (models, configs, pvcs):
            path.mkdir()
        sample = pvcs / "claim1" / "models" / "greeter"
        sample.mkdir(parents=True)
        (sample / "model.txt").write_text("Hello, ")
        (configs / "localpvc").write_text(json.dumps({"type": "pvc", "name": "claim1"}))
        say(f"sample model: PVC claim1, path models/greeter, text {'Hello, '!r}")

        with run_simple_string_server() as server:
            port = server.port
            say(f"simple-string model server listening on 127.0.0.1:{port}")
            with run_sidecar("simple-string", port, models, configs, pvcs) as sidecar:
                status = sidecar.status
                say(
                    f"sidecar on 127.0.0.1:{sidecar.adapter_port} is READY: runtime "
                    f"{status.runtimeVersion}, capacity {status.capacityInBytes} bytes"
                )
                key = json.dumps({"storage_key": "localpvc", "model_type": {"name": "string"}})
                loaded = sidecar.stub.loadModel(
                    pb.LoadModelRequest(
                        modelId="greeter",
                        modelType="string",
                        modelPath="models/greeter",
                        modelKey=key,
                    ),
                    timeout=30,
                )
                say(f"loadModel greeter -> sizeInBytes {loaded.sizeInBytes}")
                client = triton.InferenceServerClient(f"127.0.0.1:{port}")
                data = triton.InferInput("INPUT", [2], "BYTES")
                data.set_data_from_numpy(np.array([b"world", b"ModelMesh"], dtype=np.object_))
                answer = client.infer("greeter", [data]).as_numpy("OUTPUT")
                client.close()
                assert answer is not None
                say(f"ModelInfer greeter ['world', 'ModelMesh'] -> {[v.decode() for v in answer]}")
                sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId="greeter"), timeout=30)
                left = sorted(p.name for p in models.iterdir())
                say(f"unloadModel greeter -> done; left in ROOT_MODEL_DIR: {left}")
    say("demo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
