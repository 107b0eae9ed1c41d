"""The daemon's collection after each run (engine/gcpause.py): survivors are frozen, so a
warm heap is not rescanned after every run, and a reference cycle that dies while frozen
is still collected -- at the periodic full collection, or sooner when the frozen heap grows."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from provisioner.engine.gcpause import Collector


class Node:
    """A container that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.collect()
    yield
    gc.unfreeze()
    gc.collect()


def test_survivors_are_frozen_and_later_collections_skip_them() -> None:
    collector = Collector(full_every=100)
    keep = [Node() for _ in range(1000)]
    collector.collect()  # the first collection is a full one
    assert gc.get_freeze_count() >= len(keep)
    young = [Node() for _ in range(10)]
    before = gc.get_freeze_count()
    collector.collect()
    assert gc.get_freeze_count() >= before + len(young)


def test_acyclic_garbage_is_freed_while_frozen() -> None:
    collector = Collector(full_every=100)
    held = [Node() for _ in range(1000)]
    collector.collect()
    frozen = gc.get_freeze_count()
    del held  # reference counting frees a frozen object at once
    assert gc.get_freeze_count() <= frozen - 1000


def test_a_frozen_cycle_waits_for_the_periodic_full_collection() -> None:
    collector = Collector(full_every=3, growth=100.0)
    collector.collect()  # full: the baseline
    held, alive = cycle()
    collector.collect()  # partial: the cycle is frozen
    del held
    collector.collect()  # partial: frozen, not scanned
    assert alive() is not None, "a frozen cycle is not collected by a partial collection"
    collector.collect()  # the third since the full one: full again
    assert alive() is None


def test_a_growing_frozen_heap_brings_the_full_collection_forward() -> None:
    collector = Collector(full_every=1000, growth=0.25, check_every=1)
    collector.collect()
    held, alive = cycle()
    collector.collect()  # partial: the cycle is frozen
    del held
    bulk = [Node() for _ in range(gc.get_freeze_count())]  # the frozen heap about doubles
    collector.collect()  # partial (growth seen only now), freezes the bulk
    collector.collect()  # the frozen heap has grown by more than 25%: full
    assert alive() is None
    del bulk  # alive until here: its growth is what brought the full collection forward


def test_the_growth_is_looked_at_every_check_every_collections() -> None:
    collector = Collector(full_every=1000, growth=0.25, check_every=4)
    collector.collect()  # full: the baseline
    held, alive = cycle()
    collector.collect()  # 1st partial: the cycle is frozen
    del held
    bulk = [Node() for _ in range(gc.get_freeze_count())]  # the frozen heap about doubles
    collector.collect()  # 2nd partial: freezes the bulk
    collector.collect()  # 3rd partial: the growth is not looked at
    assert alive() is not None, "the growth was counted before its turn"
    collector.collect()  # 4th: looked at, more than 25% grown: full
    assert alive() is None
    del bulk
