"""Leader election per target: which replica applies.

Each replica holds one leader lock per target (:mod:`provisioner.targets.locks`: a
session-level lock on the target's own server, freed by the server when the holder's
session ends).  The replica holding a target's lock is that target's leader and the only
one that applies; the others plan only.

Failover takes seconds, not an interval: :meth:`Leadership.watch` runs a loop that
every ``daemon.leader_retry`` seconds re-checks each held lock (which also keeps the
session busy) and tries the ones not held; a replica that gains a lock runs a
reconcile at once.  A dead leader host's lock is free within about a minute (the lock
sessions' keepalives and idle timeouts are small multiples of ``leader_retry``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from provisioner.config import Config
from provisioner.logs import log
from provisioner.targets.locks import LeaderLock, leader_lock


class Leadership:
    """Which targets this replica leads.  With ``ha_lock = false`` it leads every target."""

    def __init__(self, cfg: Config) -> None:
        self._mutex = threading.Lock()
        self._enabled = cfg.daemon.ha_lock
        self._retry = cfg.daemon.leader_retry
        self._targets: tuple[str, ...] = ()
        self._locks: dict[str, LeaderLock] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.configure(cfg)

    def configure(self, cfg: Config) -> None:
        """Follow a reloaded config: drop locks of removed or changed targets."""
        with self._mutex:
            self._enabled = cfg.daemon.ha_lock
            self._retry = cfg.daemon.leader_retry
            wanted = {t.name: t for t in cfg.targets}
            self._targets = tuple(wanted)
            for name in list(self._locks):
                lock = self._locks[name]
                if name not in wanted or lock.config != wanted[name] or not self._enabled:
                    lock.release()
                    del self._locks[name]
            if self._enabled:
                for name, tcfg in wanted.items():
                    if name not in self._locks:
                        self._locks[name] = leader_lock(tcfg, self._retry)

    def leads(self, target: str) -> bool:
        with self._mutex:
            if not self._enabled:
                return True
            lock = self._locks.get(target)
            if lock is None:
                return False
            was = lock.held
            now = lock.try_acquire()
        if now != was:
            log.info("leadership_changed", target=target, leader=now)
        return now

    def status(self) -> dict[str, bool]:
        with self._mutex:
            return {name: lock.held for name, lock in self._locks.items()} if self._enabled else {}

    def leading(self) -> dict[str, bool]:
        """Per configured target, whether this replica applies to it now (all, without ``ha_lock``):
        the ``provisioner_leader`` gauge."""
        with self._mutex:
            if not self._enabled:
                return dict.fromkeys(self._targets, True)
            return {name: lock.held for name, lock in self._locks.items()}

    def tick(self) -> list[str]:
        """Re-check every lock once (a held one is touched, a free one tried); the targets gained."""
        with self._mutex:
            names = list(self._locks) if self._enabled else []
        gained = []
        for name in names:
            was = self.status().get(name, False)
            if self.leads(name) and not was:
                gained.append(name)
        return gained

    def watch(self, on_gain: Callable[[list[str]], None], active: Callable[[], bool]) -> None:
        """Start the lock loop: every ``leader_retry`` seconds, while ``active()`` (apply mode
        with ``ha_lock``), :meth:`tick`; ``on_gain(targets)`` when this replica became leader."""

        def loop() -> None:
            while not self._stop.wait(self._retry):
                if not active():
                    continue
                try:
                    gained = self.tick()
                except Exception as exc:  # the loop outlives any one failure
                    log.warning("leader_watch_failed", error=repr(exc))
                    continue
                if gained:
                    on_gain(gained)

        self._thread = threading.Thread(target=loop, name="leader-watch", daemon=True)
        self._thread.start()

    def release_all(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._mutex:
            for lock in self._locks.values():
                lock.release()
            self._locks.clear()
