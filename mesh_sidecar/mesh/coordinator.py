"""The coordinator: models, vmodels and copies across instances, as ModelMesh keeps them.

It decides where copies live (placement.py), drives sidecars over
`mmesh.ModelRuntime` (instances.py), and answers the ModelMesh API (api.py)
and the inference proxy (proxy.py). Everything runs on one asyncio loop, so
a decision and the bookkeeping it implies happen without an `await` between
them and need no lock.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from mesh_sidecar.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    ResourceExhausted,
    SidecarError,
    Unavailable,
)
from mesh_sidecar.mesh.instances import Instance, RuntimeCallFailed
from mesh_sidecar.mesh.placement import CopyView, InstanceView, choose_instance, size_units
from mesh_sidecar.mesh.registry import (
    MAX_LOAD_FAILURES,
    LoadFailure,
    ModelCopy,
    ModelRecord,
    ModelSpec,
    ModelState,
    Registry,
    VModelRecord,
    check_id,
    now_ms,
)

log = logging.getLogger("mesh_sidecar.mesh")


@dataclass(frozen=True)
class MeshSettings:
    """The coordinator's knobs."""

    #: Wait before retrying a failed load on another instance.
    retry_backoff_s: float = 0.5
    #: A model with more requests than this in one second gets a second copy, room permitting.
    hot_requests_per_s: int = 200
    max_copies: int = 2
    #: How often each sidecar is probed with runtimeStatus.
    health_interval_s: float = 2.0
    #: How long to wait for a sidecar's first READY (ModelMesh waits 180 s).
    handshake_timeout_s: float = 180.0
    #: Overrides every instance's modelLoadingTimeoutMs when set.
    load_timeout_ms: int | None = None


@dataclass
class InstanceState:
    """An instance plus the copies the coordinator placed on it, least recently used first."""

    instance: Instance
    lru: collections.OrderedDict[str, ModelCopy]
    used_units: int = 0
    loading: int = 0

    @property
    def name(self) -> str:
        return self.instance.name

    @property
    def capacity_units(self) -> int:
        limits = self.instance.limits
        return 0 if limits is None else limits.capacity_bytes // 8192


