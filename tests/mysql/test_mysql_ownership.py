"""Ownership on MariaDB (issue 13): the membership ledger in the meta table, in the
brownfield situation (the business roles exist before provisioner, created by a DBA)."""

from __future__ import annotations

import json
from pathlib import Path

from provisioner.core.values.plan import ChangeKind
from tests.mysql.support import Person, make_mysql_setup
from tests.support import mysql as M

OLD_META = """CREATE TABLE {table} (
  name VARCHAR(128) NOT NULL, host VARCHAR(255) NOT NULL, kind VARCHAR(8) NOT NULL,
  stable_id VARCHAR(255) NULL, source VARCHAR(255) NULL, valid_until DATETIME(6) NULL,
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (name, host)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""
"""The meta table as an older version created it (no installation name, no ledger)."""


def ledger(login: M.Login, name: str) -> set[str] | None:
    with M.admin_connect() as conn:
        rows = M.q(
            conn,
            f"SELECT granted FROM {M.ident(login.meta_database)}.managed_ledger WHERE name = %s AND host = '%'",
            (name,),
        )
    assert rows, name
    return None if rows[0][0] is None else set(json.loads(rows[0][0]))


def test_mover_revokes_tool_grants_and_keeps_hand_grants(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login
) -> None:
    p = mysql_prefix
    svc = f"{M.ident(mysql_login.user)}@'%'"
    with M.admin_connect() as conn:  # the DBA's roles, and an older version's meta table
        for role in ("trader", "reader", "ops"):
            M.q(conn, f"CREATE ROLE {M.ident(p + role)}")
            M.q(conn, f"GRANT {M.ident(p + role)} TO {svc} WITH ADMIN OPTION")
        M.q(conn, f"CREATE DATABASE IF NOT EXISTS {M.ident(mysql_login.meta_database)}")
        M.q(conn, OLD_META.format(table=f"{M.ident(mysql_login.meta_database)}.managed_roles"))
    env = make_mysql_setup(tmp_path, p, mysql_login)
    env.people(Person("alice", "Trading"))
    env.setup.apply()
    assert M.role_grants(p)[f"{p}alice"] == {f"{p}trader", f"{p}reader"}
    assert ledger(mysql_login, f"{p}alice") == {f"{p}trader", f"{p}reader"}

    with M.admin_connect() as conn:  # a DBA grants ops by hand
        M.q(conn, f"GRANT {M.ident(p + 'ops')} TO {M.account(conn, p + 'alice')}")
    env.people(Person("alice", "Compliance"))  # no rule for Compliance: a mover
    plan = env.setup.apply()
    assert sorted((c.kind, c.param("group"), c.reasons[0].rule) for c in plan.changes) == [
        (ChangeKind.REVOKE_MEMBERSHIP, f"{p}reader", "lifecycle:mover"),
        (ChangeKind.REVOKE_MEMBERSHIP, f"{p}trader", "lifecycle:mover"),
    ]
    drift = [n.message for n in plan.targets[0].notices if n.code == "drift"]
    assert any(repr(f"{p}ops") in d for d in drift), drift
    assert M.role_grants(p)[f"{p}alice"] == {f"{p}ops"}, "the hand grant stays (drift = report)"
    assert ledger(mysql_login, f"{p}alice") == set()
    again = env.setup.plan()
    assert again.changes == () and any(n.code == "drift" for n in again.targets[0].notices)
