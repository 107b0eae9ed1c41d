"""Catalog reading for the MariaDB / MySQL 8 target.

An account is ``'user'@'host'``; a business role is a MariaDB role (host
``''``).  Role names in :class:`ActualState` are:

* a role's name;
* ``user`` for an account whose host is the configured ``account_host``;
* ``user@host`` for any other account (seen, never managed).

Ownership markers live in the table ``managed_roles`` of the meta database
(MariaDB has no COMMENT on accounts).  Everything is read in a constant number
of queries whatever the number of accounts: session facts, accounts, role
grants, markers, open sessions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from provisioner.core.values.model import ActualRole, Marker, RoleKind

SESSION_QUERY = "SELECT VERSION(), CURRENT_USER()"

# MariaDB 10.4+: mysql.user is a view over mysql.global_priv (JSON per account).
MARIADB_ACCOUNTS_QUERY = """
SELECT User, Host,
       COALESCE(JSON_VALUE(Priv, '$.is_role'), 'false') IN ('true', '1'),
       COALESCE(JSON_VALUE(Priv, '$.account_locked'), 'false') IN ('true', '1'),
       CAST(COALESCE(JSON_VALUE(Priv, '$.access'), '0') AS UNSIGNED),
       COALESCE(JSON_VALUE(Priv, '$.plugin'), ''),
       COALESCE(JSON_VALUE(Priv, '$.authentication_string'), '')
  FROM mysql.global_priv
"""
MARIADB_GRANTS_QUERY = "SELECT User, Host, Role FROM mysql.roles_mapping"
MARIADB_DEFAULT_ROLES_QUERY = """
SELECT User, Host, JSON_VALUE(Priv, '$.default_role') FROM mysql.global_priv
 WHERE COALESCE(JSON_VALUE(Priv, '$.default_role'), '') <> ''
"""

# MySQL 8: roles are locked accounts; role grants are in mysql.role_edges.
MYSQL_ACCOUNTS_QUERY = """
SELECT u.User, u.Host,
       EXISTS (SELECT 1 FROM mysql.role_edges e WHERE e.FROM_USER = u.User AND e.FROM_HOST = u.Host),
       u.account_locked = 'Y',
       (u.Super_priv = 'Y') * 32768 + (u.Grant_priv = 'Y') * 1024,
       COALESCE(u.plugin, ''), COALESCE(u.authentication_string, '')
  FROM mysql.user u
"""
MYSQL_GRANTS_QUERY = "SELECT TO_USER, TO_HOST, FROM_USER FROM mysql.role_edges"

# Open sessions per account user name, other than the provisioner's own.
SESSIONS_QUERY = """
SELECT USER, COUNT(*) FROM information_schema.PROCESSLIST
 WHERE USER IS NOT NULL AND ID <> CONNECTION_ID() AND COMMAND <> 'Killed'
 GROUP BY USER
