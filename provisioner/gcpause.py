"""Pause the cyclic garbage collector around allocation-heavy, cycle-free work.

A directory read or a desired-state computation over 100,000 identities
allocates hundreds of thousands of small long-lived objects and no reference
cycles; with a large heap already in memory (the daemon keeps the last snapshot)
every automatic full collection rescans all of it.  Reference counting still
frees everything as usual; only cycle detection waits until the block ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
