"""The role catalog's object privileges on MariaDB 10.11 (issue 20): the shipped catalog
plans, applies and re-plans empty; a mover loses access; hand grants are drift; what
MariaDB cannot express is a precise plan error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pymysql
import pytest

from provisioner.core.governance.alerts import AlertPolicy, History, Severity, evaluate
from provisioner.core.values.plan import ChangeKind, NoticeLevel, Plan
from provisioner.engine.recovery import planned_event
from provisioner.errors import StalePlan
from provisioner.mappings import load_mappings
from provisioner.targets.mysql import MysqlTarget
from tests.mysql.catalog import make_catalog_setup
from tests.sod.test_sod_e2e import run_cli
from tests.support import mysql as M


def show_grants(conn: Any, role: str) -> set[str]:
    """``SHOW GRANTS`` of a role, without the always-present ``USAGE ON *.*``."""
    rows = M.q(conn, f"SHOW GRANTS FOR {M.ident(role)}")
    return {str(r[0]) for r in rows if " ON *.* " not in str(r[0]) and not str(r[0]).startswith("GRANT `")}


def login_as(user: str) -> pymysql.connections.Connection[Any]:
    M.set_password(user, "pw-" + user)
    return M.connect_as(user, "pw-" + user)


def test_shipped_catalog_applies_privileges_and_replans_empty(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login, privileges=True)
    plan = env.setup.apply()
    notices = plan.targets[0].notices
    assert [n.message for n in notices if n.level is NoticeLevel.ERROR] == []
    assert not [n for n in notices if n.code in ("privileges_unmanaged", "privileges_not_supported")]
    implied = [n.message for n in notices if n.code == "privilege_implied"]
    assert any("[role." + p + "trade_reader] grants[0]: CONNECT on database" in m for m in implied)
    assert any(f"[role.{p}trade_reader] grants[1]: USAGE on schema {p}trading" in m for m in implied)
    t, r = f"`{p}trading`", f"`{p}risk`"
    # a wildcard is one grant on the database (every table now and later); `_` escaped: never a pattern
    assert show_grants(mysql_admin, p + "trade_reader") == {
        f"GRANT SELECT ON `{p.replace('_', chr(92) + '_')}trading`.* TO `{p}trade_reader`",
        f"GRANT SELECT ON `{p.replace('_', chr(92) + '_')}reference`.* TO `{p}trade_reader`",
        f"GRANT SELECT ON {r}.`positions` TO `{p}trade_reader`",
    }
    executor = show_grants(mysql_admin, p + "trade_executor")
    assert f"GRANT INSERT, UPDATE ON {t}.`orders` TO `{p}trade_executor`" in executor
    assert f"GRANT SELECT, INSERT ON {t}.`orders_id_seq` TO `{p}trade_executor`" in executor  # NEXTVAL
    approver = show_grants(mysql_admin, p + "trade_approver")
    assert f"GRANT EXECUTE ON PROCEDURE {t}.`approve_order` TO `{p}trade_approver`" in approver
    assert any("UPDATE (`approved_at`, `approved_by`, `status`)" in g or "UPDATE (" in g for g in approver)
    assert show_grants(mysql_admin, p + "dba_tools") == set()
    again = env.setup.plan()
    assert [c.describe("mariadb") for c in again.changes] == []
    # the grants work: a trader enters an order (its id from the sequence), cannot approve it
    trader = p + "bkaczmarek"
    with login_as(trader) as conn:
        M.q(conn, f"SET ROLE {M.ident(p + 'trade_executor')}")
        M.q(conn, f"INSERT INTO {t}.orders (instrument_id, side, qty, trader) VALUES (1, 'buy', 10, 'b')")
        assert M.q(conn, f"SELECT COUNT(*) FROM {t}.orders")[0][0] == 1  # SELECT inherited from trade_reader
        with pytest.raises(pymysql.err.OperationalError, match="1142"):
            M.q(conn, f"UPDATE {t}.approvals SET status = 'approved'")


def test_mover_loses_privileges_through_membership(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login
) -> None:
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login, privileges=True)
    env.setup.apply()
    trader, t = p + "bkaczmarek", f"`{p}trading`"
    with login_as(trader) as conn:
        M.q(conn, f"SET ROLE {M.ident(p + 'trade_executor')}")
        M.q(conn, f"INSERT INTO {t}.orders (instrument_id, side, qty) VALUES (1, 'buy', 1)")
    text = env.ldif.read_text().replace("title: Equity Trader", "title: Trade Approver", 1)  # a mover
    env.ldif.write_text(text)
    plan = env.setup.apply()
    assert (trader, p + "trade_executor") in {
        (c.role, c.param("group")) for c in plan.changes if c.kind is ChangeKind.REVOKE_MEMBERSHIP
    }
    with M.connect_as(trader, "pw-" + trader) as conn:
        with pytest.raises(pymysql.err.OperationalError, match="1959"):  # invalid role specification
            M.q(conn, f"SET ROLE {M.ident(p + 'trade_executor')}")
        M.q(conn, f"SET ROLE {M.ident(p + 'trade_approver')}")
        with pytest.raises(pymysql.err.OperationalError, match="1142"):
            M.q(conn, f"INSERT INTO {t}.orders (instrument_id, side, qty) VALUES (1, 'buy', 1)")
        M.q(conn, f"UPDATE {t}.approvals SET status = 'approved' WHERE order_id = 0")
        M.q(conn, f"CALL {t}.approve_order(0)")
    assert env.setup.plan().changes == ()


def _notices(plan: Plan, code: str) -> list[str]:
    return [n.message for t in plan.targets for n in t.notices if n.code == code]


def test_hand_grants_on_managed_roles_are_drift(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    """Brownfield: a DBA's own role keeps its hand grants; hand grants to a person's account
    and to a rule role outside the catalog are drift rated by the object's sensitivity (and
    alerted); a hand grant to a catalog role with extras = "revoke" is taken back."""
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login, privileges=True)
    t = f"`{p}trading`"
    M.q(mysql_admin, f"CREATE ROLE {M.ident(p + 'dba_reporting')}")  # pre-existing, unmanaged
    M.q(mysql_admin, f"GRANT SELECT ON {t}.`orders` TO {M.ident(p + 'dba_reporting')}")
    env.setup.apply()
    trader = M.account(mysql_admin, p + "bkaczmarek")
    M.q(mysql_admin, f"GRANT UPDATE ON {t}.`approvals` TO {trader}")  # critical object
    M.q(mysql_admin, f"GRANT SELECT ON `{p}reference`.`instruments` TO {trader}")  # medium: below the alert bar
    M.q(mysql_admin, f"GRANT DELETE ON {t}.`orders` TO {M.ident(p + 'dept_trading')}")  # rule role, not catalog
    M.q(mysql_admin, f"GRANT DELETE ON {t}.`orders` TO {M.ident(p + 'trade_executor')}")  # catalog, extras=revoke
    plan = env.setup.plan()
    drift = _notices(plan, "privilege_drift")
    assert any(
        m.startswith(f"managed login role {p}bkaczmarek holds UPDATE on table {p}trading.approvals, which the")
        and "[sensitivity critical]" in m
        and f"({p}trade_approver grants on it)" in m
        for m in drift
    ), drift
    assert any(m.startswith(f"managed role {p}dept_trading holds DELETE on table {p}trading.orders") for m in drift)
    assert not any(f"{p}dba_reporting" in m for m in drift), "an unmanaged role is not provisioner's to judge"
    revokes = [c.describe("mariadb") for c in plan.changes]
    assert revokes == [f"revoke DELETE on table {p}trading.orders from {p}trade_executor"]
    record = planned_event(env.setup.ctx(env.setup.config()), plan).content()
    catalog = load_mappings(env.setup.config().mappings_dir).catalog
    alerts = [a for a in evaluate([record], catalog, History(), AlertPolicy()) if a.key.startswith("privilege_drift:")]
    assert sorted((a.facts["role"], a.facts["sensitivity"], a.severity) for a in alerts) == [
        (p + "bkaczmarek", "critical", Severity.CRITICAL),  # trading.approvals: trade_approver's (critical)
        (p + "dept_trading", "high", Severity.WARNING),  # trading.orders: trade_executor's (high)
    ], alerts  # reference.instruments (medium) is below the default bar
    env.setup.apply()
    assert not any("DELETE" in g for g in show_grants(mysql_admin, p + "trade_executor"))
    # drift = "revoke": the hand grants to managed roles are taken back, the DBA's role keeps its own
    text = env.setup.path.read_text().replace("protected_roles = []", 'protected_roles = []\ndrift = "revoke"')
    env.setup.path.write_text(text)
    plan = env.setup.apply()
    assert sorted(c.describe("mariadb") for c in plan.changes) == [
        f"revoke DELETE on table {p}trading.orders from {p}dept_trading",
        f"revoke SELECT on table {p}reference.instruments from {p}bkaczmarek",
        f"revoke UPDATE on table {p}trading.approvals from {p}bkaczmarek",
    ]
    assert [str(r[0]) for r in M.q(mysql_admin, f"SHOW GRANTS FOR {trader}") if f"{p}trading" in str(r[0])] == []
    assert f"GRANT SELECT ON {t}.`orders` TO `{p}dba_reporting`" in show_grants(mysql_admin, p + "dba_reporting")
    assert env.setup.plan().changes == ()


def test_grant_mariadb_cannot_express_is_a_precise_error(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login, privileges=True)
    catalog = tmp_path / "mappings" / "roles" / "trading.toml"
    catalog.write_text(
        catalog.read_text()
        + f"""
