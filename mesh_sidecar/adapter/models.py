"""The model state machine: per-id serialisation, pull -> lay out -> load, and cleanup.

Calls for one model id never overlap; different ids run in parallel, at most
LOADING_CONCURRENCY of them pulling and loading at once. A load that fails or
is cancelled leaves nothing behind: no pulled dir, no repository dir, no model
in the server.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from mesh_sidecar.adapter.config import Settings
from mesh_sidecar.adapter.ids import check_model_id
from mesh_sidecar.adapter.metrics import Metrics
from mesh_sidecar.adapter.modelkey import (
    ModelKey,
    model_key_for_runtime,
    parse_model_key,
    resolve_source,
)
from mesh_sidecar.aio import finish
from mesh_sidecar.errors import NotFound, SidecarError
from mesh_sidecar.pullers.base import (
    Puller,
    PullerSettings,
    PullResult,
    StorageSource,
    pull_atomically,
)
from mesh_sidecar.pullers.registry import PULLERS
from mesh_sidecar.runtimes.base import ModelFiles, RuntimeAdapter
from mesh_sidecar.runtimes.layout import apply_layout

log = logging.getLogger("mesh_sidecar.models")

SCHEMAS_DIR = "_schemas"  # pulled schema files, one per model id
PREDICT_SIZE_BUDGET_S = 0.4  # ModelMesh gives predictModelSize 500 ms


@dataclass(frozen=True)
class LoadRequest:
    """A loadModel / predictModelSize request, as ModelMesh sent it."""

    model_id: str
    model_type: str
    model_path: str
    model_key: str


@dataclass(frozen=True)
class LoadedModel:
    """A model the server has loaded."""

    model_id: str
    size_bytes: int
    max_concurrency: int
    pulled: PullResult
    files: ModelFiles  # what the server was asked to load: enough to load it again


class ModelManager:
    """Loads and unloads models for one runtime, keeping disk and server in step."""

    def __init__(self, settings: Settings, runtime: RuntimeAdapter, metrics: Metrics) -> None:
        self.settings = settings
        self.runtime = runtime
        self.metrics = metrics
        self.root = settings.root_model_dir
        self._loaded: dict[str, LoadedModel] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._slots = asyncio.Semaphore(settings.loading_concurrency)
        self._pullers: dict[str, Puller] = {}
        self._puller_settings = PullerSettings(
            pvc_mounts_dir=settings.pvc_mounts_dir,
            archive_max_bytes=settings.archive_max_bytes,
            archive_max_members=settings.archive_max_members,
        )
        self.reserved_ids = {SCHEMAS_DIR} | (
            {runtime.repository_dir} if runtime.repository_dir else set()
        )

    # -- per-id serialisation -------------------------------------------------

    @asynccontextmanager
    async def _locked(self, model_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(model_id, (asyncio.Lock(), 0))
        self._locks[model_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[model_id]
            if users == 1:
                del self._locks[model_id]
            else:
                self._locks[model_id] = (lock, users - 1)

    def _check_id(self, model_id: str) -> None:
        check_model_id(model_id, self.reserved_ids)

    def puller(self, storage_type: str) -> Puller:
        """The process-wide puller of a storage type (clients are reused across pulls)."""
        if storage_type not in self._pullers:
            self._pullers[storage_type] = PULLERS.get(storage_type)(self._puller_settings)
        return self._pullers[storage_type]

    # -- paths owned by a model -------------------------------------------------

    def _model_dirs(self, model_id: str) -> list[Path]:
        dirs = [self.root / model_id, self.root / SCHEMAS_DIR / model_id]
        repo = self.runtime.repository_path(model_id)
        if repo is not None:
            dirs.append(repo)
        return dirs

    def _remove_files(self, model_id: str) -> None:
        for path in self._model_dirs(model_id):
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path)

    # -- the calls ----------------------------------------------------------------

    @property
    def loaded(self) -> dict[str, LoadedModel]:
        return dict(self._loaded)

    async def load(self, request: LoadRequest) -> LoadedModel:
        """Pull, lay out and load a model; a repeated load answers without pulling."""
        self._check_id(request.model_id)
        self.runtime.check_model_id(request.model_id)
        key = parse_model_key(request.model_key)
        source = resolve_source(key, request.model_path, self.settings.storage_config_dir)
        async with self._locked(request.model_id):
            existing = self._loaded.get(request.model_id)
            if existing is not None:
                return existing
            async with self._slots:
                return await self._load_locked(request, key, source)

    async def _load_locked(
        self, request: LoadRequest, key: ModelKey, source: StorageSource
    ) -> LoadedModel:
        model_id = request.model_id
        started = time.monotonic()
        runtime_called = False
        try:
            self._remove_files(model_id)  # leftovers of a crash: never load stale files
            pulled = await self._pull(source, self.root / model_id)
            schema = None
            if key.schema_path:
                schema_source = StorageSource(source.type, source.config, key.schema_path)
                schema_dir = self.root / SCHEMAS_DIR / model_id
                schema_dir.parent.mkdir(parents=True, exist_ok=True)
                schema = (await self._pull(schema_source, schema_dir)).path
            files = ModelFiles(
                model_id=model_id,
                model_type=key.model_type or _placement_free(request.model_type),
                model_type_version=key.model_type_version,
                path=pulled.path,
                disk_size_bytes=pulled.bytes,
                schema_path=schema,
                request_model_type=request.model_type,
                model_key=model_key_for_runtime(key, pulled.bytes, schema),
            )
            plan = self.runtime.plan_layout(files)
            repo = self.runtime.repository_path(model_id)
            if plan is not None and repo is not None:
                repo.parent.mkdir(parents=True, exist_ok=True)
                apply_layout(plan, repo)
            runtime_called = True
            result = await self.runtime.load(files)
            size = result.size_bytes or await self.runtime.model_size(model_id)
            if not size:
                size = int(pulled.bytes * self.settings.modelsize_multiplier)
        except BaseException:
            await finish(self._discard(model_id, unload=runtime_called))
            raise
        loaded = LoadedModel(
            model_id=model_id,
            size_bytes=max(1, size),
            max_concurrency=result.max_concurrency or self.settings.limit_per_model_concurrency,
            pulled=pulled,
            files=files,
        )
        self._loaded[model_id] = loaded
        self.metrics.load_seconds.observe(time.monotonic() - started)
        self.metrics.models_loaded.set(len(self._loaded))
        self.metrics.loaded_bytes.inc(loaded.size_bytes)
        return loaded

    async def _pull(self, source: StorageSource, target: Path) -> PullResult:
        started = time.monotonic()
        result = await pull_atomically(self.puller(source.type), source, target)
        self.metrics.pull_seconds.labels(source.type).observe(time.monotonic() - started)
        self.metrics.pulled_bytes.labels(source.type).inc(result.bytes)
        self.metrics.pulled_files.labels(source.type).inc(result.files)
        return result

    async def _discard(self, model_id: str, unload: bool) -> None:
        """Undo a load: unload from the server if it was asked, delete the files."""
        if unload:
            try:
                await self.runtime.unload(model_id)
            except NotFound:
                pass
            except Exception:
                log.warning(
                    "unload after a failed load did not succeed",
                    extra={"model_id": model_id},
                    exc_info=True,
                )
        await asyncio.to_thread(self._remove_files, model_id)

    async def unload(self, model_id: str) -> None:
        """Unload a model and delete its files; quietly succeeds if it is not loaded."""
        self._check_id(model_id)
        async with self._locked(model_id):
            model = self._loaded.get(model_id)
            if model is not None:
                with suppress(NotFound):
                    await self.runtime.unload(model_id)
                del self._loaded[model_id]
                self.metrics.models_loaded.set(len(self._loaded))
                self.metrics.loaded_bytes.dec(model.size_bytes)
            await asyncio.to_thread(self._remove_files, model_id)

    async def size(self, model_id: str) -> int:
        """The size reported for a loaded model."""
        self._check_id(model_id)
        model = self._loaded.get(model_id)
        if model is None:
            raise NotFound(f"model {model_id!r} is not loaded")
        return model.size_bytes

    async def predict_size(self, request: LoadRequest) -> int:
        """A quick estimate: disk_size_bytes, else the storage's listing, else the default."""
        self._check_id(request.model_id)
        key = parse_model_key(request.model_key)
        disk = key.disk_size_bytes
        if disk is None:
            source = resolve_source(key, request.model_path, self.settings.storage_config_dir)
            try:
                async with asyncio.timeout(PREDICT_SIZE_BUDGET_S):
                    disk = await self.puller(source.type).size(source)
            except Exception as exc:  # an estimate: any failure falls back to the default
                log.info(
                    "size prediction fell back to the default",
                    extra={"model_id": request.model_id, "reason": type(exc).__name__},
                )
        if not disk:
            return self.settings.default_modelsize
        return max(1, int(disk * self.settings.modelsize_multiplier))

    async def restore_lost(self) -> list[str]:
        """Load again the models the server lost (it restarted), from the files kept.

        ModelMesh still counts them as loaded here and sends their requests straight
        to the server, so they must come back. A model that cannot be loaded again is
        forgotten and its files deleted: ModelMesh then sees NOT_FOUND from the server
        and loads it elsewhere. Answers the ids that were lost.
        """
        if not self._loaded or not self.runtime.lists_loaded_models:
            return []
        # Taken before asking the server: a load that finishes meanwhile is not "lost".
        known = dict(self._loaded)
        on_server = set(await self.runtime.list_loaded())
        lost = {m: model for m, model in known.items() if m not in on_server}
        for model_id, seen in lost.items():
            async with self._locked(model_id):
                model = self._loaded.get(model_id)
                # Checked again under the lock: an unload or a reload may have won the race.
                if model is not seen or model is None:
                    continue
                try:
                    await self.runtime.load(model.files)
                    log.warning(
                        "model server had lost the model: loaded it again",
                        extra={"event": "restore", "model_id": model_id},
                    )
                except SidecarError as exc:
                    log.warning(
                        "model server lost the model and it cannot be loaded again",
                        extra={"event": "restore", "model_id": model_id, "reason": str(exc)},
                    )
                    del self._loaded[model_id]
                    self.metrics.models_loaded.set(len(self._loaded))
                    self.metrics.loaded_bytes.dec(model.size_bytes)
                    await asyncio.to_thread(self._remove_files, model_id)
        return list(lost)

    async def purge(self) -> None:
        """Unload whatever the server has loaded and empty ROOT_MODEL_DIR (start-up)."""
        for model_id in await self.runtime.list_loaded():
            with suppress(NotFound):
                await self.runtime.unload(model_id)
        await asyncio.to_thread(self._empty_root)
        self._loaded.clear()

    def _empty_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        repo = self.runtime.repository_dir
        for entry in self.root.iterdir():
            if entry.name == repo:  # the server watches this dir: keep it, empty it
                for child in entry.iterdir():
                    _remove(child)
            else:
                _remove(entry)
        if repo:
            (self.root / repo).mkdir(exist_ok=True)

    async def close(self) -> None:
        for puller in self._pullers.values():
            await puller.close()


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def _placement_free(model_type: str) -> str:
    """ModelMesh may send a placement label (`rt:triton-2.x`) as modelType: not a type."""
    return "" if model_type.startswith("rt:") else model_type
