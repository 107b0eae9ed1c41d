"""Leader locks: a session-level lock per target on the target's own server.

The daemon's HA module (:mod:`provisioner.daemon.ha`) asks :func:`leader_lock` for one
lock per target and knows nothing of the database: each lock keeps one dedicated
session and, before a run, tries ``pg_try_advisory_lock(key)`` (PostgreSQL) or
``GET_LOCK(name, 0)`` (MariaDB / MySQL) on it.  The lock lives as long as the session:
when the leader dies (even ``kill -9``) the server ends its session and frees it.  A
leader *host* that vanishes without closing its connection is noticed through the
session's TCP keepalives and, on PostgreSQL 14+, ``idle_session_timeout``; on MariaDB by
its ``wait_timeout`` -- each a small multiple of ``leader_retry``.

Names and keys come from :func:`provisioner.targets.base.lock_name` /
:func:`~provisioner.targets.base.lock_key` (``leader``), distinct from the apply lock
every apply takes (``apply``).
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import psycopg
import pymysql

from provisioner.config import MemoryTargetConfig, MysqlTargetConfig, PostgresTargetConfig
from provisioner.errors import TargetUnavailable
from provisioner.logs import log
from provisioner.targets.base import lock_key, lock_name
from provisioner.targets.mysql import MysqlTarget
from provisioner.targets.postgres import PostgresTarget


class LeaderLock(Protocol):
    name: str
    held: bool

    @property
    def config(self) -> PostgresTargetConfig | MysqlTargetConfig | MemoryTargetConfig:
        """The target configuration the lock was made for (a reload compares it)."""
        ...

    def try_acquire(self) -> bool:
        """True when this process holds the lock (re-checked on every call)."""
        ...

    def release(self) -> None: ...


def leader_lock(
    cfg: PostgresTargetConfig | MysqlTargetConfig | MemoryTargetConfig, retry: float = 5.0
) -> LeaderLock:
    """The leader lock of the target ``cfg`` (nothing connects yet); ``retry``: the
    daemon's ``leader_retry``, which bounds how long a dead leader's lock survives."""
    if isinstance(cfg, PostgresTargetConfig):
        return PostgresLeaderLock(cfg, retry)
    if isinstance(cfg, MysqlTargetConfig):
        return MysqlLeaderLock(cfg, retry)
    return ProcessLeaderLock(cfg)


class PostgresLeaderLock:
    def __init__(self, cfg: PostgresTargetConfig, retry: float = 5.0) -> None:
        self.name = cfg.name
        self.config = cfg
        self.key = lock_key("leader", cfg.name)
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


class MysqlLeaderLock:
    """``GET_LOCK(name, 0)`` held by a dedicated session: freed by ``RELEASE_LOCK``, by
    closing the session, or by the server when the session ends (a killed leader)."""

    def __init__(self, cfg: MysqlTargetConfig, retry: float = 5.0) -> None:
        self.name = cfg.name
        self.config = cfg
        self.lock = lock_name("leader", cfg.name)
        self._link = MysqlTarget(cfg)
        self.held = False
        self.retry = retry

    def _one(self, sql: str) -> Any:
        with self._link.connection().cursor() as cur:
            cur.execute(sql, (self.lock,))
            row = cur.fetchone()
        return row[0] if row else None

    def try_acquire(self) -> bool:
        """A session the server ended (``wait_timeout``) is replaced and the lock tried again."""
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


class ProcessLeaderLock:
    """An in-memory target lives in one process: that process leads it."""

    def __init__(self, cfg: MemoryTargetConfig) -> None:
        self.name = cfg.name
        self.config = cfg
        self.held = False

    def try_acquire(self) -> bool:
        self.held = True
        return True

    def release(self) -> None:
        self.held = False
