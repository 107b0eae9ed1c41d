"""The shipped catalog on MariaDB: plan, apply, re-plan empty (issue 20)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from provisioner.cli.render import render_plan
from provisioner.core.values.plan import ChangeKind, Plan
from tests.mysql.catalog import make_catalog_setup
from tests.sod.test_sod_e2e import run_cli
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
    assert f"{p}trade_reader (" in notes[0].message and "manage_privileges = false" in notes[0].message


def test_saved_plan_with_sod_policies_applies(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login)
    env.setup.apply()
    # brownfield: a DBA's own account holds both sides of a policy by hand
    M.q(mysql_admin, f"CREATE USER {M.account(mysql_admin, p + 'dba_hand')}")
    with M.connect_as(mysql_login.user, mysql_login.password) as dba:  # holds the roles WITH ADMIN OPTION
        for role in ("trade_executor", "trade_approver"):
            M.q(dba, f"GRANT {M.ident(p + role)} TO {M.account(dba, p + 'dba_hand')}")
    text = env.ldif.read_text().replace("title: Equity Trader", "title: Trade Approver", 1)  # a mover
    env.ldif.write_text(text)
    saved = Plan.from_json(json.loads(json.dumps(env.setup.plan().to_json())))
    conflicts = [n for n in saved.targets[0].notices if n.code == "sod_conflict"]
    assert {n.role for n in conflicts} == {p + "dba_hand"}  # never the provisioner's own account
    # role sides only: the catalog's table privileges are not applied on MariaDB
    assert [n.message.split("'")[1] for n in conflicts] == ["trade-approve-execute"]
    unchecked = [n.message for n in saved.targets[0].notices if n.code == "sod_unchecked"]
    assert len(unchecked) == 1 and "'order-entry-approval'" in unchecked[0]
    assert env.setup.plan().targets[0].fingerprint == saved.targets[0].fingerprint
    applied = env.setup.apply(saved=saved)
    assert [c.describe() for c in applied.changes] == [c.describe() for c in saved.changes]
    assert p + "trade_approver" in M.role_grants(p)[p + "bkaczmarek"]
    assert env.setup.plan().changes == ()


def test_plan_text_speaks_mariadb(tmp_path: Path, mysql_prefix: str, mysql_login: M.Login) -> None:
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login)
    first = render_plan(env.setup.plan())
    assert f"create user {p}bkaczmarek (user, ACCOUNT UNLOCK)" in first
    assert f"create role {p}trade_reader (group)" in first and "NOLOGIN" not in first
    env.setup.apply()
    text = env.ldif.read_text().replace("hrStatus: active", "hrStatus: terminated", 1)  # the first person leaves
    env.ldif.write_text(text)
    plan = env.setup.plan()
    leaver = next(c.role for c in plan.changes if c.kind is ChangeKind.TERMINATE_SESSIONS)
    rendered = render_plan(plan)
    assert f"alter user {leaver} ACCOUNT LOCK (access ends " in rendered
    assert f"kill sessions of {leaver}" in rendered
    assert "NOLOGIN" not in rendered and "VALID UNTIL" not in rendered
    saved = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert render_plan(saved) == rendered
    assert plan.to_json()["targets"][0]["dialect"] == "mariadb"


def test_sod_report_ignores_the_service_account(tmp_path: Path, mysql_prefix: str, mysql_login: M.Login) -> None:
    p = mysql_prefix
    env = make_catalog_setup(tmp_path, p, mysql_login)
    env.setup.apply()
    with M.admin_connect() as conn:  # the provisioner holds every role it created WITH ADMIN OPTION
        admin = M.q(
            conn,
            "SELECT COUNT(*) FROM mysql.roles_mapping WHERE User = %s AND Admin_option = 'Y'",
            (mysql_login.user,),
        )
    assert admin[0][0] >= 7
    report = run_cli("sod", "report", "-c", str(env.setup.path), "--detailed-exitcode")
    assert report.returncode == 0, report.stdout + report.stderr
    assert mysql_login.user not in report.stdout
    assert "WARNING SoD policy 'order-entry-approval'" in report.stdout  # said, not a failure