class Coordinator:
    """ModelMesh's model management and routing over a fixed set of instances."""

    def __init__(self, instances: Sequence[Instance], settings: MeshSettings | None = None) -> None:
        self.settings = settings or MeshSettings()
        self.registry = Registry()
        self.states = {
            inst.name: InstanceState(inst, collections.OrderedDict()) for inst in instances
        }
        self._tasks: set[asyncio.Task[Any]] = set()
        self._health_task: asyncio.Task[None] | None = None
        self._gc_pacer = GcPacer()
        #: Goes up whenever an instance's limits (methodInfos, ...) may have changed.
        self.limits_generation = 0

    # ----- life cycle

    async def start(self) -> None:
        """Handshake with every instance (all must reach READY), then watch their health."""
        await asyncio.gather(
            *(
                st.instance.handshake(self.settings.handshake_timeout_s)
                for st in self.states.values()
            )
        )
        self.limits_generation += 1
        self._health_task = asyncio.create_task(self._watch_health())
        for st in self.states.values():
            self._spawn(self._watch_connection(st))

    async def stop(self) -> None:
        """Stop background work and close the channels (models stay where they are)."""
        tasks = [t for t in (self._health_task, *self._tasks) if t is not None]
        for model in self.registry.models.values():
            if model.load_task is not None:
                tasks.append(model.load_task)
        for vm in self.registry.vmodels.values():
            if vm.transition_task is not None:
                tasks.append(vm.transition_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(st.instance.close() for st in self.states.values()))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    # ----- models (mmesh.ModelMesh)

    def model(self, model_id: str) -> ModelRecord | None:
        return self.registry.models.get(model_id)

    async def register(
        self, model_id: str, spec: ModelSpec, load_now: bool, sync: bool, last_used_ms: int
    ) -> ModelRecord:
        """registerModel: same id and info again is fine; different info is ALREADY_EXISTS."""
        check_id(model_id, "modelId")
        if not spec.type:
            raise InvalidRequest(f"modelInfo.type must be set for model {model_id}")
        model = self.registry.models.get(model_id)
        if model is None:
            model = ModelRecord(model_id, spec, last_used_ms or now_ms())
            self.registry.models[model_id] = model
            log.info("registered model %s", model_id)
        elif model.spec != spec:
            raise AlreadyExists(f"Model already exists with different attributes: {model_id}")
        if load_now:
            await self._load_if_needed(model, sync)
        return model

    async def ensure_loaded(self, model_id: str, last_used_ms: int, sync: bool) -> ModelRecord:
        """ensureLoaded: start a load unless a copy exists or the model recently failed."""
        check_id(model_id, "modelId")
        model = self.registry.models.get(model_id)
        if model is None:
            raise NotFound("model not found")
        if last_used_ms:
            model.last_used_ms = max(model.last_used_ms, last_used_ms)
        await self._load_if_needed(model, sync)
        return model

    async def _load_if_needed(self, model: ModelRecord, sync: bool) -> None:
        now = time.monotonic()
        if model.loaded_copies() or model.state(now) is ModelState.LOADING_FAILED:
            return
        task = self._start_load(model, urgent=False)
        if sync:
            await _completion(task)

    def unregister(self, model_id: str) -> None:
        """unregisterModel: refused while a vmodel points at it; unknown ids are fine."""
        check_id(model_id, "modelId")
        model = self.registry.models.get(model_id)
        if model is None:
            return
        if model.ref_count > 0:
            users = sorted(
                vm.vmodel_id
                for vm in self.registry.vmodels.values()
                if model_id in (vm.active, vm.target)
            )
            raise FailedPrecondition(
                f"model {model_id} is in use by vmodel(s) {', '.join(users)}; delete them first"
            )
        self._remove_model(model)

    def _remove_model(self, model: ModelRecord) -> None:
        del self.registry.models[model.model_id]
        if model.load_task is not None:
            model.load_task.cancel()
        for name in list(model.copies):
            self._detach(model, name)
            self._spawn(self._unload_quietly(self.states[name].instance, model.model_id))
        log.info("unregistered model %s", model.model_id)

    # ----- vmodels (mmesh.ModelMesh)

    async def set_vmodel(
        self,
        vmodel_id: str,
        target_id: str,
        *,
        owner: str = "",
        spec: ModelSpec | None = None,
        update_only: bool = False,
        auto_delete: bool = False,
        load_now: bool = False,
        force: bool = False,
        sync: bool = False,
        expected_target: str = "",
    ) -> VModelRecord:
        """setVModel, with ModelMesh's rules for owner, expected target, force and auto-delete."""
        check_id(vmodel_id, "vModelId")
        if not target_id:
            raise InvalidRequest(f"Must provide target modelId for vmodel {vmodel_id}")
        check_id(target_id, "targetModelId")
        if spec is not None and not spec.type:
            raise InvalidRequest(f"modelInfo.type must be set for model {target_id}")
        vm = self.registry.vmodels.get(vmodel_id)
        if vm is not None and owner and vm.owner != owner:
            raise AlreadyExists(
                f"vmodel {vmodel_id} already exists with different owner {vm.owner!r}"
            )
        if expected_target:
            if vm is None and expected_target != target_id:
                raise FailedPrecondition(f"vmodel {vmodel_id} not found")
            if vm is not None and vm.target not in (expected_target, target_id):
                raise FailedPrecondition(
                    f"Existing target model {vm.target} does not match expected {expected_target}"
                )
        if vm is None and update_only:
            raise NotFound(f"vmodel {vmodel_id} not found")
        target = self.registry.models.get(target_id)
        if target is None and spec is None:
            raise NotFound(f"Target model {target_id} not found")
        if target is not None and spec is not None and target.spec != spec:
            raise AlreadyExists(
                f"Target model {target_id} already exists with different attribute values"
            )
        if target is None:
            assert spec is not None
            target = ModelRecord(target_id, spec, now_ms(), auto_delete=auto_delete)
            self.registry.models[target_id] = target

        if vm is None:
            vm = VModelRecord(vmodel_id, owner, active=target_id, target=target_id)
            self.registry.vmodels[vmodel_id] = vm
            self._point(vm, target_id, target_id, before=())
            log.info("added vmodel %s -> %s", vmodel_id, target_id)
        elif target_id != vm.target or (force and target_id != vm.active):
            active = self.registry.models.get(vm.active)
            switch_now = (
                force
                or target_id == vm.active
                or active is None
                or not active.copies
                or bool(target.loaded_copies())
            )
            self._point(vm, target_id if switch_now else vm.active, target_id)
            vm.target_failed = False
            log.info("vmodel %s target is now %s", vmodel_id, target_id)

        if vm.in_transition():
            task = self._start_transition(vm)
            if sync:
                await _completion(task)
        elif load_now:
            await self._load_if_needed(target, sync)
        return vm

    def _point(
        self,
        vm: VModelRecord,
        active: str,
        target: str,
        before: Sequence[str] | None = None,
    ) -> None:
        """Move a vmodel's pointers, keeping one reference per pointed-at model."""
        old = set(before if before is not None else (vm.active, vm.target))
        new = {active, target}
        vm.active, vm.target = active, target
        for model_id in new - old:
            model = self.registry.models.get(model_id)
            if model is not None:
                model.ref_count += 1
        for model_id in old - new:
            self._release(model_id)
        if vm.transition_task is not None and not vm.in_transition():
            vm.transition_task.cancel()
            vm.transition_task = None

    def _release(self, model_id: str) -> None:
        model = self.registry.models.get(model_id)
        if model is None:
            return
        model.ref_count -= 1
        if model.ref_count <= 0 and model.auto_delete:
            log.info("auto-deleting model %s", model_id)
            self._remove_model(model)

    def _start_transition(self, vm: VModelRecord) -> asyncio.Task[None]:
        task = vm.transition_task
        if task is None or task.done():
            vm.target_failed = False  # a new attempt: TRANSITIONING again
            task = asyncio.create_task(self._transition(vm, vm.target))
            task.add_done_callback(_log_failure)
            vm.transition_task = task
        return task

    async def _transition(self, vm: VModelRecord, target_id: str) -> None:
        target = self.registry.models.get(target_id)
        if target is not None and not target.loaded_copies():
            # A new setVModel is a fresh attempt, even after recent failures.
            if not target.loading() and not target.loaded_copies():
                target.failures.clear()
            await _completion(self._start_load(target, urgent=False))
        if self.registry.vmodels.get(vm.vmodel_id) is not vm or vm.target != target_id:
            return
        vm.transition_task = None
        if target is not None and target.loaded_copies():
            log.info("vmodel %s switched to %s", vm.vmodel_id, target_id)
            self._point(vm, target_id, target_id)
        else:
            log.info("vmodel %s transition to %s failed", vm.vmodel_id, target_id)
            vm.target_failed = True

    def delete_vmodel(self, vmodel_id: str, owner: str) -> None:
        """deleteVModel: unknown ids (or another owner's) are fine; auto-delete models go too."""
        check_id(vmodel_id, "vModelId")
        vm = self.registry.vmodels.get(vmodel_id)
        if vm is None or (owner and vm.owner != owner):
            return
        del self.registry.vmodels[vmodel_id]
        if vm.transition_task is not None:
            vm.transition_task.cancel()
        for model_id in {vm.active, vm.target}:
            self._release(model_id)
        log.info("deleted vmodel %s", vmodel_id)

    def vmodel(self, vmodel_id: str, owner: str = "") -> VModelRecord | None:
        check_id(vmodel_id, "vModelId")
        vm = self.registry.vmodels.get(vmodel_id)
        if vm is None or (owner and vm.owner != owner):
            return None
        return vm

    # ----- routing (inference proxy)

    def resolve_vmodel(self, vmodel_id: str) -> str:
        """The concrete model a vmodel serves right now."""
        vm = self.registry.vmodels.get(vmodel_id)
        if vm is None:
            raise NotFound("vmodel not found")
        return vm.active

    async def acquire(self, model_id: str) -> tuple[Instance, ModelCopy]:
        """A loaded copy to send a request to, loading one first on a cache miss.

        The caller must call `release(copy)` when the request is done.
        """
        for _ in range(3):
            model = self.registry.models.get(model_id)
            if model is None:
                raise NotFound("model not found")
            # The least busy loaded copy on a healthy instance (this runs on every request).
            copy = None
            for candidate in model.copies.values():
                if (
                    candidate.state is ModelState.LOADED
                    and (copy is None or candidate.in_flight < copy.in_flight)
                    and self.states[candidate.instance].instance.healthy
                ):
                    copy = candidate
            if copy is not None:
                copy.in_flight += 1
                self._touch(model, copy)
                self._count_request(model)
                return self.states[copy.instance].instance, copy
            if model.state(time.monotonic()) is ModelState.LOADING_FAILED:
                raise _load_error(model)
            await _completion(self._start_load(model, urgent=True))
            if model.blocked is not None and not model.loaded_copies():
                raise model.blocked
        raise Unavailable(f"model {model_id} could not be loaded")

    def release(self, copy: ModelCopy) -> None:
        copy.in_flight -= 1

    def _touch(self, model: ModelRecord, copy: ModelCopy) -> None:
        model.last_used_ms = now_ms()
        lru = self.states[copy.instance].lru
        if model.model_id in lru:
            lru.move_to_end(model.model_id)

    def _count_request(self, model: ModelRecord) -> None:
        now = time.monotonic()
        if now - model.window_start >= 1.0:
            model.window_start, model.requests_in_window = now, 0
        model.requests_in_window += 1
        if (
            model.requests_in_window == self.settings.hot_requests_per_s
            and len(model.copies) < self.settings.max_copies
            and not model.loading()
        ):
            self._spawn(self._add_copy(model))

    async def _add_copy(self, model: ModelRecord) -> None:
        """A second copy of a hot model, only where it fits without evicting anything."""
        units = size_units(model.size_bytes or 0)
        views = list(self._views(exclude=set(model.copies)))
        placement = choose_instance(views, units)
        if placement is None or placement.evict:
            return
        log.info("model %s is hot: adding a copy on %s", model.model_id, placement.instance)
        await self._load_on(model, self.states[placement.instance], (), units)

    async def forget_copy(self, copy: ModelCopy, model_id: str) -> None:
        """The model server says it does not have the model: drop the copy (NOT_FOUND)."""
        model = self.registry.models.get(model_id)
        if model is not None and model.copies.get(copy.instance) is copy:
            self._detach(model, copy.instance)
            await self._unload_quietly(self.states[copy.instance].instance, model_id)

    async def check_instance(self, name: str) -> bool:
        """After a failed call: is the instance still READY? If not, its models move."""
        st = self.states[name]
        if not st.instance.healthy:
            return False
        try:
            status = await st.instance.status(wait_s=1.0)
        except RuntimeCallFailed:
            ready = False
        else:
            ready = status.status == status.READY
        if not ready and st.instance.healthy:
            self._mark_down(st)
        return ready

    # ----- loading

    def _views(self, exclude: set[str]) -> Iterator[InstanceView]:
        for st in self.states.values():
            if st.instance.healthy and st.name not in exclude:
                yield InstanceView(
                    st.name, st.capacity_units, st.used_units, self._lru_view(st), st.loading
                )

    def _lru_view(self, st: InstanceState) -> Iterator[CopyView]:
        models = self.registry.models
        for model_id, copy in st.lru.items():
            model = models.get(model_id)
            evictable = copy.state is ModelState.LOADED and copy.in_flight == 0
            last_used = model.last_used_ms if model is not None else 0
            yield CopyView(model_id, copy.units, last_used, evictable)

    def _start_load(self, model: ModelRecord, urgent: bool) -> asyncio.Task[None]:
        task = model.load_task
        if task is not None and not task.done():
            if urgent and not model.urgent:
                model.urgent = True
                if model.ticket is not None and model.ticket_instance is not None:
                    self.states[model.ticket_instance].instance.slots.promote(model.ticket)
            return task
        model.gave_up = False
        model.blocked = None
        model.urgent = urgent
        task = asyncio.create_task(self._load_round(model))
        task.add_done_callback(_log_failure)
        model.load_task = task
        return task

    async def _predicted_units(self, model: ModelRecord, st: InstanceState) -> int:
        if model.size_bytes:
            return size_units(model.size_bytes)
        predicted = await st.instance.predict_size(model.model_id, model.spec)
        limits = st.instance.limits
        default = limits.default_model_size if limits is not None else 1_000_000
        return size_units(predicted or default)

    async def _load_round(self, model: ModelRecord) -> None:
        """Load one copy, trying other instances after failures, until placed or given up."""
        tried: set[str] = set()
        try:
            while self.registry.models.get(model.model_id) is model:
                if len(model.recent_failures(time.monotonic())) >= MAX_LOAD_FAILURES:
                    model.gave_up = True
                    return
                exclude = tried | set(model.copies)
                candidates = [
                    st
                    for st in self.states.values()
                    if st.instance.healthy and st.name not in exclude
                ]
                if not candidates:
                    # Every instance down (or tried): the model itself did not fail,
                    # so this is not held against it once instances are back.
                    model.gave_up = bool(tried)
                    model.blocked = Unavailable(f"no instance is available for {model.model_id}")
                    return
                units = await self._predicted_units(model, candidates[0])
                if not any(st.instance.healthy for st in candidates):
                    continue  # they went down while we asked: reported as unavailable above
                placement = choose_instance(list(self._views(exclude)), units)
                if placement is None:
                    model.gave_up = bool(tried)
                    model.blocked = ResourceExhausted(
                        f"no instance has room for model {model.model_id} ({units * 8192} bytes)"
                    )
                    return
                st = self.states[placement.instance]
                if await self._load_on(model, st, placement.evict, units):
                    return
                tried.add(st.name)
                await asyncio.sleep(self.settings.retry_backoff_s)
        finally:
            model.urgent = False
            model.ticket = model.ticket_instance = None

    def _record_failure(
        self, model: ModelRecord, instance: str, message: str, code: grpc.StatusCode
    ) -> None:
        log.warning("load of %s on %s failed: %s", model.model_id, instance, message)
        model.failures.append(LoadFailure(instance, time.monotonic(), now_ms(), message, code.name))

    async def _load_on(
        self, model: ModelRecord, st: InstanceState, evict: Sequence[str], units: int
    ) -> bool:
        """Evict, then load one copy on `st`. True when done (loaded, or no longer wanted)."""
        copy = ModelCopy(st.name, ModelState.LOADING, units, now_ms())
        self._attach(model, st, copy)
        unloads = []
        for victim_id in evict:
            victim = self.registry.models.get(victim_id)
            if victim is not None and victim_id in st.lru:
                log.info(
                    "evicting %s from %s to make room for %s", victim_id, st.name, model.model_id
                )
                self._detach(victim, st.name)
                unloads.append(self._unload_quietly(st.instance, victim_id))
        st.loading += 1
        size, failure = 0, None
        try:
            if unloads:
                await asyncio.gather(*unloads)
            ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            model.ticket, model.ticket_instance = ticket, st.name
            async with st.instance.slots.slot(ticket, model.urgent):
                model.ticket = model.ticket_instance = None
                limits = st.instance.limits
                timeout_ms = self.settings.load_timeout_ms or (
                    limits.loading_timeout_ms if limits is not None else 30_000
                )
                size = await st.instance.load(model.model_id, model.spec, timeout_ms / 1000)
        except RuntimeCallFailed as exc:
            failure = exc
        except asyncio.CancelledError:
            self._detach_if(model, copy)
            self._spawn(self._unload_quietly(st.instance, model.model_id, delay=1.0))
            raise
        finally:
            st.loading -= 1
        if failure is not None:
            self._detach_if(model, copy)
            # ModelMesh always unloads after a failed or timed-out load.
            self._spawn(self._unload_quietly(st.instance, model.model_id, delay=1.0))
            instance_lost = failure.code in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.CANCELLED,
            ) and not await self.check_instance(st.name)
            if not instance_lost:
                # A dead instance is not the model's fault: only other failures count.
                self._record_failure(model, st.name, str(failure), failure.code)
            return False
        wanted = self.registry.models.get(model.model_id) is model
        if not wanted or model.copies.get(st.name) is not copy:
            # Unregistered, or the instance was lost, while loading.
            self._spawn(self._unload_quietly(st.instance, model.model_id))
            return not wanted
        copy.state = ModelState.LOADED
        copy.since_ms = now_ms()
        model.size_bytes = size
        self._resize(st, model.model_id, copy, size_units(size))
        model.failures.clear()
        log.info("loaded %s on %s (%d bytes)", model.model_id, st.name, size)
        return True

    def _attach(self, model: ModelRecord, st: InstanceState, copy: ModelCopy) -> None:
        model.copies[st.name] = copy
        st.lru[model.model_id] = copy
        st.used_units += copy.units

    def _detach(self, model: ModelRecord, name: str) -> None:
        copy = model.copies.pop(name, None)
        st = self.states[name]
        if copy is not None and st.lru.get(model.model_id) is copy:
            del st.lru[model.model_id]
            st.used_units -= copy.units

    def _detach_if(self, model: ModelRecord, copy: ModelCopy) -> None:
        if model.copies.get(copy.instance) is copy:
            self._detach(model, copy.instance)

    def _resize(self, st: InstanceState, model_id: str, copy: ModelCopy, units: int) -> None:
        st.used_units += units - copy.units
        copy.units = units
        if st.used_units <= st.capacity_units:
            return
        # The real size exceeded the prediction: evict more, least recently used first.
        view = InstanceView(st.name, st.capacity_units, st.used_units, self._lru_view(st))
        for victim in _overflow_victims(view, keep=model_id):
            model = self.registry.models.get(victim)
            if model is not None:
                self._detach(model, st.name)
                self._spawn(self._unload_quietly(st.instance, victim))

    async def _unload_quietly(self, instance: Instance, model_id: str, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        model = self.registry.models.get(model_id)
        if model is not None and instance.name in model.copies:
            return  # loaded there again since: keep it
        try:
            await instance.unload(model_id)
        except SidecarError as exc:
            log.warning("unload of %s from %s failed: %s", model_id, instance.name, exc)

    # ----- health

    def _mark_down(self, st: InstanceState) -> None:
        log.warning("instance %s is not READY: moving its models", st.name)
        st.instance.healthy = False
        for model_id in list(st.lru):
            model = self.registry.models.get(model_id)
            if model is None:
                continue
            was_loaded = model.copies[st.name].state is ModelState.LOADED
            self._detach(model, st.name)
            if was_loaded and not model.copies:
                self._start_load(model, urgent=False)
        st.lru.clear()
        st.used_units = 0

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval_s)
            self._gc_pacer.tick()
            await asyncio.gather(
                *(self._probe(st) for st in self.states.values()), return_exceptions=True
            )

    async def _watch_connection(self, st: InstanceState) -> None:
        while True:
            lost = await st.instance.connection_lost()
            if st.instance.healthy:
                log.warning("lost the connection to %s's %s", st.name, lost)
                self._mark_down(st)

    async def _probe(self, st: InstanceState) -> None:
        if st.instance.healthy:
            await self.check_instance(st.name)
            return
        with contextlib.suppress(SidecarError):
            # Back again (a restarted sidecar purges its models before READY).
            await st.instance.handshake(wait_s=1.0)
            self.limits_generation += 1
            log.info("instance %s is READY again", st.name)


