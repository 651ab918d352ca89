"""Where a new model copy goes, and what must be evicted to make room. Pure.

Like ModelMesh, sizes are counted in 8 KiB units, each instance keeps its
copies in least-recently-used order, a new copy goes to the instance with
the most free room, and when no instance has room, to the one whose least
recently used copies are the oldest, evicting just enough of them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

UNIT_BYTES = 8192


def size_units(size_bytes: int) -> int:
    """Bytes -> 8 KiB units, rounded up; at least one unit."""
    return max(1, -(-size_bytes // UNIT_BYTES))


@dataclass(frozen=True)
class CopyView:
    """One model copy on an instance, as placement sees it."""

    model_id: str
    units: int
    last_used_ms: int
    evictable: bool = True  # False while it loads or serves requests


@dataclass(frozen=True)
class InstanceView:
    """One instance's room and copies, as placement sees it.

    `lru` yields the instance's copies least recently used first; it is read
    lazily, and only when the instance has no free room, so placing a model
    costs the number of victims, not the number of copies.
    """

    name: str
    capacity_units: int
    used_units: int
    lru: Iterable[CopyView] = ()
    loading: int = 0

    @property
    def free_units(self) -> int:
        return self.capacity_units - self.used_units


@dataclass(frozen=True)
class Placement:
    """Load on `instance` after unloading the models in `evict` from it."""

    instance: str
    evict: tuple[str, ...] = ()


def victims_for(instance: InstanceView, need_units: int) -> list[CopyView] | None:
    """The least recently used copies to evict so `need_units` fit; None if they never fit."""
    free = instance.free_units
    if free >= need_units:
        return []
    if need_units > instance.capacity_units:
        return None
    chosen: list[CopyView] = []
    for copy in instance.lru:
        if not copy.evictable:
            continue
        chosen.append(copy)
        free += copy.units
        if free >= need_units:
            return chosen
    return None


def choose_instance(
    instances: Sequence[InstanceView],
    need_units: int,
    exclude: Collection[str] = (),
) -> Placement | None:
    """Where a copy of `need_units` goes, or None when no instance can make room."""
    candidates = [inst for inst in instances if inst.name not in exclude]
    with_room = [inst for inst in candidates if inst.free_units >= need_units]
    if with_room:
        best = max(with_room, key=lambda inst: (inst.free_units, -inst.loading, inst.name))
        return Placement(best.name)
    options: list[tuple[int, int, str, tuple[str, ...]]] = []
    for inst in candidates:
        victims = victims_for(inst, need_units)
        if victims is None:
            continue
        oldest = min(victim.last_used_ms for victim in victims)
        options.append((oldest, inst.loading, inst.name, tuple(v.model_id for v in victims)))
    if not options:
        return None
    _, _, name, evict = min(options)
    return Placement(name, evict)


def pick_spare_instance(
    instances: Sequence[InstanceView], need_units: int, exclude: Collection[str]
) -> str | None:
    """An instance that can take another copy without evicting anything (for hot models)."""
    placement = choose_instance(instances, need_units, exclude)
    if placement is None or placement.evict:
        return None
    return placement.instance
