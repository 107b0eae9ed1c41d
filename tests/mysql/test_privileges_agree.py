"""PostgreSQL and MariaDB agree where their capabilities agree (issue 20): the same catalog
grants -- named tables, columns, routines, extras = "revoke" -- plan the same privilege changes
on both servers, apply, re-plan empty, and a hand grant is taken back on both alike."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from provisioner.core.values.plan import ChangeKind, Plan
from tests.mysql.catalog import make_catalog_setup
from tests.privileges.support import environment, run
from tests.support import mysql as M

CATALOG = """
[role.{p}trade_executor]
description = "Enter orders."
owner = "Head of Trading"
sensitivity = "high"
extras = "revoke"
[[role.{p}trade_executor.grants]]
on = "tables"
schema = "{s}trading"
objects = ["orders", "executions"]
privileges = ["INSERT", "UPDATE", "SELECT"]

[role.{p}trade_approver]
description = "Approve trades."
owner = "Chief Compliance Officer"
sensitivity = "critical"
extras = "revoke"
[[role.{p}trade_approver.grants]]
on = "columns"
schema = "{s}trading"
objects = ["approvals"]
columns = ["status", "approved_by"]
privileges = ["UPDATE"]
[[role.{p}trade_approver.grants]]
on = "functions"
schema = "{s}trading"
objects = ["approve_order"]
privileges = ["EXECUTE"]

[role.{p}risk_analyst]
description = "Read positions."
owner = "Chief Risk Officer"
sensitivity = "medium"
extras = "revoke"
[[role.{p}risk_analyst.grants]]
on = "tables"
schema = "{s}risk"
objects = ["positions", "results"]
privileges = ["SELECT"]
"""


def privilege_changes(plan: Plan, prefix: str, dialect: str) -> list[str]:
    """Privilege changes in a server-neutral form: prefixes and PostgreSQL's database dropped."""
    out = []
    for c in plan.changes:
        if c.kind in (ChangeKind.GRANT_PRIVILEGE, ChangeKind.REVOKE_PRIVILEGE):
            text = re.sub(r" in database \S+", "", c.describe(dialect)).replace(prefix, "")
            out.append(text)
    return sorted(out)


def test_same_catalog_same_privilege_plans_on_postgresql_and_mariadb(
    tmp_path: Path, role_prefix: str, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    with environment(tmp_path / "pg", role_prefix) as pg_env:
        pg_env.write(catalog=CATALOG.replace("{s}", ""))
        maria = make_catalog_setup(tmp_path / "maria", mysql_prefix, mysql_login, privileges=True)
        roles = tmp_path / "maria" / "mappings" / "roles" / "trading.toml"
        roles.write_text(CATALOG.replace("{s}", mysql_prefix).format(p=mysql_prefix))
        for path in (tmp_path / "maria" / "mappings" / "sod").glob("*.toml"):
            path.unlink()
        first_pg = privilege_changes(pg_env.plan(), role_prefix, "postgresql")
        first_maria = privilege_changes(maria.setup.plan(), mysql_prefix, "mariadb")
        assert first_pg == first_maria
        assert "grant EXECUTE on function trading.approve_order(bigint) to trade_approver" in first_maria
        assert "grant UPDATE on column trading.approvals(status) to trade_approver" in first_maria
        pg_env.apply()
        maria.setup.apply()
        assert privilege_changes(pg_env.plan(), role_prefix, "postgresql") == []
        assert privilege_changes(maria.setup.plan(), mysql_prefix, "mariadb") == []
        # the same hand grant on both: revoked alike (extras = "revoke")
        with pg_env.as_owner() as conn:
            run(conn, "GRANT DELETE ON trading.orders TO {}", f"{role_prefix}trade_executor")
        M.q(mysql_admin, f"GRANT DELETE ON `{mysql_prefix}trading`.`orders` TO {M.ident(mysql_prefix + 'trade_executor')}")
        revoke_pg = privilege_changes(pg_env.apply(), role_prefix, "postgresql")
        revoke_maria = privilege_changes(maria.setup.apply(), mysql_prefix, "mariadb")
        assert revoke_pg == revoke_maria == ["revoke DELETE on table trading.orders from trade_executor"]
        assert not pg_env.has(f"{role_prefix}trade_executor", "DELETE", "trading.orders")
        assert privilege_changes(maria.setup.plan(), mysql_prefix, "mariadb") == []
