"""The `echo` runtime: the simple-string model server, loading from a model repository.

Where the built-in `simple-string` runtime hands the server the pulled path,
this adapter lays each model out in a repository the server reads, the way a
Triton or MLServer adapter does: `ROOT_MODEL_DIR/_echo_models/<model id>/model.txt`,
a link to the pulled text. The server then answers every input with that text
followed by the input: an echo with a prefix.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

import tritonclient.grpc.aio as kserve
from tritonclient.utils import InferenceServerException

from mesh_sidecar.errors import FailedPrecondition, RuntimeLoadFailed, Unavailable
from mesh_sidecar.runtimes.base import (
    KSERVE_V2_METHOD_INFOS,
    LoadResult,
    ModelFiles,
    RuntimeAdapter,
    RuntimeInfo,
    RuntimeSettings,
)
from mesh_sidecar.runtimes.layout import LayoutPlan, Link

REPOSITORY_DIR = "_echo_models"
TEXT_FILE = "model.txt"
PROBE_TIMEOUT_SECONDS = 5.0


def _status(exc: InferenceServerException) -> str:
    # tritonclient reports the gRPC code as a string such as "StatusCode.NOT_FOUND".
    return str(exc.status() or "")


class EchoAdapter(RuntimeAdapter):
    """Drives `mesh-sidecar simple-string-server --model-repository ROOT/_echo_models`."""

    name: ClassVar[str] = "echo"
    repository_dir: ClassVar[str | None] = REPOSITORY_DIR

    def __init__(self, settings: RuntimeSettings) -> None:
        super().__init__(settings)
        self._client: kserve.InferenceServerClient | None = None

    @property
    def client(self) -> kserve.InferenceServerClient:
        # The aio client's channel belongs to the running event loop: create it on first use.
        if self._client is None:
            self._client = kserve.InferenceServerClient(self.settings.address)
        return self._client

    def _error(self, exc: InferenceServerException, what: str) -> Exception:
        """Unavailable when the server cannot be reached, else its own reason (INTERNAL)."""
        if _status(exc) == "StatusCode.UNAVAILABLE":
            return Unavailable(f"{what}: the echo server at {self.settings.address} is unreachable")
        return RuntimeLoadFailed(f"{what}: {exc.message()}")

    async def is_ready(self) -> bool:
        try:
            return bool(await self.client.is_server_ready(client_timeout=PROBE_TIMEOUT_SECONDS))
        except InferenceServerException:
            return False

    async def describe(self) -> RuntimeInfo:
        try:
            meta = await self.client.get_server_metadata(client_timeout=PROBE_TIMEOUT_SECONDS)
        except InferenceServerException as exc:
            raise self._error(exc, "server metadata") from None
        return RuntimeInfo(version=meta.version, method_infos=KSERVE_V2_METHOD_INFOS)

    async def list_loaded(self) -> list[str]:
        try:
            index = await self.client.get_model_repository_index(
                client_timeout=PROBE_TIMEOUT_SECONDS
            )
        except InferenceServerException as exc:
            raise self._error(exc, "repository index") from None
        return [m.name for m in index.models if m.state == "READY"]

    def plan_layout(self, model: ModelFiles) -> LayoutPlan:
        """`model.txt` in the repository dir, linked to the pulled text file."""
        if model.path.is_dir():
            source = model.path / TEXT_FILE
            if not source.is_file():
                raise FailedPrecondition(
                    f"model {model.model_id!r} has no {TEXT_FILE}: the echo runtime serves "
                    f"a dir with {TEXT_FILE} or a single text file"
                )
        else:
            source = model.path
        return [Link(TEXT_FILE, source)]

    async def load(self, model: ModelFiles) -> LoadResult:
        # The server finds the model in its repository under the model id.
        try:
            await self.client.load_model(model.model_id)
        except InferenceServerException as exc:
            raise self._error(exc, f"echo server failed to load {model.model_id!r}") from None
        return LoadResult()

    async def unload(self, model_id: str) -> None:
        try:
            await self.client.unload_model(model_id)
        except InferenceServerException as exc:
            if _status(exc) == "StatusCode.NOT_FOUND":
                return  # not loaded: nothing to do
            raise self._error(exc, f"unload of {model_id!r}") from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @classmethod
    def server_command(cls, port: int, root_model_dir: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mesh_sidecar.adapter.cli",
            "simple-string-server",
            "--port",
            str(port),
            "--model-repository",
            str(root_model_dir / REPOSITORY_DIR),
        ]
