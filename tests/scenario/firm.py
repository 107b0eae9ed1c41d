"""The outsider's tools for the Active Directory scenario (tests/scenario/test_ad_week.py).

Only what an operator or a DBA has: the ``provisioner`` CLI as a subprocess, an LDAP
connection to the domain controller, ``psql``-like queries on PostgreSQL and MariaDB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import ldap3

from tests.support import mysql as my
from tests.support import pg
from tests.support.samba import UAC_DISABLED, UAC_NORMAL, SambaDC, group_record, user_record

EXE = str(Path(sys.executable).with_name("provisioner"))


@dataclass
class Result:
    code: int
    out: str
    err: str

    def events(self, name: str) -> list[dict[str, Any]]:
        """JSON log lines (stderr) whose event is ``name``."""
        found = []
        for line in self.err.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("event") == name:
                found.append(doc)
        return found


def cli(*args: str, ok: Sequence[int] = (0,)) -> Result:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=300, check=False)
    res = Result(proc.returncode, proc.stdout, proc.stderr)
    assert res.code in ok, f"provisioner {' '.join(args)}: exit {res.code}\n{res.out}\n{res.err}"
    return res


class Directory:
    """One OU of the firm on the Samba AD DC: people and groups below it."""

    def __init__(self, dc: SambaDC, base: str) -> None:
        self.dc = dc
        self.base = base
        self.people = f"OU=people,{base}"
        self.groups = f"OU=groups,{base}"
        dc.ldbadd([(dn, {"objectClass": "organizationalUnit"}) for dn in (base, self.people, self.groups)])

    def dn(self, name: str) -> str:
        return f"CN={name},{self.people}"

    def group_dn(self, name: str) -> str:
        return f"CN={name},{self.groups}"

    def add_user(self, name: str, **attrs: Any) -> str:
        dn, values = user_record(self.people, name, **attrs)
        self.dc.ldbadd([(dn, values)])
        return dn

    def add_group(self, name: str, members: Sequence[str]) -> str:
        dn, values = group_record(self.groups, name, [self.dn(m) for m in members])
        self.dc.ldbadd([(dn, values)])
        return dn

    def _modify(self, dn: str, changes: dict[str, Any]) -> None:
        with self.dc.admin() as conn:
            conn.modify(dn, changes)

    def set(self, name: str, **attrs: Any) -> None:
        self._modify(self.dn(name), {k: [(ldap3.MODIFY_REPLACE, [v] if v is not None else [])] for k, v in attrs.items()})

    def disable(self, name: str) -> None:
        self.set(name, userAccountControl=str(UAC_DISABLED))

    def enable(self, name: str) -> None:
        self.set(name, userAccountControl=str(UAC_NORMAL))

    def join_group(self, group: str, name: str) -> None:
        self._modify(self.group_dn(group), {"member": [(ldap3.MODIFY_ADD, [self.dn(name)])]})

    def delete(self, name: str) -> None:
        with self.dc.admin() as conn:
            conn.delete(self.dn(name))


def filetime(when: datetime) -> str:
    """AD's accountExpires: 100 ns intervals since 1601-01-01 UTC."""
    from datetime import UTC

    epoch = datetime(1601, 1, 1, tzinfo=UTC)
    return str(int((when - epoch).total_seconds()) * 10**7)


# ---- PostgreSQL, as a DBA sees it


@dataclass(frozen=True)
class PgRole:
    login: bool
    valid_until: datetime | None
    """None: no expiry (NULL or 'infinity')."""
    groups: frozenset[str]


def pg_roles(prefix: str) -> dict[str, PgRole]:
    with pg.admin_connect() as conn:
        rows = conn.execute(
            "SELECT r.rolname, r.rolcanlogin, nullif(r.rolvaliduntil, 'infinity'),"
            " coalesce(array_agg(g.rolname) FILTER (WHERE g.rolname IS NOT NULL), '{}')"
            " FROM pg_roles r LEFT JOIN pg_auth_members am ON am.member = r.oid"
            " LEFT JOIN pg_roles g ON g.oid = am.roleid WHERE starts_with(r.rolname, %s) GROUP BY 1, 2, 3",
            (prefix,),
        ).fetchall()
    return {name: PgRole(bool(login), until, frozenset(groups)) for name, login, until, groups in rows}


def pg_exec(*statements: Any) -> None:
    with pg.admin_connect() as conn:
        for statement in statements:
            conn.execute(statement)


def pg_comment(role: str) -> str | None:
    with pg.admin_connect() as conn:
        row = conn.execute("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def pg_can(role: str, table: str, privilege: str) -> bool:
    with pg.admin_connect() as conn:
        row = conn.execute("SELECT has_table_privilege(%s, %s, %s)", (role, table, privilege)).fetchone()
    assert row is not None
    return bool(row[0])


# ---- MariaDB, as a DBA sees it


@dataclass(frozen=True)
class MyAccount:
    locked: bool
    roles: frozenset[str]


def my_accounts(prefix: str, svc: str) -> dict[str, MyAccount]:
    """User accounts (not roles) carrying ``prefix``, except the provisioner's own."""
    with my.admin_connect() as conn:
        users = my.q(
            conn,
            "SELECT User, COALESCE(JSON_VALUE(Priv, '$.account_locked'), 'false') IN ('true', '1')"
            " FROM mysql.global_priv WHERE LEFT(User, %s) = %s AND Host = '%'"
            " AND COALESCE(JSON_VALUE(Priv, '$.is_role'), 'false') NOT IN ('true', '1') AND User <> %s",
            (len(prefix), prefix, svc),
        )
    grants = my.role_grants(prefix)
    return {str(u): MyAccount(bool(lock), frozenset(grants.get(str(u), set()))) for u, lock in users}


def my_exec(*statements: str) -> None:
    with my.admin_connect() as conn:
        for statement in statements:
            my.q(conn, statement)


# ---- plan documents


def plan_changes(doc: dict[str, Any], target: str, role: str) -> list[tuple[str, Any]]:
    return sorted(
        (c["kind"], c["params"].get("group"))
        for t in doc["targets"]
        if t["target"] == target
        for c in t["changes"]
        if c["role"] == role
    )


def plan_notices(doc: dict[str, Any], code: str, target: str | None = None) -> list[dict[str, Any]]:
    return [n for t in doc["targets"] if target in (None, t["target"]) for n in t["notices"] if n["code"] == code]


def audit_records(config: Path, *filters: str) -> list[dict[str, Any]]:
    """``provisioner audit export --format jsonl`` (to stdout through a file)."""
    out = config.parent / "audit-export.jsonl"
    out.unlink(missing_ok=True)
    cli("audit", "export", "-c", str(config), "--format", "jsonl", "--out", str(out), *filters)
    return [json.loads(line)["content"] for line in out.read_text().splitlines() if line.strip()]
