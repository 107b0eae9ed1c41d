"""Leader election per target: a session-level lock on the target's own server.

Each replica keeps one dedicated connection per target and, before a run, tries
``pg_try_advisory_lock(key)`` (PostgreSQL) or ``GET_LOCK('provisioner-leader:<target>', 0)``
(MariaDB / MySQL) on it.  The replica holding the lock is that
target's leader and the only one that applies; the others plan only.  The lock
lives as long as the session: when the leader dies (even ``kill -9``) the
server ends its session and the lock is released.

Failover takes seconds, not an interval: :meth:`Leadership.watch` runs a loop that
every ``daemon.leader_retry`` seconds re-checks each held lock (which also keeps the
session busy) and tries the ones not held; a replica that gains a lock runs a
reconcile at once.  A leader *host* that vanishes without closing its connections
is noticed by the server through the lock session's TCP keepalives
(``tcp_keepalives_*``) and, on PostgreSQL 14+, ``idle_session_timeout``; on MariaDB
by the session's ``wait_timeout``.  Each bound is a small multiple of
``leader_retry``, so the lock of a dead host is free within about a minute.

The key differs from the transaction-level lock that every apply takes inside
its transaction (:func:`provisioner.targets.pg_session.advisory_lock_key`), and
the MariaDB lock name from the apply lock ``provisioner:<target>``
(:func:`provisioner.targets.mysql.lock_name`).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable
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
    def __init__(self, cfg: PostgresTargetConfig, retry: float = 5.0) -> None:
        self.name = cfg.name
        self.key = leader_lock_key(cfg.name)
        self._link = PostgresTarget(cfg)
        self._conn: psycopg.Connection[Any] | None = None
        self.held = False
        self.retry = retry

    def _session(self) -> psycopg.Connection[Any]:
        """A fresh lock session whose server side notices a vanished client quickly."""
        conn = self._link.connection()
        idle = max(10, int(self.retry * 2))
        conn.execute(
            "SELECT pg_catalog.set_config('tcp_keepalives_idle', %s, false), "
            "pg_catalog.set_config('tcp_keepalives_interval', %s, false), "
            "pg_catalog.set_config('tcp_keepalives_count', '3', false)",
            (str(idle), str(max(2, idle // 3))),
        )
        if conn.info.server_version >= 140000:
            # the leader touches its session every leader_retry seconds; silence means it is gone
            timeout_ms = int(max(30.0, self.retry * 6) * 1000)
            conn.execute("SELECT pg_catalog.set_config('idle_session_timeout', %s, false)", (str(timeout_ms),))
        return conn

    def try_acquire(self) -> bool:
        """True when this session holds the lock (re-checked every call)."""
        try:
            if self.held and self._conn is not None and not self._conn.closed and not self._conn.broken:
                self._conn.execute("SELECT 1")
                return True
            self.held = False
            self._link.close()
            self._conn = self._session()
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

    def __init__(self, cfg: MysqlTargetConfig, retry: float = 5.0) -> None:
        self.name = cfg.name
        self.lock = leader_lock_name(cfg.name)
        self._link = MysqlTarget(cfg)
        self.held = False
        self.retry = retry

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
            with self._link.connection().cursor() as cur:
                # the leader touches its session every leader_retry seconds; silence means it is gone
                cur.execute("SET SESSION wait_timeout = %s", (int(max(30.0, self.retry * 6)),))
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
        self._retry = cfg.daemon.leader_retry
        self._targets: tuple[str, ...] = ()
        self._locks: dict[str, _TargetLock | _MysqlTargetLock] = {}
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
                if name not in wanted or lock._link.config != wanted[name] or not self._enabled:
                    lock.release()
                    del self._locks[name]
            if self._enabled:
                for name, tcfg in wanted.items():
                    if name not in self._locks:
                        self._locks[name] = (
                            _TargetLock(tcfg, self._retry)
                            if isinstance(tcfg, PostgresTargetConfig)
                            else _MysqlTargetLock(tcfg, self._retry)
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
