"""What the coordinator knows about models and vmodels, and how their status reads.

Plain records plus the rules that need no I/O: id checks, ModelInfo
comparison, a model's status from its copies and failures, a vmodel's status.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field

from mesh_sidecar.errors import InvalidRequest, SidecarError

#: A model that failed to load this many times within FAILURE_WINDOW_S is LOADING_FAILED.
MAX_LOAD_FAILURES = 3
FAILURE_WINDOW_S = 15 * 60.0


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of ModelMesh's lastUsedTime and copy times."""
    return int(time.time() * 1000)


class ModelState(enum.IntEnum):
    """Mirrors mmesh.ModelStatusInfo.ModelStatus (same numbers)."""

    NOT_FOUND = 0
    NOT_LOADED = 1
    LOADING = 2
    LOADED = 3
    LOADING_FAILED = 4


class VModelState(enum.IntEnum):
    """Mirrors mmesh.VModelStatusInfo.VModelStatus (same numbers)."""

    NOT_FOUND = 0
    DEFINED = 1
    TRANSITIONING = 2
    TRANSITION_FAILED = 3


def check_id(value: str, what: str) -> str:
    """An id must be non-empty printable text (it travels in headers and file names)."""
    if not value:
        raise InvalidRequest(f"must provide non-empty {what}")
    if len(value.encode()) > 255 or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise InvalidRequest(f"{what} must be at most 255 bytes of printable text")
    return value


@dataclass(frozen=True)
class ModelSpec:
    """ModelInfo: what loadModel receives as modelType, modelPath and modelKey."""

    type: str
    path: str
    key: str


@dataclass
class ModelCopy:
    """One copy of a model on one instance."""

    instance: str
    state: ModelState  # LOADING or LOADED
    units: int
    since_ms: int
    in_flight: int = 0


@dataclass(frozen=True)
class LoadFailure:
    """One failed load attempt, kept for FAILURE_WINDOW_S."""

    instance: str
    at: float  # time.monotonic()
    at_ms: int
    message: str
    code: str


@dataclass
class ModelRecord:
    """A registered model."""

    model_id: str
    spec: ModelSpec
    last_used_ms: int
    auto_delete: bool = False
    ref_count: int = 0  # vmodels pointing at it (active or target)
    copies: dict[str, ModelCopy] = field(default_factory=dict)
    failures: list[LoadFailure] = field(default_factory=list)
    size_bytes: int | None = None
    load_task: asyncio.Task[None] | None = None
    urgent: bool = False  # a waiting request needs the load in progress
    ticket: asyncio.Future[None] | None = None  # its place in an instance's loading queue
    ticket_instance: str | None = None
    gave_up: bool = False  # the last load round ended without a copy
    blocked: SidecarError | None = None  # why the last round could not even try
    requests_in_window: int = 0
    window_start: float = 0.0

    def recent_failures(self, now: float) -> list[LoadFailure]:
        """Failures still inside the window; older ones are forgotten."""
        self.failures = [f for f in self.failures if now - f.at < FAILURE_WINDOW_S]
        return self.failures

    def loaded_copies(self) -> list[ModelCopy]:
        return [c for c in self.copies.values() if c.state is ModelState.LOADED]

    def loading(self) -> bool:
        return (self.load_task is not None and not self.load_task.done()) or any(
            c.state is ModelState.LOADING for c in self.copies.values()
        )

    def state(self, now: float) -> ModelState:
        """The model's status as getModelStatus reports it."""
        if self.loaded_copies():
            return ModelState.LOADED
        if self.loading():
            return ModelState.LOADING
        if self.gave_up and self.recent_failures(now):
            return ModelState.LOADING_FAILED
        return ModelState.NOT_LOADED


@dataclass
class VModelRecord:
    """A vmodel: serves `active` while `target` loads, then switches."""

    vmodel_id: str
    owner: str
    active: str
    target: str
    target_failed: bool = False
    transition_task: asyncio.Task[None] | None = None

    def in_transition(self) -> bool:
        return self.active != self.target

    def state(self) -> VModelState:
        if not self.in_transition():
            return VModelState.DEFINED
        return VModelState.TRANSITION_FAILED if self.target_failed else VModelState.TRANSITIONING


@dataclass
class Registry:
    """Every model and vmodel the coordinator knows, by id."""

    models: dict[str, ModelRecord] = field(default_factory=dict)
    vmodels: dict[str, VModelRecord] = field(default_factory=dict)