class GcPacer:
    """Keeps full garbage collections from pausing the loop for long.

    Tens of thousands of long-lived records make every full collection walk
    them all (200 ms at 10,000 models). Each tick collects the young
    generations (cheap) and freezes what survives, so automatic collections
    only look at new objects; every `full_every_s` a full collection of
    everything frees cyclic garbage that was frozen meanwhile, one pause
    instead of many.
    """

    def __init__(self, full_every_s: float = 600.0) -> None:
        self.full_every_s = full_every_s
        self._last_full = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last_full >= self.full_every_s:
            gc.unfreeze()
            gc.collect()
            self._last_full = now
        else:
            gc.collect(1)
        gc.freeze()


async def _completion(task: asyncio.Task[None]) -> None:
    """Wait for `task` to end, however it ends; cancelling the waiter leaves it running."""
    await asyncio.wait([task])


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background work failed", exc_info=task.exception())


def _overflow_victims(view: InstanceView, keep: str) -> list[str]:
    over = view.used_units - view.capacity_units
    victims: list[str] = []
    for copy in view.lru:
        if over <= 0:
            break
        if copy.evictable and copy.model_id != keep:
            victims.append(copy.model_id)
            over -= copy.units
    return victims


def _load_error(model: ModelRecord) -> SidecarError:
    failures = model.failures
    message = failures[-1].message if failures else "unknown reason"
    code = getattr(grpc.StatusCode, failures[-1].code) if failures else grpc.StatusCode.INTERNAL
    return RuntimeCallFailed(f"model {model.model_id} failed to load: {message}", code)
