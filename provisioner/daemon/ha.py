"""Leader election per target: a session-level PostgreSQL advisory lock.

Each replica keeps one dedicated connection per target and, before a run, tries
``pg_try_advisory_lock(key)`` on it.  The replica holding the lock is that
target's leader and the only one that applies; the others plan only.  The lock
lives as long as the session: when the leader dies (even ``kill -9``) the
server ends its session, the lock is released, and the next replica to try —
at its next run, so within one interval — becomes leader.

The key differs from the transaction-level lock that every apply takes inside
its transaction (:func:`provisioner.targets.postgres.advisory_lock_key`).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from typing import Any

import psycopg

from provisioner.config import Config, PostgresTargetConfig
from provisioner.errors import TargetUnavailable
from provisioner.logs import log
from provisioner.targets.postgres import PostgresTarget


def leader_lock_key(target_name: str) -> int:
    """A stable signed 64-bit key, distinct from the per-apply transaction lock's."""
    digest = hashlib.sha256(f"provisioner-leader:{target_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _TargetLock:
    def __init__(self, cfg: PostgresTargetConfig) -> None:
        self.name = cfg.name
        self.key = leader_lock_key(cfg.name)
        self._link = PostgresTarget(cfg)
        self._conn: psycopg.Connection[Any] | None = None
        self.held = False

    def try_acquire(self) -> bool:
        """True when this session holds the lock (re-checked every call)."""
        try:
            if self.held and self._conn is not None and not self._conn.closed and not self._conn.broken:
                self._conn.execute("SELECT 1")
                return True
            self.held = False
            self._conn = self._link.connection()
            row = self._conn.execute("SELECT pg_catalog.pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            self.held = bool(row and row[0])
        except (psycopg.Error, TargetUnavailable) as exc:
            self.held = False
            self._link.close()
            self._conn = None
            log.warning("leader_lock_unavailable", target=self.name, error=str(exc))
        return self.held

    def release(self) -> None:
        if self.held and self._conn is not None and not self._conn.closed and not self._conn.broken:
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("SELECT pg_catalog.pg_advisory_unlock(%s)", (self.key,))
        self.held = False
        self._link.close()
        self._conn = None


class Leadership:
    """Which targets this replica leads.  With ``ha_lock = false`` it leads every target."""

    def __init__(self, cfg: Config) -> None:
        self._mutex = threading.Lock()
        self._enabled = cfg.daemon.ha_lock
        self._locks: dict[str, _TargetLock] = {}
        self.configure(cfg)

    def configure(self, cfg: Config) -> None:
        """Follow a reloaded config: drop locks of removed or changed targets."""
        with self._mutex:
            self._enabled = cfg.daemon.ha_lock
            wanted = {t.name: t for t in cfg.targets if isinstance(t, PostgresTargetConfig)}
            for name in list(self._locks):
                lock = self._locks[name]
                if name not in wanted or lock._link.config != wanted[name] or not self._enabled:
                    lock.release()
                    del self._locks[name]
            if self._enabled:
                for name, tcfg in wanted.items():
                    self._locks.setdefault(name, _TargetLock(tcfg))

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

    def release_all(self) -> None:
        with self._mutex:
            for lock in self._locks.values():
                lock.release()
            self._locks.clear()
