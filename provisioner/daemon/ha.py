"""Leader election per target: a session-level lock on the target's own server.

Each replica keeps one dedicated connection per target and, before a run, tries
``pg_try_advisory_lock(key)`` (PostgreSQL) or ``GET_LOCK('provisioner-leader:<target>', 0)``
(MariaDB / MySQL) on it.  The replica holding the lock is that
target's leader and the only one that applies; the others plan only.  The lock
lives as long as the session: when the leader dies (even ``kill -9``) the
server ends its session, the lock is released, and the next replica to try —
at its next run, so within one interval — becomes leader.

The key differs from the transaction-level lock that every apply takes inside
its transaction (:func:`provisioner.targets.postgres.advisory_lock_key`), and
the MariaDB lock name from the apply lock ``provisioner:<target>``
(:func:`provisioner.targets.mysql.lock_name`).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from typing import Any

import psycopg
import pymysql

from provisioner.config import Config, MysqlTargetConfig, PostgresTargetConfig
from provisioner.errors import TargetUnavailable
from provisioner.logs import log
from provisioner.targets.mysql import MysqlTarget
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


def leader_lock_name(target_name: str) -> str:
    """The MariaDB ``GET_LOCK`` name of a target's leader lock (64 chars max), distinct
    from the apply lock ``provisioner:<target>``."""
    return f"provisioner-leader:{target_name}"[:64]


class _MysqlTargetLock:
    """``GET_LOCK(name, 0)`` held by a dedicated session: freed by ``RELEASE_LOCK``, by
    closing the session, or by the server when the session ends (a killed leader)."""

    def __init__(self, cfg: MysqlTargetConfig) -> None:
        self.name = cfg.name
        self.lock = leader_lock_name(cfg.name)
        self._link = MysqlTarget(cfg)
        self.held = False

    def _one(self, sql: str) -> Any:
        with self._link.connection().cursor() as cur:
            cur.execute(sql, (self.lock,))
            row = cur.fetchone()
        return row[0] if row else None

    def try_acquire(self) -> bool:
        """True when this session holds the lock (re-checked every call: a session the
        server ended, e.g. after ``wait_timeout``, is replaced and the lock tried again)."""
        try:
            held = self.held and self._link.connection_open()
            if held and self._one("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()") == 1:
                return True
            self.held = False
            self._link.close()
            self.held = self._one("SELECT GET_LOCK(%s, 0)") == 1
        except (pymysql.err.MySQLError, TargetUnavailable) as exc:
            self.held = False
            self._link.close()
            log.warning("leader_lock_unavailable", target=self.name, error=str(exc))
        return self.held

    def release(self) -> None:
        if self.held and self._link.connection_open():
            with contextlib.suppress(pymysql.err.MySQLError):
                self._one("SELECT RELEASE_LOCK(%s)")
        self.held = False
        self._link.close()


class Leadership:
    """Which targets this replica leads.  With ``ha_lock = false`` it leads every target."""

    def __init__(self, cfg: Config) -> None:
        self._mutex = threading.Lock()
        self._enabled = cfg.daemon.ha_lock
        self._locks: dict[str, _TargetLock | _MysqlTargetLock] = {}
        self.configure(cfg)

    def configure(self, cfg: Config) -> None:
        """Follow a reloaded config: drop locks of removed or changed targets."""
        with self._mutex:
            self._enabled = cfg.daemon.ha_lock
            wanted = {t.name: t for t in cfg.targets}
            for name in list(self._locks):
                lock = self._locks[name]
                if name not in wanted or lock._link.config != wanted[name] or not self._enabled:
                    lock.release()
                    del self._locks[name]
            if self._enabled:
                for name, tcfg in wanted.items():
                    if name not in self._locks:
                        self._locks[name] = (
                            _TargetLock(tcfg) if isinstance(tcfg, PostgresTargetConfig) else _MysqlTargetLock(tcfg)
                        )

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
