"""The shipped catalog on MariaDB: plan, apply, re-plan empty (issue 20)."""

from __future__ import annotations

from pathlib import Path

from provisioner.core.plan import ChangeKind
from tests.mysql.catalog import make_catalog_setup
from tests.support import mysql as M


def test_shipped_catalog_applies_and_replans_empty(tmp_path: Path, mysql_prefix: str, mysql_login: M.Login) -> None:
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login)
    plan = env.setup.apply()
    assert plan.changes
    hierarchy = {
        (c.role, c.param("group")) for c in plan.changes if c.kind is ChangeKind.GRANT_MEMBERSHIP
    }
    for child in ("trade_executor", "trade_approver", "ops_settlement", "compliance_reader"):
        assert (p + child, p + "trade_reader") in hierarchy
    grants = M.role_grants(p)
    # role-to-role grants of the catalog's inherits
    for child in ("trade_executor", "trade_approver", "ops_settlement", "compliance_reader"):
        assert p + "trade_reader" in grants[p + child]
    # the sample directory's users hold their roles
    assert p + "trade_executor" in grants[p + "bkaczmarek"]
    assert p + "ops_settlement" in grants[p + "cnguyen"]
    warnings = {(n.code, n.role) for n in plan.targets[0].notices if n.code == "privileges_unmanaged"}
    assert warnings == set()
    again = env.setup.plan()
    assert [c.describe() for c in again.changes] == []
    notes = [n for n in plan.targets[0].notices if n.code == "privileges_not_supported"]
    assert len(notes) == 1 and notes[0].level.value == "info"
    assert f"{p}trade_reader (" in notes[0].message and "no schemas" in notes[0].message
