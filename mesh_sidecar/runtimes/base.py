"""The runtime plugin interface: what a model server adapter implements.

The framework pulls the model's files, serialises calls per model id, cleans
up after failures and cancellations, reports sizes, status and metrics. An
adapter only talks to its model server:

    class MyServerAdapter(RuntimeAdapter):
        name = "my-server"

        async def is_ready(self) -> bool: ...
        async def describe(self) -> RuntimeInfo: ...
        async def list_loaded(self) -> list[str]: ...
        async def load(self, model: ModelFiles) -> LoadResult: ...
        async def unload(self, model_id: str) -> None: ...

Raise the errors of `mesh_sidecar.errors` (RuntimeLoadFailed with the
server's reason, Unavailable when it cannot be reached, ...). Register the
class under the entry-point group `mesh_sidecar.runtimes`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import grpc

from mesh_sidecar.runtimes.layout import LayoutPlan

#: For any KServe V2 server (Triton, MLServer, simple-string): ModelMesh writes the model
#: id into field 1 of ModelInferRequest (`model_name`) and ModelMetadataRequest (`name`),
#: so clients can infer and read a model's metadata through ModelMesh.
KSERVE_V2_METHOD_INFOS: Mapping[str, Sequence[int]] = {
    "inference.GRPCInferenceService/ModelInfer": [1],
    "inference.GRPCInferenceService/ModelMetadata": [1],
}

#: Options for gRPC channels to a model server. gRPC's default reconnect backoff
#: grows to two minutes, so a model server restarted by its pod would be answered
#: UNAVAILABLE long after it is back; a second is plenty on loopback.
MODEL_SERVER_CHANNEL_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def model_server_channel(address: str) -> grpc.aio.Channel:
    """An insecure grpc.aio channel to a model server; make it inside the running loop."""
    return grpc.aio.insecure_channel(address, options=list(MODEL_SERVER_CHANNEL_OPTIONS))


@dataclass(frozen=True)
class RuntimeSettings:
    """What the framework tells an adapter about its surroundings."""

    address: str  # host:port of the model server (RUNTIME_PORT)
    root_model_dir: Path
    model_size_multiplier: float = 1.25
    options: Mapping[str, str] = field(default_factory=dict)  # adapter-specific, from the CLI


@dataclass(frozen=True)
class RuntimeInfo:
    """How the model server describes itself to ModelMesh (runtimeStatus).

    Fields left as None take the sidecar's configured values; the standalone
    puller fills them from the custom model server it fronts.
    """

    version: str
    method_infos: Mapping[str, Sequence[int]] = field(default_factory=dict)
    allow_any_method: bool = False
    capacity_bytes: int | None = None
    max_loading_concurrency: int | None = None
    loading_timeout_ms: int | None = None
    default_model_size: int | None = None
    limit_model_concurrency: bool | None = None


@dataclass(frozen=True)
class ModelFiles:
    """A pulled model, ready to lay out and load."""

    model_id: str
    model_type: str  # modelKey's model_type name, else the request's modelType
    model_type_version: str | None
    path: Path  # the pulled model: a dir, or a single file
    disk_size_bytes: int
    schema_path: Path | None = None
    # The request as the model server should see it (CONTEXT: local modelPath,
    # storage fields removed, disk_size_bytes set); used by the standalone puller.
    request_model_type: str = ""
    model_key: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadResult:
    """What a load answers; None leaves the figure to the framework."""

    size_bytes: int | None = None
    max_concurrency: int | None = None


class RuntimeAdapter(ABC):
    """Drives one model server. One instance per sidecar process."""

    name: ClassVar[str]
    #: Dir under ROOT_MODEL_DIR holding the server's model repository, one subdir per
    #: model id (e.g. "_triton_models"), or None when the server loads the pulled files.
    repository_dir: ClassVar[str | None] = None
    #: True when `list_loaded` tells the server's loaded models at any time, not only
    #: at start: the sidecar then notices a restarted server that lost its models and
    #: loads them again from the files it kept, so what it told ModelMesh stays true.
    lists_loaded_models: ClassVar[bool] = True

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings

    @abstractmethod
    async def is_ready(self) -> bool:
        """One probe: is the model server up and ready? False when unreachable."""

    async def wait_ready(self, interval: float = 0.2) -> None:
        """Wait until `is_ready()` says so."""
        while not await self.is_ready():
            await asyncio.sleep(interval)

    @abstractmethod
    async def describe(self) -> RuntimeInfo:
        """The server's version and the inference methods ModelMesh may route to it."""

    @abstractmethod
    async def list_loaded(self) -> list[str]:
        """Ids of the models the server has loaded (for the start-up purge)."""

    def check_model_id(self, model_id: str) -> None:
        """Raise InvalidRequest if the server cannot use `model_id`; called before any pull.

        The framework has already checked that the id is a safe dir name.
        """
        return None  # most servers take any safe dir name

    def plan_layout(self, model: ModelFiles) -> LayoutPlan | None:
        """The files the server wants under `repository_path(model_id)`, or None.

        Pure: decide from `model` and the pulled tree, do not write anything.
        """
        return None

    @abstractmethod
    async def load(self, model: ModelFiles) -> LoadResult:
        """Ask the server to load the model (laid out already, if planned)."""

    @abstractmethod
    async def unload(self, model_id: str) -> None:
        """Ask the server to unload; return quietly (or raise NotFound) if not loaded."""

    async def model_size(self, model_id: str) -> int | None:
        """Memory used by a loaded model, if the server knows; None: disk size x multiplier."""
        return None

    async def close(self) -> None:
        """Close channels to the server."""

    def repository_path(self, model_id: str) -> Path | None:
        """Where this model's laid-out files live, if the server has a repository dir."""
        if self.repository_dir is None:
            return None
        return self.settings.root_model_dir / self.repository_dir / model_id

    @classmethod
    def server_command(cls, port: int, root_model_dir: Path) -> list[str] | None:
        """A command that starts this adapter's model server on `port`, if it can.

        Used by `mesh-sidecar mesh --spawn` and the test fixtures.
        """
        return None
