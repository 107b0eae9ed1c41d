"""A table-level REVOKE on PostgreSQL also revokes that privilege on every column of the
table.  When ``extras = "revoke"`` takes back a hand-made table grant from a catalog role
whose catalog grants the same privilege on some columns, the column grants must survive
the apply (re-granted in the same plan), not vanish until the next run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.privileges.support import Env, environment, run

CATALOG = """
[role.{p}approver]
description = "Approve trades: the approval columns only."
owner = "Chief Compliance Officer"
sensitivity = "critical"
extras = "revoke"
[[role.{p}approver.grants]]
on = "schema"
schema = "trading"
privileges = ["USAGE"]
[[role.{p}approver.grants]]
on = "columns"
schema = "trading"
objects = ["approvals"]
columns = ["status", "approved_by"]
privileges = ["UPDATE"]
"""

RULES = """
[[rule]]
id = "approvers"
description = "desk heads approve"
grant = ["{p}approver"]
when = {{ attr = "title", regex = "^head of trading" }}
"""


@pytest.fixture
def env(tmp_path: Path, role_prefix: str) -> Iterator[Env]:
    with environment(tmp_path, role_prefix) as e:
        yield e.write(catalog=CATALOG, rules=RULES)


def column_update(env: Env, role: str, column: str) -> bool:
    with env.admin() as conn:
        row = conn.execute(
            "SELECT has_column_privilege(%s, 'trading.approvals', %s, 'UPDATE')", (role, column)
        ).fetchone()
    return bool(row and row[0])


def test_revoking_a_hand_made_table_grant_keeps_the_catalogs_column_grants(env: Env) -> None:
    p = env.prefix
    approver = f"{p}approver"
    env.apply()
    assert column_update(env, approver, "status") and column_update(env, approver, "approved_by")
    assert not env.has(approver, "UPDATE", "trading.approvals")

    with env.as_owner() as conn:  # a DBA "fixes" an approver's ticket with the whole table
        run(conn, "GRANT UPDATE ON trading.approvals TO {}", approver)
    plan = env.plan()
    described = [c.describe() for c in plan.changes]
    assert f"revoke UPDATE on table trading.approvals in database {p}db0 from {approver}" in described, described

    env.apply()
    assert not env.has(approver, "UPDATE", "trading.approvals")
    assert column_update(env, approver, "status"), "the catalog's column grant went with the table-level revoke"
    assert column_update(env, approver, "approved_by")
    assert not column_update(env, approver, "order_id")
    again = env.plan()
    assert [c.describe() for c in again.changes] == []