"""

GRANT_ACL = 1 << 10
SUPER_ACL = 1 << 15
"""Global privilege bits (MariaDB ``access``): an account holding either is protected."""

SYSTEM_USERS = frozenset({"root", "mariadb.sys", "mysql", "PUBLIC"})

NO_SUCH_TABLE = (1146, 1049)
"""Meta table or database missing: no markers yet."""


def markers_query(table: str, ledger: str | None = None) -> str:
    """``table`` and ``ledger`` are already quoted ``db.table`` names; ``ledger`` None: a
    meta database of an older version, without the ledger table (installation name and
    membership ledger read as absent)."""
    if ledger is None:
        return f"SELECT name, host, kind, stable_id, source, valid_until, NULL, NULL FROM {table}"
    return (
        "SELECT m.name, m.host, m.kind, m.stable_id, m.source, m.valid_until, l.instance, l.granted"
        f" FROM {table} m LEFT JOIN {ledger} l ON l.name = m.name AND l.host = m.host"
    )




def is_mariadb(version: str) -> bool:
    return "mariadb" in version.lower()


@dataclass(frozen=True, slots=True)
class Account:
    user: str
    host: str
    is_role: bool
    locked: bool
    access: int
    plugin: str = ""
    auth: str = ""
    """Authentication plugin and its string (a password hash, a PAM service ...)."""

    @property
    def system(self) -> bool:
        return self.user in SYSTEM_USERS or self.user.startswith("mysql.") or self.user == ""

    @property
    def privileged(self) -> bool:
        return bool(self.access & (GRANT_ACL | SUPER_ACL))


class Names:
    """Account ``(user, host)`` <-> role name in the actual state."""

    def __init__(self, accounts: Iterable[Account], account_host: str) -> None:
        self.account_host = account_host
        self.roles = {a.user for a in accounts if a.is_role}

    def name(self, user: str, host: str) -> str:
        if host == "" and user in self.roles:
            return user
        if host == self.account_host and user not in self.roles:
            return user
        return f"{user}@{host}"

    def split(self, name: str) -> tuple[str, str]:
        """The account of a role name the diff produced (no ``@host`` suffix)."""
        if name in self.roles:
            return name, ""
        return name, self.account_host


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def accounts(rows: Iterable[tuple[Any, ...]]) -> list[Account]:
    return [
        Account(_text(u), _text(h), bool(int(r)), bool(int(lk)), int(acc or 0), _text(pl), _text(au))
        for u, h, r, lk, acc, pl, au in rows
    ]


def credential_drift(accts: Iterable[Account], names: Names, plugin: str, auth: str | None) -> frozenset[str]:
    """Login accounts (not roles) whose authentication is not the configured ``plugin`` and
    ``auth`` string provisioner creates them with (``auth`` None: an empty string); the caller
    keeps the managed ones."""
    want = auth if auth is not None else ""
    return frozenset(
        names.name(a.user, a.host)
        for a in accts
        if not a.is_role and (a.plugin.lower() != plugin.lower() or a.auth != want)
    )


def to_utc(value: datetime | None) -> datetime | None:
    """The meta table stores naive UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_marker(
    kind: Any, stable_id: Any, source: Any, instance: Any = None, granted: Any = None
) -> Marker | None:
    try:
        role_kind = RoleKind(_text(kind))
        ledger = json.loads(_text(granted)) if granted is not None else None
    except ValueError:
        return None
    if ledger is not None and (not isinstance(ledger, list) or not all(isinstance(g, str) for g in ledger)):
        return None
    sid = _text(stable_id) if stable_id is not None else None
    src = _text(source) if source is not None else None
    inst = _text(instance) if instance is not None else None
    return Marker(role_kind, sid, src, inst, frozenset(ledger) if ledger is not None else None)


def build_roles(
    accts: list[Account],
    grant_rows: Iterable[tuple[Any, ...]],
    marker_rows: Iterable[tuple[Any, ...]],
    account_host: str,
) -> tuple[dict[str, ActualRole], Names]:
    names = Names(accts, account_host)
    member_of: dict[str, set[str]] = {}
    for user, host, role in grant_rows:
        member_of.setdefault(names.name(_text(user), _text(host)), set()).add(_text(role))
    markers: dict[tuple[str, str], tuple[Marker | None, datetime | None]] = {}
    for name, host, kind, sid, source, until, instance, granted in marker_rows:
        markers[(_text(name), _text(host))] = (parse_marker(kind, sid, source, instance, granted), to_utc(until))
    roles: dict[str, ActualRole] = {}
    for a in sorted(accts, key=lambda a: (not a.is_role, a.user, a.host)):
        key = names.name(a.user, a.host)
        if key in roles:
            continue  # a role and a same-named account: the role keeps the plain name
        marker, until = markers.get((a.user, a.host), (None, None))
        if a.system or a.privileged:
            marker = None
        roles[key] = ActualRole(
            name=key,
            login=not a.is_role and not a.locked,
            superuser=a.privileged,
            valid_until=until if marker is not None else None,
            marker=marker,
            member_of=frozenset(member_of.get(key, ())),
            system=a.system,
        )
    return roles, names


def default_roles(rows: Iterable[tuple[Any, ...]], names: Names) -> dict[str, str]:
    """Role name of each account -> its default role (accounts without one absent)."""
    return {names.name(_text(u), _text(h)): _text(r) for u, h, r in rows}


def sessions(rows: Iterable[tuple[Any, ...]]) -> Mapping[str, int]:
    return {_text(user): int(n) for user, n in rows}


def session_account(current_user: str) -> tuple[str, str]:
    """``CURRENT_USER()`` is ``user@host``; the user part may contain ``@``."""
    user, _, host = current_user.rpartition("@")
    return user, host
