"""Turning changes into MariaDB / MySQL statements, and executing them.

Account-management statements (CREATE USER/ROLE, GRANT, REVOKE, ALTER USER,
DROP USER) commit implicitly: there is no transactional apply.  Each change is
therefore ordered so that every prefix of its statements is safe:

* create: the marker row first, then the account (a created account is always
  marked; a marker row without an account means nothing and is removed);
* leaver: ACCOUNT LOCK first (no new logins), then KILL of open sessions, then
  the role revokes (the core orders the changes so); the marker stays;
* rename: marker row for the new name, RENAME USER, old marker row removed;
* drop: DROP USER, then the marker row.

Identifiers (roles, the meta database) are quoted with :func:`quote_ident`;
account user and host parts and every value are string literals escaped by
the driver (``connection.escape``) or passed as query parameters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pymysql

from provisioner.core.values.model import Marker
from provisioner.core.values.plan import Change, ChangeKind
from provisioner.targets.base import ChangeFailed, required
from provisioner.targets.mysql_inspect import Names

ACCOUNT_EXISTS = 1396
"""``Operation CREATE USER failed``: the account (or role) already exists."""
UNKNOWN_THREAD = 1094
NOT_THREAD_OWNER = 1095
KILL_WAIT_SECONDS = 5.0

META_DDL = """CREATE TABLE IF NOT EXISTS {table} (
  name VARCHAR(128) NOT NULL,
  host VARCHAR(255) NOT NULL,
  kind VARCHAR(8) NOT NULL,
  stable_id VARCHAR(255) NULL,
  source VARCHAR(255) NULL,
  valid_until DATETIME(6) NULL,
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (name, host)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""


LEDGER_DDL = """CREATE TABLE IF NOT EXISTS {table} (
  name VARCHAR(128) NOT NULL,
  host VARCHAR(255) NOT NULL,
  instance VARCHAR(255) NULL,
  granted TEXT NULL,
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (name, host)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""
"""Beside ``managed_roles``: each marked account's installation name and membership ledger
(the roles provisioner granted it, a JSON list).  A table of its own, so that a meta
database of an older version gains it with the CREATE privilege provisioner already holds."""


def quote_ident(name: Any) -> str:
    """A backtick-quoted identifier (embedded backticks doubled); NUL and empty
    names are refused."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an identifier must be a non-empty string, got {name!r}")
    if "\x00" in name:
        raise ValueError(f"an identifier cannot contain NUL: {name!r}")
    return "`" + name.replace("`", "``") + "`"


def mysql_message(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return f"({args[0]}) {args[1]}"
    return str(exc)


def error_code(exc: BaseException) -> int | None:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    return args[0] if args and isinstance(args[0], int) else None


@dataclass(frozen=True, slots=True)
class Settings:
    meta_database: str
    auth_plugin: str
    auth_string: str | None
    mariadb: bool = True


def _iso_to_naive_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    instant = datetime.fromisoformat(str(value))
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC).replace(tzinfo=None)


Step = Callable[["Executor"], None]


