"""MariaDB, like PostgreSQL, revokes a table-level privilege from the table's columns too:
when the shipped catalog's ``trade_approver`` (``extras = "revoke"``, UPDATE on three columns
of ``approvals``) loses a hand-made table-level UPDATE, its column grants must survive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.mysql.catalog import make_catalog_setup
from tests.support import mysql as M


def test_revoking_a_table_grant_keeps_the_catalogs_column_grants_on_mariadb(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login, privileges=True)
    env.setup.apply()
    approver, table = M.ident(p + "trade_approver"), f"`{p}trading`.`approvals`"

    def grants() -> str:
        return " ".join(str(r[0]) for r in M.q(mysql_admin, f"SHOW GRANTS FOR {approver}"))

    assert "UPDATE (" in grants() and f"GRANT UPDATE ON {table}" not in grants(), grants()
    M.q(mysql_admin, f"GRANT UPDATE ON {table} TO {approver}")  # a DBA's shortcut
    plan = env.setup.plan()
    described = [c.describe() for c in plan.changes if c.role == p + "trade_approver"]
    assert any(d.startswith("revoke UPDATE on table") and "approvals" in d for d in described), described
    env.setup.apply()
    after = grants()
    assert "UPDATE (" in after, f"the catalog's column grants went with the table-level revoke: {after}"
    assert f"GRANT UPDATE ON {table}" not in after.replace("UPDATE (", "")
    assert not [c.describe() for c in env.setup.plan().changes]
