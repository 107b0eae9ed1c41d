"""``roles list`` and ``roles show`` for any managed role (issue 16, finding 8),
against a real PostgreSQL.  Brownfield: a DBA-made login role is a member of a
catalog role by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from psycopg import sql

from provisioner.cli import cli
from provisioner.core.values import marker as markers
from tests.privileges.support import RULES, Env, environment, run
from tests.privileges.test_privilege_drift import DEPT_RULE


@pytest.fixture
def env(tmp_path: Path, role_prefix: str) -> Iterator[Env]:
    with environment(tmp_path, role_prefix) as e:
        e.write(rules=RULES + DEPT_RULE)
        e.apply()
        with e.admin() as conn:
            run(conn, "CREATE ROLE {} LOGIN", f"{role_prefix}dba_jane")
            run(conn, "GRANT {} TO {}", f"{role_prefix}trade_executor", f"{role_prefix}dba_jane")
        yield e


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output + str(result.exception)
    return result.stdout  # logs and notices go to stderr; stdout is the report alone


def test_roles_show_catalog_role_with_owner_members_reasons_and_default_privileges(env: Env) -> None:
    p = env.prefix
    facts = json.loads(invoke("roles", "show", "-c", str(env.path), "--format", "json", f"{p}trade_reader"))
    assert (facts["owner"], facts["sensitivity"], facts["description"]) == (
        "Head of Trading", "medium", "Read trading data.")
    (target,) = facts["targets"].values()
    members = {m["member"]: m for m in target["members"]}
    assert members[f"{p}trade_executor"]["kind"] == "catalog_inherits"
    assert target["default_privileges"], "wildcard grants set default privileges"
    assert any(g["on"].startswith("future tables of") and g["privilege"] == "SELECT"
               for g in target["default_privileges"])

    executor = json.loads(invoke("roles", "show", "-c", str(env.path), "--format", "json", f"{p}trade_executor"))
    members = {m["member"]: m for m in next(iter(executor["targets"].values()))["members"]}
    assert members[f"{p}bkaczmarek"]["kind"] == "rule" and "desk-traders" in members[f"{p}bkaczmarek"]["text"]
    assert members[f"{p}bkaczmarek"]["person"] == "bkaczmarek"
    assert members[f"{p}dba_jane"]["kind"] == "hand_membership"
    text = invoke("roles", "show", "-c", str(env.path), f"{p}trade_executor")
    assert f"{p}dba_jane  HAND GRANT" in text and "owner: Head of Trading" in text and "sensitivity: high" in text


def test_rule_role_outside_the_catalog_and_roles_list(env: Env) -> None:
    p = env.prefix
    with env.as_owner() as conn:
        run(conn, "GRANT UPDATE ON trading.approvals TO {}", f"{p}dept_trading")
    text = invoke("roles", "show", "-c", str(env.path), f"{p}dept_trading")
    assert f"{p}dept_trading (not in the role catalog)" in text
    assert "managed group role" in text
    assert f"{p}tobrien [tobrien]: {p}tobrien is a member of {p}dept_trading: dept-trading" in text
    assert f"UPDATE on table trading.approvals in database {p}db0" in text

    rows = {r["role"]: r for r in json.loads(invoke("roles", "list", "-c", str(env.path), "--format", "json"))}
    assert rows[f"{p}trade_approver"]["sensitivity"] == "critical"
    assert rows[f"{p}trade_approver"]["owner"] == "Chief Compliance Officer"
    assert rows[f"{p}dept_trading"]["in_catalog"] is False
    (t,) = rows[f"{p}trade_executor"]["targets"].values()
    assert t["managed"] and t["members"] >= 5  # four traders and the DBA's hand-made member
    listing = invoke("roles", "list", "-c", str(env.path))
    assert f"{p}dept_trading" in listing and "(not in catalog)" in listing


def test_roles_list_never_calls_another_installations_group_role_managed(env: Env) -> None:
    """E2E finding: on a server two installations share, ``roles list`` listed the other
    installation's group role as this one's ``managed`` role (any marker counted)."""
    p = env.prefix
    marker = markers.PREFIX + json.dumps({"kind": "group", "instance": "risk-team"})
    with env.admin() as conn:
        run(conn, "CREATE ROLE {} NOLOGIN", f"{p}risk_analyst")
        conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(f"{p}risk_analyst"), sql.Literal(marker)))
    rows = {r["role"]: r for r in json.loads(invoke("roles", "list", "-c", str(env.path), "--format", "json"))}
    assert f"{p}dept_trading" in rows, "this installation's own group role is listed"
    assert f"{p}risk_analyst" not in rows, rows.get(f"{p}risk_analyst")
