"""Placement decisions (pure) and the loading queue of an instance."""

from __future__ import annotations

import asyncio

import pytest

from mesh_sidecar.mesh.instances import LoadSlots
from mesh_sidecar.mesh.placement import (
    CopyView,
    InstanceView,
    Placement,
    choose_instance,
    size_units,
    victims_for,
)


def inst(name: str, capacity: int, copies: list[tuple[str, int, int, bool]]) -> InstanceView:
    views = [CopyView(m, units, used, evictable) for m, units, used, evictable in copies]
    return InstanceView(name, capacity, sum(c.units for c in views), views)


@pytest.mark.parametrize(
    ("size", "units"), [(0, 1), (1, 1), (8192, 1), (8193, 2), (1_000_000, 123)]
)
def test_sizes_are_counted_in_8k_units(size: int, units: int) -> None:
    assert size_units(size) == units


@pytest.mark.parametrize(
    ("instances", "need", "expected"),
    [
        # The instance with the most free room wins.
        (
            [inst("a", 10, [("m1", 6, 1, True)]), inst("b", 10, [("m2", 2, 1, True)])],
            3,
            Placement("b"),
        ),
        # No room anywhere: evict on the instance whose least recently used copy is oldest.
        (
            [inst("a", 4, [("m1", 4, 50, True)]), inst("b", 4, [("m2", 4, 10, True)])],
            2,
            Placement("b", ("m2",)),
        ),
        # Just enough victims, oldest first.
        (
            [inst("a", 6, [("old", 2, 1, True), ("mid", 2, 2, True), ("new", 2, 3, True)])],
            4,
            Placement("a", ("old", "mid")),
        ),
        # Copies that are loading or serving are never evicted.
        (
            [inst("a", 4, [("busy", 2, 1, False), ("idle", 2, 9, True)])],
            2,
            Placement("a", ("idle",)),
        ),
        # Nothing evictable frees enough: nowhere to go.
        ([inst("a", 4, [("busy", 4, 1, False)])], 1, None),
        # Bigger than any instance.
        ([inst("a", 4, [])], 5, None),
    ],
)
def test_choose_instance(
    instances: list[InstanceView], need: int, expected: Placement | None
) -> None:
    assert choose_instance(instances, need) == expected


def test_excluded_instances_are_skipped() -> None:
    instances = [inst("a", 10, []), inst("b", 5, [])]
    assert choose_instance(instances, 1, exclude={"a"}) == Placement("b")
    assert choose_instance(instances, 1, exclude={"a", "b"}) is None


def test_victims_are_read_lazily_and_only_when_needed() -> None:
    def lru() -> object:
        yield CopyView("first", 3, 1)
        raise AssertionError("read past the victims needed")

    view = InstanceView("a", 4, 4, lru())  # type: ignore[arg-type]
    victims = victims_for(view, 3)
    assert victims is not None
    assert [v.model_id for v in victims] == ["first"]
    assert victims_for(InstanceView("a", 10, 0, lru()), 5) == []  # type: ignore[arg-type]


async def test_urgent_loads_go_before_background_ones() -> None:
    slots = LoadSlots(1)
    loop = asyncio.get_running_loop()
    order: list[str] = []
    release = asyncio.Event()

    async def load(name: str, urgent: bool, ticket: asyncio.Future[None] | None = None) -> None:
        async with slots.slot(ticket or loop.create_future(), urgent):
            order.append(name)
            if name == "holder":
                await release.wait()

    holder = asyncio.create_task(load("holder", False))
    await asyncio.sleep(0)
    promoted_ticket: asyncio.Future[None] = loop.create_future()
    waiting = [
        asyncio.create_task(load("background-1", False)),
        asyncio.create_task(load("background-2", False, promoted_ticket)),
        asyncio.create_task(load("urgent", True)),
    ]
    await asyncio.sleep(0)
    slots.promote(promoted_ticket)
    assert slots.waiting() == 3
    release.set()
    await asyncio.gather(holder, *waiting)
    assert order == ["holder", "urgent", "background-2", "background-1"]


async def test_a_cancelled_waiter_frees_its_place() -> None:
    slots = LoadSlots(1)
    loop = asyncio.get_running_loop()
    release = asyncio.Event()
    done: list[str] = []

    async def load(name: str) -> None:
        async with slots.slot(loop.create_future(), False):
            if name == "holder":
                await release.wait()
            done.append(name)

    holder = asyncio.create_task(load("holder"))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(load("cancelled"))
    after = asyncio.create_task(load("after"))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.gather(holder, after)
    assert done == ["holder", "after"]
    assert slots.active == 0
