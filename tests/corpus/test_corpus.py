"""The hostile-input corpus against a real sidecar and a real S3 server (moto).

Every entry of tests/corpus/*.json (and the archives built by archives.py) is
loaded through `loadModel`. For each: the answer is one of the expected codes
with a message, nothing is written outside ROOT_MODEL_DIR, no partial dir is
left, and the sidecar still answers READY (no crash).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from archives import MAX_BYTES, MAX_MEMBERS, corpus_archives

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.testing.checks import files_under
from mesh_sidecar.testing.plugin import SidecarDirs
from mesh_sidecar.testing.processes import ServerHandle, SidecarHandle, run_sidecar
from mesh_sidecar.testing.storage import S3Server

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
KEY = json.dumps({"storage_key": "store", "model_type": {"name": "string"}})
ESCAPE_TARGETS = [Path("/tmp/absolute-escape.txt"), Path("/etc/escape.txt")]


def corpus(name: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((HERE / name).read_text())
    return entries


def snapshot(tmp_path: Path, root: Path) -> list[str]:
    """Every path under tmp_path outside ROOT_MODEL_DIR and the storage configs the test
    writes: where an escape would land."""
    return [
        p for p in files_under(tmp_path) if p.split("/")[0] not in (root.name, "storage-config")
    ]


@pytest.fixture
def corpus_sidecar(
    simple_string_server: ServerHandle, sidecar_dirs: SidecarDirs, s3_server: S3Server
) -> Iterator[SidecarHandle]:
    config = s3_server.config(max_attempts="2")
    (sidecar_dirs.storage_config_dir / "store").write_text(json.dumps(config))
    env = {"ARCHIVE_MAX_BYTES": str(MAX_BYTES), "ARCHIVE_MAX_MEMBERS": str(MAX_MEMBERS)}
    with run_sidecar(
        "simple-string", simple_string_server.port, *sidecar_dirs.as_args(), extra_env=env
    ) as handle:
        yield handle


def try_load(sidecar: SidecarHandle, model_id: str, path: str, key: str = KEY) -> tuple[str, str]:
    request = pb.LoadModelRequest(
        modelId=model_id, modelType="string", modelPath=path, modelKey=key
    )
    try:
        sidecar.stub.loadModel(request, timeout=60)
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


def test_the_whole_corpus(
    corpus_sidecar: SidecarHandle,
    sidecar_dirs: SidecarDirs,
    s3_server: S3Server,
    tmp_path: Path,
    record: Callable[..., None],
) -> None:
    sidecar = corpus_sidecar
    root = sidecar_dirs.root_model_dir
    admin = s3_server.admin
    admin.put_object(Bucket="models", Key="corpus/good/model.txt", Body=b"hello ")
    before = snapshot(tmp_path, root)
    assert not any(target.exists() for target in ESCAPE_TARGETS)
    failures: list[str] = []
    tally: dict[str, dict[str, int]] = {}

    def check(kind: str, name: str, model_id: str, path: str, expect: list[str], **kw: Any) -> None:
        code, message = try_load(sidecar, model_id, path, **kw)
        counts = tally.setdefault(kind, {})
        counts[code] = counts.get(code, 0) + 1
        if code not in expect:
            failures.append(f"{kind} {name!r}: {code} {message!r}, expected one of {expect}")
        if code != "OK" and not message.strip():
            failures.append(f"{kind} {name!r}: {code} without a message")
        # A load that worked leaves its model dir; anything else leaves nothing.
        leftover = [p for p in files_under(root) if code != "OK" or p.split("/")[0] != model_id]
        if leftover:
            failures.append(f"{kind} {name!r}: left {leftover[:5]}")
        if model_id:
            sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId=model_id), timeout=30)
        if files_under(root):
            failures.append(f"{kind} {name!r}: unload left {files_under(root)[:5]}")
        status = sidecar.stub.runtimeStatus(pb.RuntimeStatusRequest(), timeout=5)
        if status.status != pb.RuntimeStatusResponse.READY or sidecar.process.popen.poll():
            failures.append(f"{kind} {name!r}: the sidecar is not READY any more")

    for n, entry in enumerate(corpus("object_keys.json")):
        prefix = f"corpus/keys/{n}"
        for key in entry["keys"]:
            admin.put_object(Bucket="models", Key=f"{prefix}/{key}", Body=b"hello ")
        check("object key", entry["name"], "m1", prefix, entry["expect"])

    for name, (data, expect) in corpus_archives().items():
        admin.put_object(Bucket="models", Key=f"corpus/archives/{name}", Body=data)
        check("archive", name, "m1", f"corpus/archives/{name}", list(expect))

    for entry in corpus("model_keys.json"):
        key = entry.get("modelKey", "")
        if entry.get("generate") == "huge":
            key = json.dumps({"storage_key": "store", "pad": "x" * 100 * 1024})
        elif entry.get("generate") == "deep":
            key = "[" * 100_000 + "]" * 100_000
        check("modelKey", entry["name"], "m1", "corpus/good", entry["expect"], key=key)

    for entry in corpus("model_ids.json"):
        unloadable = entry["expect"] == ["OK"]
        model_id = entry["id"]
        code, message = try_load(sidecar, model_id, "corpus/good")
        tally.setdefault("model id", {}).setdefault(code, 0)
        tally["model id"][code] += 1
        if code not in entry["expect"]:
            failures.append(f"model id {entry['name']!r}: {code} {message!r}")
        if unloadable:
            sidecar.stub.unloadModel(pb.UnloadModelRequest(modelId=model_id), timeout=30)
        if files_under(root):
            failures.append(f"model id {entry['name']!r}: left {files_under(root)[:5]}")

    for n, entry in enumerate(corpus("storage_configs.json")):
        text = entry.get("raw") or json.dumps(entry["config"]).replace(
            "$ENDPOINT", s3_server.endpoint
        )
        (sidecar_dirs.storage_config_dir / f"bad{n}").write_text(text)
        key = json.dumps({"storage_key": f"bad{n}"})
        check("storage config", entry["name"], "m1", "corpus/good", entry["expect"], key=key)

    escapes = sorted(set(snapshot(tmp_path, root)) - set(before)) + [
        str(t) for t in ESCAPE_TARGETS if t.exists()
    ]
    for kind, counts in tally.items():
        record(
            "hostile input corpus",
            kind,
            ", ".join(f"{n} x {c}" for c, n in sorted(counts.items())),
            tries=sum(counts.values()),
            escapes=len(escapes),
        )
    assert escapes == []
    assert failures == [], "\n".join(failures)
