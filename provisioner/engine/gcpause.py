"""Pause the cyclic garbage collector around allocation-heavy, cycle-free work.

A directory read or a desired-state computation over 100,000 identities
allocates hundreds of thousands of small long-lived objects and no reference
cycles; with a large heap already in memory (the daemon keeps the last snapshot)
every automatic full collection rescans all of it.  Reference counting still
frees everything as usual; only cycle detection waits until the block ends.
The daemon's :class:`Collector` then collects after each run and freezes what survives.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from provisioner.logs import log


@contextmanager
def paused_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def collect_garbage() -> float:
    """One full collection, now (a one-off process's; the daemon has a :class:`Collector`).
    Returns the seconds it took (logged at debug level)."""
    started = time.perf_counter()
    gc.collect()
    took = time.perf_counter() - started
    log.debug("garbage_collected", seconds=round(took, 3))
    return took


class Collector:
    """The daemon's collection after each run, owned by its runner.

    A run's caller waits for it, and a full collection rescans the whole warm heap (the last
    snapshots, the kept roles: 0.2-0.5 s at 10,000 people).  So after each collection every
    object still alive is frozen (``gc.freeze``) and the next collection scans only what later
    runs allocated and kept.  A frozen object is still freed by reference counting as soon as
    nothing refers to it; only a reference cycle among frozen objects waits -- for the full
    collection this makes every ``full_every`` runs, or as soon as the frozen heap has grown
    by more than ``growth`` since the last full one.  Counting the frozen objects walks them
    all (about 30 ms at 10,000 people, on the run's latency path), so the growth is looked
    at every ``check_every`` collections only."""

    def __init__(self, full_every: int = 20, growth: float = 0.25, check_every: int = 5) -> None:
        self._trim = _malloc_trim()
        self._full_every = full_every
        self._growth = growth
        self._check_every = max(1, check_every)
        self._since_full = 0
        self._frozen_after_full: int | None = None

    def collect(self) -> float:
        """Collect (in full when due) and freeze what survives; the seconds it took."""
        started = time.perf_counter()
        due = self._since_full + 1
        baseline = self._frozen_after_full
        full = (
            baseline is None
            or due >= self._full_every
            or (due % self._check_every == 0 and gc.get_freeze_count() > baseline * (1 + self._growth))
        )
        if full:
            gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._trim()
        if full:
            self._since_full = 0
            self._frozen_after_full = gc.get_freeze_count()
        else:
            self._since_full += 1
        took = time.perf_counter() - started
        log.debug("garbage_collected", seconds=round(took, 3), full=full)
        return took


def _malloc_trim() -> Callable[[], object]:
    """glibc's ``malloc_trim(0)``: free heap pages go back to the system after a run (a first
    sync's peak otherwise stays the process's resident size); elsewhere nothing."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except AttributeError:  # a C library without it (musl)
        trim = None
    return (lambda: trim(0)) if trim is not None else (lambda: None)
