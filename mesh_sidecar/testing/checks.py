"""What tests look at: inference answers through tritonclient, and files left on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tritonclient.grpc as triton


def infer_text(
    address: str, model_id: str, texts: list[str], headers: dict[str, str] | None = None
) -> list[str]:
    """ModelInfer with one BYTES input `INPUT`; the decoded elements of output `OUTPUT`."""
    client = triton.InferenceServerClient(address)
    try:
        data = triton.InferInput("INPUT", [len(texts)], "BYTES")
        data.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
        out = client.infer(model_id, [data], headers=headers).as_numpy("OUTPUT")
    finally:
        client.close()
    assert out is not None, "the answer has no OUTPUT"
    return [v.decode() if isinstance(v, bytes) else str(v) for v in out]


def files_under(root: Path) -> list[str]:
    """Every path under `root`, relative and sorted: what a test expects to be left."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def server_models(address: str) -> set[str]:
    """Names of the models a KServe V2 server reports READY in its RepositoryIndex."""
    client = triton.InferenceServerClient(address)
    try:
        index = client.get_model_repository_index()
    finally:
        client.close()
    return {m.name for m in index.models if m.state == "READY"}


def stray_entries(root: Path) -> list[str]:
    """Entries under `root` that a failed load must never leave: staging dirs of pulls."""
    while True:
        try:
            return sorted(str(p.relative_to(root)) for p in root.rglob(".partial-*"))
        except FileNotFoundError:
            continue  # a staging dir was removed while it was walked: look again
