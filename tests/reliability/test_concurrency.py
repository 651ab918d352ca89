"""A stateful property test: loads, unloads, repeated loads, cancelled loads, races and
runtimeStatus over a handful of ids, against a real sidecar and simple-string server.

After every step the model server's index, ROOT_MODEL_DIR and the sidecar's own
answers (modelSize) must agree on which models are loaded.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import grpc
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from stack import Record

from mesh_sidecar.mmesh import model_runtime_pb2 as pb
from mesh_sidecar.testing.checks import server_models, stray_entries
from mesh_sidecar.testing.processes import ServerHandle, SidecarHandle

pytestmark = pytest.mark.slow

IDS = ["a", "b", "c", "d"]
KEY = json.dumps({"storage_key": "localpvc", "model_type": {"name": "string"}})
ids = st.sampled_from(IDS)


def _load(stub: Any, model_id: str, timeout: float = 30) -> str:
    request = pb.LoadModelRequest(
        modelId=model_id, modelType="string", modelPath="models/m1", modelKey=KEY
    )
    try:
        stub.loadModel(request, timeout=timeout)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    return "OK"


def _unload(stub: Any, model_id: str) -> str:
    try:
        stub.unloadModel(pb.UnloadModelRequest(modelId=model_id), timeout=30)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    return "OK"


class SidecarMachine(RuleBasedStateMachine):
    """The model of ModelMesh's view: which ids it believes loaded (None: unknown)."""

    sidecar: ClassVar[SidecarHandle]
    server: ClassVar[ServerHandle]
    steps: ClassVar[dict[str, int]] = {}
    pool = ThreadPoolExecutor(4)

    def __init__(self) -> None:
        super().__init__()
        for model_id in IDS:
            assert _unload(self.sidecar.stub, model_id) == "OK"
        self.expected: dict[str, bool | None] = dict.fromkeys(IDS, False)

    def _count(self, name: str) -> None:
        self.steps[name] = self.steps.get(name, 0) + 1

    @rule(model_id=ids)
    def load(self, model_id: str) -> None:
        self._count("load (or repeated load)")
        assert _load(self.sidecar.stub, model_id) == "OK"
        self.expected[model_id] = True

    @rule(model_id=ids)
    def unload(self, model_id: str) -> None:
        self._count("unload")
        assert _unload(self.sidecar.stub, model_id) == "OK"
        self.expected[model_id] = False

    @rule(model_id=ids, deadline=st.floats(0.001, 0.05))
    def cancelled_load(self, model_id: str, deadline: float) -> None:
        self._count("load cancelled by its deadline")
        was_loaded = self.expected[model_id]
        code = _load(self.sidecar.stub, model_id, timeout=deadline)
        assert code in ("OK", "DEADLINE_EXCEEDED")
        # A cancelled load of a loaded model answers at once; otherwise it may land or not.
        self.expected[model_id] = True if (code == "OK" or was_loaded) else None

    @rule(model_id=ids, loads=st.integers(1, 3), unloads=st.integers(0, 2))
    def race(self, model_id: str, loads: int, unloads: int) -> None:
        self._count("concurrent loads and unloads of one id")
        calls = [self.pool.submit(_load, self.sidecar.stub, model_id) for _ in range(loads)]
        calls += [self.pool.submit(_unload, self.sidecar.stub, model_id) for _ in range(unloads)]
        assert {c.result() for c in calls} == {"OK"}
        self.expected[model_id] = True if unloads == 0 else None  # order decides

    @rule(first=ids, second=ids)
    def parallel_ids(self, first: str, second: str) -> None:
        self._count("loads of two ids in parallel")
        calls = [self.pool.submit(_load, self.sidecar.stub, m) for m in (first, second)]
        assert [c.result() for c in calls] == ["OK", "OK"]
        self.expected[first] = self.expected[second] = True

    @rule()
    def status(self) -> None:
        self._count("runtimeStatus")
        answer = self.sidecar.stub.runtimeStatus(pb.RuntimeStatusRequest(), timeout=5)
        assert answer.status == pb.RuntimeStatusResponse.READY

    def _views(self) -> tuple[set[str], set[str], set[str]]:
        root = self.sidecar.root_model_dir
        on_disk = {p.name for p in root.iterdir()} & set(IDS)
        sizes = set()
        for model_id in IDS:
            try:
                self.sidecar.stub.modelSize(pb.ModelSizeRequest(modelId=model_id), timeout=5)
                sizes.add(model_id)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
        return server_models(f"127.0.0.1:{self.server.port}"), on_disk, sizes

    @invariant()
    def server_disk_and_sidecar_agree(self) -> None:
        # A cancelled call returns before the sidecar has finished cleaning up: allow it
        # a moment to settle, then every view must agree.
        deadline = time.monotonic() + 5
        while True:
            server, disk, sizes = self._views()
            partial = stray_entries(self.sidecar.root_model_dir)
            if (server == disk == sizes and not partial) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert server == disk == sizes, (server, disk, sizes)
        assert partial == []
        for model_id, loaded in self.expected.items():
            if loaded is not None:
                assert (model_id in server) == loaded, (model_id, loaded, server)


def test_server_disk_and_sidecar_agree_under_racing_calls(
    sidecar: SidecarHandle, simple_string_server: ServerHandle, record: Record
) -> None:
    SidecarMachine.sidecar = sidecar
    SidecarMachine.server = simple_string_server
    SidecarMachine.steps = {}
    run_state_machine_as_test(
        SidecarMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    record(
        "concurrency (Hypothesis stateful)",
        "; ".join(f"{name}: {n}" for name, n in sorted(SidecarMachine.steps.items())),
        "server index, disk and modelSize agreed after every step",
        tries=sum(SidecarMachine.steps.values()),
    )