class Executor:
    """Runs changes one statement at a time on an autocommit connection."""

    def __init__(self, conn: pymysql.connections.Connection[Any], names: Names, settings: Settings) -> None:
        self.conn = conn
        self.names = names
        self.settings = settings
        self.statements = 0
        self.table = f"{quote_ident(settings.meta_database)}.{quote_ident('managed_roles')}"
        self.ledger_table = f"{quote_ident(settings.meta_database)}.{quote_ident('managed_ledger')}"

    # ------------------------------------------------------------- primitives

    def run(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        self.statements += 1
        with self.conn.cursor() as cur:
            cur.execute(statement, params)
            return list(cur.fetchall()) if cur.description else []

    def literal(self, value: str) -> str:
        return str(self.conn.escape(value))

    def account(self, name: str) -> str:
        user, host = self.names.split(name)
        return f"{self.literal(user)}@{self.literal(host)}"

    def grantee(self, name: str) -> str:
        """A GRANT/REVOKE grantee: an account ``'user'@'host'``, or a role by its bare name
        (``'role'@''`` names an account with an empty host, not the role: error 1133)."""
        user, host = self.names.split(name)
        return quote_ident(user) if host == "" else f"{self.literal(user)}@{self.literal(host)}"

    def ensure_meta(self) -> None:
        self.run(f"CREATE DATABASE IF NOT EXISTS {quote_ident(self.settings.meta_database)}")
        self.run(META_DDL.format(table=self.table))
        self.run(LEDGER_DDL.format(table=self.ledger_table))

    def put_marker(self, name: str, host: str, marker: Mapping[str, Any], valid_until: Any = None) -> None:
        m = Marker.from_json(marker)
        self.run(
            f"INSERT INTO {self.table} (name, host, kind, stable_id, source, valid_until)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE kind = VALUES(kind),"
            " stable_id = VALUES(stable_id), source = VALUES(source), valid_until = VALUES(valid_until)",
            (name, host, m.kind.value, m.stable_id, m.source, _iso_to_naive_utc(valid_until)),
        )
        self.put_ledger_row(name, host, m)

    def put_ledger_row(self, name: str, host: str, m: Marker) -> None:
        granted = json.dumps(sorted(m.granted)) if m.granted is not None else None
        self.run(
            f"INSERT INTO {self.ledger_table} (name, host, instance, granted) VALUES (%s, %s, %s, %s)"
            " ON DUPLICATE KEY UPDATE instance = VALUES(instance), granted = VALUES(granted)",
            (name, host, m.instance, granted),
        )

    def put_ledger(self, change: Change) -> None:
        """A membership change carries the member's marker with its updated ledger
        (MariaDB commits every statement: recorded before a GRANT, after a REVOKE)."""
        marker = change.param("marker")
        if marker is None:
            return
        if not isinstance(marker, Mapping):
            raise ValueError("marker must be an object")
        user, host = self.names.split(change.role)
        self.put_ledger_row(user, host, Marker.from_json(marker))

    def drop_marker(self, name: str, host: str) -> None:
        self.run(f"DELETE FROM {self.ledger_table} WHERE name = %s AND host = %s", (name, host))
        self.run(f"DELETE FROM {self.table} WHERE name = %s AND host = %s", (name, host))

    def drop_orphan_markers(self) -> int:
        """Remove marker rows whose account no longer exists (left by an
        interrupted create or drop), read under the apply lock; returns how many."""
        source = "mysql.global_priv" if self.settings.mariadb else "mysql.user"
        existing = {(str(u), str(h)) for u, h in self.run(f"SELECT User, Host FROM {source}")}
        rows = self.run(f"SELECT name, host FROM {self.table}")
        gone = [(str(n), str(h)) for n, h in rows if (str(n), str(h)) not in existing]
        for name, host in gone:
            self.drop_marker(name, host)
        return len(gone)

    # ------------------------------------------------------------- changes

    def create(self, change: Change) -> None:
        marker = change.param("marker")
        if not isinstance(marker, Mapping):
            raise ValueError("create_role needs a marker object")
        group = change.param("role_kind") == "group"
        user, host = (change.role, "") if group else (change.role, self.names.account_host)
        self.put_marker(user, host, marker, change.param("valid_until"))
        if group:
            statement = f"CREATE ROLE {quote_ident(change.role)}"
        else:
            statement = f"CREATE USER {self.literal(user)}@{self.literal(host)} {self._identified()}"
            if not change.param("login"):
                statement += " ACCOUNT LOCK"
        try:
            self.run(statement)
        except pymysql.err.MySQLError as exc:
            if error_code(exc) == ACCOUNT_EXISTS:  # a namesake appeared since the plan: not ours
                self.drop_marker(user, host)
            raise
        if group:
            self.names.roles.add(change.role)

    def _identified(self) -> str:
        plugin, using = self.settings.auth_plugin, self.settings.auth_string
        if self.settings.mariadb:
            text = f"IDENTIFIED VIA {plugin}"
            return text + (f" USING {self.literal(using)}" if using is not None else "")
        text = f"IDENTIFIED WITH {plugin}"
        return text + (f" AS {self.literal(using)}" if using is not None else "")

    def alter(self, change: Change) -> None:
        if any(key == "default_role" for key, _ in change.params):
            role = change.param("default_role")
            self.run(
                f"SET DEFAULT ROLE {quote_ident(role) if role is not None else 'NONE'} FOR {self.account(change.role)}"
            )
        login = change.param("login")
        if login is not None:
            self.run(f"ALTER USER {self.account(change.role)} ACCOUNT {'UNLOCK' if login else 'LOCK'}")
        if any(key == "valid_until" for key, _ in change.params):
            user, host = self.names.split(change.role)
            self.run(
                f"UPDATE {self.table} SET valid_until = %s WHERE name = %s AND host = %s",
                (_iso_to_naive_utc(change.param("valid_until")), user, host),
            )

    def grant(self, change: Change) -> None:
        self.put_ledger(change)
        self.run(f"GRANT {quote_ident(required(change, 'group'))} TO {self.grantee(change.role)}")

    def revoke(self, change: Change) -> None:
        self.run(f"REVOKE {quote_ident(required(change, 'group'))} FROM {self.grantee(change.role)}")
        self.put_ledger(change)

    def set_marker(self, change: Change) -> None:
        user, host = self.names.split(change.role)
        marker = change.param("marker")
        if marker is None:
            self.drop_marker(user, host)
        elif isinstance(marker, Mapping):
            self.put_marker(user, host, marker)
        else:
            raise ValueError("marker must be an object or null")

    def rename(self, change: Change) -> None:
        old = required(change, "old_name")
        old_user, host = self.names.split(old)
        rows = self.run(
            f"SELECT m.kind, m.stable_id, m.source, m.valid_until, l.instance, l.granted FROM {self.table} m"
            f" LEFT JOIN {self.ledger_table} l ON l.name = m.name AND l.host = m.host"
            " WHERE m.name = %s AND m.host = %s",
            (old_user, host),
        )
        if rows:
            kind, sid, src, until, inst, granted = rows[0]
            marker = {"kind": kind, "id": sid, "source": src, "instance": inst}
            if granted is not None:
                marker["granted"] = json.loads(granted)
            self.put_marker(change.role, host, marker)
            if until is not None:
                self.run(
                    f"UPDATE {self.table} SET valid_until = %s WHERE name = %s AND host = %s",
                    (until, change.role, host),
                )
        self.run(f"RENAME USER {self.account(old)} TO {self.literal(change.role)}@{self.literal(host)}")
        self.drop_marker(old_user, host)

    def terminate(self, change: Change) -> None:
        """KILL every session of the account's user (after its ACCOUNT LOCK).
        Without CONNECTION ADMIN a KILL is refused: the disable goes on and
        verify reports the sessions still open."""
        user, _host = self.names.split(change.role)
        query = "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND ID <> CONNECTION_ID()"
        killed: list[int] = []
        for (thread,) in self.run(query, (user,)):
            try:
                self.run("KILL CONNECTION %s", (int(thread),))
                killed.append(int(thread))
            except pymysql.err.MySQLError as exc:
                if error_code(exc) not in (UNKNOWN_THREAD, NOT_THREAD_OWNER):
                    raise
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while killed and time.monotonic() < deadline:  # KILL is asynchronous
            placeholders = ", ".join(["%s"] * len(killed))
            left = self.run(f"SELECT ID FROM information_schema.PROCESSLIST WHERE ID IN ({placeholders})", killed)
            killed = [int(t) for (t,) in left]
            if killed:
                time.sleep(0.05)

    def drop(self, change: Change) -> None:
        user, host = self.names.split(change.role)
        kind = "ROLE" if host == "" else "USER"
        target = quote_ident(user) if host == "" else self.account(change.role)
        self.run(f"DROP {kind} IF EXISTS {target}")
        self.drop_marker(user, host)


STEPS: dict[ChangeKind, Callable[[Executor, Change], None]] = {
    ChangeKind.CREATE_ROLE: Executor.create,
    ChangeKind.ALTER_ROLE: Executor.alter,
    ChangeKind.GRANT_MEMBERSHIP: Executor.grant,
    ChangeKind.REVOKE_MEMBERSHIP: Executor.revoke,
    ChangeKind.SET_MARKER: Executor.set_marker,
    ChangeKind.RENAME_ROLE: Executor.rename,
    ChangeKind.TERMINATE_SESSIONS: Executor.terminate,
    ChangeKind.DROP_ROLE: Executor.drop,
}


def check(
    change: Change,
    steps: Mapping[ChangeKind, Callable[[Executor, Change], None]] = STEPS,
    more: Callable[[Change], None] | None = None,
) -> None:
    """Refuse, before anything runs, a change this target cannot express (``steps``: the
    changes it can run; ``more``: a further check of privilege changes)."""
    if change.kind not in steps:
        raise ChangeFailed(
            f"change {change.describe()} cannot be applied: {change.kind.value!r} is not supported by the "
            "MySQL/MariaDB target",
            change,
        )
    try:
        if more is not None and change.kind in (ChangeKind.GRANT_PRIVILEGE, ChangeKind.REVOKE_PRIVILEGE):
            more(change)
        quote_ident(change.role)
        for key in ("group", "old_name", "default_role"):
            if change.param(key) is not None:
                quote_ident(change.param(key))
        if change.kind is ChangeKind.CREATE_ROLE and not isinstance(change.param("marker"), Mapping):
            raise ValueError("create_role needs a marker object")
        _iso_to_naive_utc(change.param("valid_until"))
    except (ValueError, TypeError) as exc:
        raise ChangeFailed(f"change {change.describe()} cannot be applied: {exc}", change) from exc