[role.{p}cleanup]
description = "Empties staging tables"
owner = "Head of IT"
sensitivity = "high"

[[role.{p}cleanup.grants]]
on = "tables"
schema = "{p}trading"
objects = ["executions"]
privileges = ["DELETE", "TRUNCATE"]

[[role.{p}cleanup.grants]]
on = "database"
privileges = ["TEMPORARY"]
"""
    )
    plan = env.setup.apply()
    errors = [n.message for n in plan.targets[0].notices if n.level is NoticeLevel.ERROR]
    line = catalog.read_text().splitlines().index(f"[role.{p}cleanup]") + 1
    assert errors == [
        f"{catalog}:{line} [role.{p}cleanup] grants[0]: TRUNCATE on table {p}trading.executions cannot be expressed on "
        "MariaDB and is not granted: MariaDB's TRUNCATE TABLE needs the DROP privilege, which also drops the "
        "table; remove it from the catalog or grant it by hand",
        f"{catalog}:{line} [role.{p}cleanup] grants[1]: TEMPORARY on database cannot be expressed on MariaDB and is not "
        "granted: MariaDB grants CREATE TEMPORARY TABLES per database (one per catalog schema) or on *.* for the "
        "whole server; a PostgreSQL database is the whole server, so only the broader *.* grant could express "
        "it; remove it from the catalog or grant it by hand",
    ]
    # the rest of the grant applies, nothing broader than asked
    assert show_grants(mysql_admin, p + "cleanup") == {f"GRANT DELETE ON `{p}trading`.`executions` TO `{p}cleanup`"}
    result = run_cli("plan", "-c", str(env.setup.path))
    assert "privilege_inexpressible" in result.stdout and f"[role.{p}cleanup] grants[0]: TRUNCATE" in result.stdout
    assert env.setup.plan().changes == ()


def test_access_and_roles_answer_on_mariadb(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login, privileges=True)
    env.setup.apply()
    M.q(mysql_admin, f"GRANT UPDATE ON `{p}trading`.`approvals` TO {M.account(mysql_admin, p + 'bkaczmarek')}")
    cfg = str(env.setup.path)
    result = run_cli("access", "-c", cfg, f"{p}trading.approvals", "--privilege", "UPDATE", "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    (found,) = json.loads(result.stdout)["results"]
    assert found["object"] == f"table {p}trading.approvals"
    paths = {(x["role"], tuple(x["columns"]), x["hand_grant"], tuple(s["kind"] for s in x["steps"])) for x in found["paths"]}
    cols = ("approved_at", "approved_by", "status")
    assert (p + "hmorrow", cols, False, ("rule", "catalog_grant")) in paths  # Head of Trading approves
    assert (p + "trade_approver", cols, False, ("catalog_grant",)) in paths
    assert (p + "bkaczmarek", (), True, ("hand_grant",)) in paths
    assert not any(r.startswith(p + "lferreira") for r, *_ in paths)  # a trader cannot approve
    # SELECT through trade_reader's database-level grant, two memberships away
    result = run_cli("access", "-c", cfg, f"{p}trading.orders", "--privilege", "SELECT", "--format", "json")
    (found,) = json.loads(result.stdout)["results"]
    reader = [x for x in found["paths"] if x["role"] == p + "lferreira"]
    assert reader and all(not x["hand_grant"] for x in reader), reader
    assert any(x["chain"][-1] == p + "trade_reader" for x in reader)
    svc = [x for x in found["paths"] if x["role"] == mysql_login.user]  # the grantor can read, and says so
    assert svc and all(x["hand_grant"] for x in svc), found["paths"]
    listed = run_cli("roles", "list", "-c", cfg, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["role"]: r for r in json.loads(listed.stdout)}
    assert rows[p + "trade_executor"]["targets"][p + "maria"] == {"exists": True, "managed": True, "members": 4}  # desk traders, not the service account
    shown = run_cli("roles", "show", "-c", cfg, p + "trade_executor")
    assert shown.returncode == 0, shown.stderr
    assert "MISSING" not in shown.stdout
    assert f"held    INSERT     {p}trading.orders " in shown.stdout, shown.stdout
    assert f"held    SELECT     all tables in schema {p}trading" in shown.stdout  # inherited wildcard


def test_privileges_are_read_in_constant_queries(mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any) -> None:
    p = mysql_prefix
    db = M.ident(p + "bulk")
    M.q(mysql_admin, f"CREATE DATABASE {db}")
    M.q(mysql_admin, f"GRANT ALL PRIVILEGES ON `{p.replace('_', chr(92) + '_')}bulk`.* TO "
        f"{M.account(mysql_admin, mysql_login.user)} WITH GRANT OPTION")
    target = MysqlTarget(mysql_login.target_config(p + "t", manage_privileges=True))
    try:
        counts = []
        for n in (10, 300):
            for i in range(n):
                M.q(mysql_admin, f"CREATE TABLE IF NOT EXISTS {db}.`t{i}` (id INT, v INT)")
            before = target.statements_executed
            state = target.inspect()
            counts.append(target.statements_executed - before)
            assert state.privileges is not None and len(state.privileges.databases[""].tables[p + "bulk"]) == n
        assert counts[0] == counts[1], counts
    finally:
        target.close()


def test_saved_plan_is_stale_after_a_hand_grant_and_public_is_seen(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login, privileges=True)
    env.setup.apply()
    saved = env.setup.plan()
    assert env.setup.apply(saved=saved).changes == ()  # not stale while nothing changed
    M.q(mysql_admin, f"GRANT SELECT ON `{p}risk`.`limits` TO {M.account(mysql_admin, p + 'bkaczmarek')}")
    with pytest.raises(StalePlan):
        env.setup.apply(saved=saved)
    M.q(mysql_admin, f"GRANT SELECT ON `{p}risk`.`limits` TO PUBLIC")  # MariaDB 10.11: every account
    try:
        public = _notices(env.setup.plan(), "public_privilege")
        assert [m.split(":")[0] for m in public] == [f"PUBLIC holds SELECT on table {p}risk.limits"], public
    finally:
        M.q(mysql_admin, f"REVOKE SELECT ON `{p}risk`.`limits` FROM PUBLIC")


def test_sod_privilege_sides_are_checked_on_mariadb(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    """With the catalog's privileges applied, a privilege side (INSERT on trading.orders vs
    UPDATE on trading.approvals) is checked on MariaDB as on PostgreSQL: no sod_unchecked."""
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login, privileges=True)
    env.setup.apply()
    M.q(mysql_admin, f"CREATE USER {M.account(mysql_admin, p + 'dba_hand')}")
    with M.connect_as(mysql_login.user, mysql_login.password) as dba:  # holds the roles WITH ADMIN OPTION
        for role in ("trade_executor", "trade_approver"):
            M.q(dba, f"GRANT {M.ident(p + role)} TO {M.account(dba, p + 'dba_hand')}")
    plan = env.setup.plan()
    conflicts = [n for n in plan.targets[0].notices if n.code == "sod_conflict"]
    assert {n.role for n in conflicts} == {p + "dba_hand"}
    assert sorted(n.message.split("'")[1] for n in conflicts) == ["order-entry-approval", "trade-approve-execute"]
    assert _notices(plan, "sod_unchecked") == []
    assert _notices(plan, "sod_reference") == []  # the policy's tables exist in the MariaDB databases
