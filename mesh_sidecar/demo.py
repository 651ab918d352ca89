"""`make demo`: the whole path on one machine, printed as it happens.

Starts the embedded mesh coordinator (`mesh-sidecar mesh --spawn 2 --runtime
simple-string`): two instances, each a simple-string model server plus a
sidecar. Then, as a ModelMesh user would: registers models that live in a
PVC-style dir, infers through the coordinator with tritonclient and the
`mm-model-id` header (models load just in time), switches a vmodel to a new
model, fills the instances until the least recently used model is evicted,
and stops everything.

    python -m mesh_sidecar.demo               # models on a PVC-style dir
    python -m mesh_sidecar.demo --storage s3  # the same models in a local S3 server (moto)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as triton

from mesh_sidecar.mmesh import model_mesh_pb2 as pb
from mesh_sidecar.testing.mesh import MeshHandle, run_mesh
from mesh_sidecar.testing.processes import free_port, start_process, wait_for_port

GREETINGS = {
    "hello-en": "Hello, ",
    "hello-fr": "Bonjour, ",
    "hello-de": "Hallo, ",
    "hello-es": "Hola, ",
    "hello-it": "Ciao, ",
    "hello-pt": "Olá, ",
    "hello-nl": "Hallo hallo, ",
}
MODEL_TYPE = {"name": "string"}
# Room for three tiny models (one 8 KiB unit each) per instance, so evictions show.
SMALL_INSTANCE = {
    "CONTAINER_MEM_REQ_BYTES": str(3 * 8192),
    "MEM_BUFFER_BYTES": "0",
    "DEFAULT_MODELSIZE": "8192",
}
STATUS = pb.ModelStatusInfo.ModelStatus.Name
VSTATUS = pb.VModelStatusInfo.VModelStatus.Name


def say(text: str) -> None:
    print(text, flush=True)


def infer(client: triton.InferenceServerClient, who: str, **headers: str) -> str:
    data = triton.InferInput("INPUT", [1], "BYTES")
    data.set_data_from_numpy(np.array([who.encode()], dtype=np.object_))
    answer = client.infer("", [data], headers=headers).as_numpy("OUTPUT")
    assert answer is not None
    return bytes(answer[0]).decode()


def where(mesh: MeshHandle) -> dict[str, str]:
    """model id -> instance holding a loaded copy, for every loaded model."""
    placed = {}
    for model_id in GREETINGS:
        status = mesh.stub.getModelStatus(pb.GetStatusRequest(modelId=model_id))
        for copy in status.modelCopyInfos:
            if copy.copyStatus == pb.ModelStatusInfo.LOADED:
                placed[model_id] = copy.location
    return placed


def vmodel_line(status: Any) -> str:
    return f"{VSTATUS(status.status)}, active {status.activeModelId}, target {status.targetModelId}"


@contextlib.contextmanager
def pvc_storage(root: Path, configs: Path, pvcs: Path) -> Iterator[str]:
    """The sample models in a PVC-style dir; yields the storage key."""
    for model_id, text in GREETINGS.items():
        (pvcs / "claim1" / "models" / model_id).mkdir(parents=True)
        (pvcs / "claim1" / "models" / model_id / "model.txt").write_text(text)
    (configs / "localpvc").write_text(json.dumps({"type": "pvc", "name": "claim1"}))
    say(f"sample models on PVC claim1 under models/: {', '.join(GREETINGS)}")
    yield "localpvc"


@contextlib.contextmanager
def s3_storage(root: Path, configs: Path, pvcs: Path) -> Iterator[str]:
    """The sample models in a local S3 server (moto); yields the storage key."""
    import boto3

    from mesh_sidecar.testing.storage import moto_command

    port = free_port()
    server = start_process(moto_command(port), name="moto")
    try:
        wait_for_port(port, server)
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="demo",
            aws_secret_access_key="demo-secret",
        )
        s3.create_bucket(Bucket="models")
        for model_id, text in GREETINGS.items():
            s3.put_object(Bucket="models", Key=f"models/{model_id}/model.txt", Body=text.encode())
        config = {
            "type": "s3",
            "endpoint_url": endpoint,
            "region": "us-east-1",
            "access_key_id": "demo",
            "secret_access_key": "demo-secret",
            "bucket": "models",
        }
        (configs / "locals3").write_text(json.dumps(config))
        say(f"sample models in S3 ({endpoint}, bucket models): {', '.join(GREETINGS)}")
        yield "locals3"
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--storage", choices=("pvc", "s3"), default="pvc")
    args = parser.parse_args(argv)
    storage = pvc_storage if args.storage == "pvc" else s3_storage
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mesh-sidecar-demo-") as tmp:
        root = Path(tmp)
        models, configs, pvcs = root / "models", root / "storage-config", root / "pvc"
        for path in (models, configs, pvcs):
            path.mkdir()
        with contextlib.ExitStack() as stack:
            storage_key = stack.enter_context(storage(root, configs, pvcs))
            key = json.dumps({"storage_key": storage_key, "model_type": MODEL_TYPE})
            say("starting: mesh-sidecar mesh --spawn 2 --runtime simple-string")
            mesh = stack.enter_context(
                run_mesh(
                    "simple-string",
                    2,
                    models,
                    configs,
                    pvcs,
                    SMALL_INSTANCE,
                    log_dir=root / "logs",
                )
            )
            for inst in mesh.instances:
                say(
                    f"  {inst.name}: sidecar {inst.adapter_address}, "
                    f"model server {inst.runtime_address}"
                )
            say(f"coordinator READY on {mesh.address} (mmesh.ModelMesh + inference)")

            for model_id in GREETINGS:
                info = pb.ModelInfo(type="string", path=f"models/{model_id}", key=key)
                status = mesh.stub.registerModel(
                    pb.RegisterModelRequest(modelId=model_id, modelInfo=info)
                )
                say(f"registerModel {model_id} -> {STATUS(status.status)}")

            client = triton.InferenceServerClient(mesh.address)
            answer = infer(client, "world", **{"mm-model-id": "hello-en"})
            say(f"ModelInfer mm-model-id=hello-en 'world' -> {answer!r} (loaded just in time)")
            say(f"  placed: {where(mesh)}")

            vm = mesh.stub.setVModel(
                pb.SetVModelRequest(vModelId="greeter", targetModelId="hello-en", sync=True)
            )
            say(f"setVModel greeter -> hello-en: {vmodel_line(vm)}")
            answer = infer(client, "vmodel", **{"mm-vmodel-id": "greeter"})
            say(f"ModelInfer mm-vmodel-id=greeter -> {answer!r}")
            vm = mesh.stub.setVModel(
                pb.SetVModelRequest(vModelId="greeter", targetModelId="hello-fr")
            )
            say(f"setVModel greeter -> hello-fr: {vmodel_line(vm)}")
            answer = infer(client, "vmodel", **{"mm-vmodel-id": "greeter"})
            say(f"ModelInfer mm-vmodel-id=greeter while it switches -> {answer!r}")
            while vm.status == pb.VModelStatusInfo.TRANSITIONING:
                time.sleep(0.05)
                vm = mesh.stub.getVModelStatus(pb.GetVModelStatusRequest(vModelId="greeter"))
            say(f"getVModelStatus greeter: {vmodel_line(vm)}")
            answer = infer(client, "vmodel", **{"mm-vmodel-id": "greeter"})
            say(f"ModelInfer mm-vmodel-id=greeter -> {answer!r}")

            say("capacity: 3 models per instance, 6 in all; now using all 7")
            for model_id in GREETINGS:
                before = where(mesh)
                answer = infer(client, "mesh", **{"mm-model-id": model_id})
                after = where(mesh)
                evicted = sorted(set(before) - set(after))
                note = f"; evicted {', '.join(evicted)} (least recently used)" if evicted else ""
                say(f"  {model_id} on {after.get(model_id, '?')} -> {answer!r}{note}")
            say(f"  placed: {where(mesh)}")
            client.close()
            say("stopping the coordinator and its instances")
        say(f"demo finished in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
