"""A load through the real sidecar from S3 (moto), with the storage config as users write it."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator

import grpc
import pytest

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.testing.checks import files_under, infer_text
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import ServerHandle, SidecarHandle, run_sidecar
from mesh_sidecar.testing.storage import S3Server

pytestmark = pytest.mark.slow


def packed_model() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.txt")
        info.size = len(b"packed ")
        tar.addfile(info, io.BytesIO(b"packed "))
    return buf.getvalue()


@pytest.fixture
def sidecar(
    s3_server: S3Server, simple_string_server: ServerHandle, sidecar_dirs: SidecarDirs
) -> Iterator[SidecarHandle]:
    s3_server.admin.put_object(Bucket="models", Key="sidecar/m1/model.txt", Body=b"hello ")
    s3_server.admin.put_object(Bucket="models", Key="sidecar/m2.tar.gz", Body=packed_model())
    config = {k: v for k, v in s3_server.config().items()}
    (sidecar_dirs.storage_config_dir / "s3store").write_text(json.dumps(config))
    bad = {**config, "secret_access_key": "not-the-secret-0123456789"}
    (sidecar_dirs.storage_config_dir / "badstore").write_text(json.dumps(bad))
    with run_sidecar("simple-string", simple_string_server.port, *sidecar_dirs.as_args()) as handle:
        yield handle


def request(model_id: str, path: str, storage_key: str = "s3store") -> pb.LoadModelRequest:
    key = json.dumps({"storage_key": storage_key, "model_type": {"name": "string"}})
    return pb.LoadModelRequest(modelId=model_id, modelType="string", modelPath=path, modelKey=key)


def test_load_from_s3_then_infer_and_unload(
    sidecar: SidecarHandle, simple_string_server: ServerHandle, sidecar_dirs: SidecarDirs
) -> None:
    predicted = sidecar.stub.predictModelSize(
        pb.PredictModelSizeRequest(modelId="m1", modelType="string", modelPath="sidecar/m1",
                                   modelKey=request("m1", "sidecar/m1").modelKey),
        timeout=5,
    )  # fmt: skip
    assert predicted.sizeInBytes > 0
    loaded = sidecar.stub.loadModel(request("m1", "sidecar/m1"), timeout=60)
    assert loaded.sizeInBytes > 0
    assert infer_text(f"127.0.0.1:{simple_string_server.port}", "m1", ["world"]) == ["hello world"]
    sidecar.stub.loadModel(request("m2", "sidecar/m2.tar.gz"), timeout=60)
    assert infer_text(f"127.0.0.1:{simple_string_server.port}", "m2", ["x"]) == ["packed x"]
    for model_id in ("m1", "m2"):
        sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId=model_id), timeout=10)
    assert files_under(sidecar_dirs.root_model_dir) == []


def test_bad_credentials_are_permission_denied_and_leave_nothing(
    sidecar: SidecarHandle, sidecar_dirs: SidecarDirs
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        sidecar.stub.loadModel(request("m3", "sidecar/m1", "badstore"), timeout=60)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not-the-secret" not in (caught.value.details() or "")
    assert files_under(sidecar_dirs.root_model_dir) == []
