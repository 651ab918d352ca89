"""The `triton` runtime: drives a Triton Inference Server over its KServe V2 gRPC API.

Triton runs with `--model-control-mode=explicit` on `ROOT_MODEL_DIR/_triton_models`,
and `--strict-readiness=false` (as the Go sidecar's docs run it): with strict
readiness, Triton's server-ready stays false for good once any model failed to load,
so a restarted sidecar would never see it ready.

The sidecar lays each model out there (see `triton_layout`), then asks Triton to
load it by name (the model id). Unloading is asynchronous in Triton, so `unload`
waits until the index no longer shows the model as loaded: the framework
deletes the files right after, and Triton must be done with them by then.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from mesh_sidecar.errors import (
    InvalidRequest,
    NotFound,
    RuntimeLoadFailed,
    SidecarError,
    Unavailable,
)
from mesh_sidecar.runtimes.base import (
    KSERVE_V2_METHOD_INFOS,
    LoadResult,
    ModelFiles,
    RuntimeAdapter,
    RuntimeInfo,
    RuntimeSettings,
)
from mesh_sidecar.runtimes.layout import LayoutPlan
from mesh_sidecar.runtimes.triton_layout import plan_triton_layout

#: Ids Triton serves reliably. Triton's python backend starts its stub with a command
#: line holding the model name: a space, `;` or `\` in it breaks the stub's start and
#: the load never finishes; non-ASCII names fail in the stub's default locale.
_TRITON_NAME = re.compile(r"[A-Za-z0-9_.:@%+=,~-]+")

# States of a model version in Triton's repository index that hold the model in memory.
_LOADED_STATES = frozenset({"READY", "LOADING", "UNLOADING"})


class TritonAdapter(RuntimeAdapter):
    """Loads laid-out models into Triton with RepositoryModelLoad / RepositoryModelUnload.

    Options (RuntimeSettings.options): `unload_timeout` in seconds (default 60), how
    long an unload waits for Triton to release the model.
    """

    name = "triton"
    repository_dir = "_triton_models"

    def __init__(self, settings: RuntimeSettings) -> None:
        super().__init__(settings)
        self.unload_timeout = float(settings.options.get("unload_timeout", 60))
        # grpc.aio channels belong to the event loop they were made on: made on first use.
        self._client: InferenceServerClient | None = None

    @property
    def client(self) -> InferenceServerClient:
        if self._client is None:
            self._client = InferenceServerClient(self.settings.address)
        return self._client

    def check_model_id(self, model_id: str) -> None:
        """Refuse ids Triton cannot use as a model name (InvalidRequest), before any pull."""
        if not _TRITON_NAME.fullmatch(model_id) or model_id in (".", ".."):
            shown = model_id[:64].encode("unicode_escape").decode()
            raise InvalidRequest(
                f"model id {shown!r} cannot be a Triton model name: use ASCII letters, "
                "digits and the characters _ . : @ % + = , ~ -"
            )

    async def is_ready(self) -> bool:
        try:
            ready: bool = await self.client.is_server_ready(client_timeout=5)
        except InferenceServerException:
            return False
        return ready

    async def describe(self) -> RuntimeInfo:
        metadata = await self._call(self.client.get_server_metadata(client_timeout=10))
        return RuntimeInfo(version=metadata.version, method_infos=KSERVE_V2_METHOD_INFOS)

    async def list_loaded(self) -> list[str]:
        return sorted(
            name for name, states in (await self._index()).items() if states & _LOADED_STATES
        )

    def plan_layout(self, model: ModelFiles) -> LayoutPlan:
        self.check_model_id(model.model_id)
        return plan_triton_layout(model.path, model.model_type, model.schema_path, model.model_id)

    async def load(self, model: ModelFiles) -> LoadResult:
        try:
            await self.client.load_model(model.model_id)
        except InferenceServerException as exc:
            if _status(exc) in ("UNAVAILABLE", "CANCELLED"):
                raise _translate(exc, "load") from exc
            # Triton's own reason: the backend's message, often with the model's traceback.
            raise RuntimeLoadFailed(_message(exc)) from exc
        return LoadResult()

    async def unload(self, model_id: str) -> None:
        await self._call(self.client.unload_model(model_id, client_timeout=30), "unload")
        deadline = time.monotonic() + self.unload_timeout
        delay = 0.02
        while (await self._index()).get(model_id, frozenset()) & _LOADED_STATES:
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"Triton has not finished unloading {model_id!r} after {self.unload_timeout:g}s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _index(self) -> dict[str, frozenset[str]]:
        """Model name -> the states of its versions, from Triton's repository index."""
        index = await self._call(self.client.get_model_repository_index(client_timeout=10))
        states: dict[str, set[str]] = {}
        for entry in index.models:
            states.setdefault(entry.name, set()).add(entry.state)
        return {name: frozenset(found) for name, found in states.items()}

    async def _call(self, call: Any, what: str = "request") -> Any:
        try:
            return await call
        except InferenceServerException as exc:
            raise _translate(exc, what) from exc


def _status(exc: InferenceServerException) -> str:
    # tritonclient keeps the gRPC code as text, e.g. "StatusCode.UNAVAILABLE".
    return str(exc.status() or "").rpartition(".")[2]


def _message(exc: InferenceServerException) -> str:
    return str(exc.message() or exc).strip()


def _translate(exc: InferenceServerException, what: str) -> SidecarError:
    status = _status(exc)
    if status in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"):
        return Unavailable(f"Triton is unreachable ({what}: {status}): {_message(exc)}")
    if status == "NOT_FOUND":
        return NotFound(_message(exc))
    return SidecarError(f"Triton {what} failed ({status}): {_message(exc)}")
