"""Pause the cyclic garbage collector around allocation-heavy, cycle-free work.

A directory read or a desired-state computation over 100,000 identities
allocates hundreds of thousands of small long-lived objects and no reference
cycles; with a large heap already in memory (the daemon keeps the last snapshot)
every automatic full collection rescans all of it.  Reference counting still
frees everything as usual; only cycle detection waits until the block ends.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
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
    """One full collection, now: the daemon calls it after each run (its lock released),
    so the cycle detection a paused run deferred costs idle time, not a run's latency.
    Returns the seconds it took (logged at debug level)."""
    started = time.perf_counter()
    gc.collect()
    took = time.perf_counter() - started
    log.debug("garbage_collected", seconds=round(took, 3))
    return took
