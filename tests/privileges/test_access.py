"""``provisioner access OBJECT`` on the quickstart setup (the shipped mappings, the
sample directory and trading schema) against a real PostgreSQL (issue 16).

Brownfield: a DBA-made login role holds a hand grant; a managed person gets a
hand grant; the provisioner's login is a member of the object owner.
The shipped role names are prefixed so tests can share the server.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from provisioner.cli import cli
from tests.privileges.support import ROOT, Env, environment, run

SHIPPED_ROLES = (
    "trade_reader", "trade_executor", "trade_approver", "ops_settlement", "compliance_reader",
    "risk_analyst", "dba_tools",
)


def shipped(path: str, prefix: str) -> str:
    """A shipped mapping file with every role name prefixed, braces escaped for Env.write."""
    text = (ROOT / "mappings" / path).read_text()
    text = re.sub(r"\b(" + "|".join(SHIPPED_ROLES) + r"|dept_)", prefix + r"\1", text)
    return text.replace("{", "{{").replace("}", "}}")


@pytest.fixture
def env(tmp_path: Path, role_prefix: str) -> Iterator[Env]:
    with environment(tmp_path, role_prefix) as e:
        e.write(catalog=shipped("roles/trading.toml", role_prefix), rules=shipped("rules/trading.toml", role_prefix))
        e.apply()
        with e.admin() as conn:
            run(conn, "CREATE ROLE {} LOGIN", f"{role_prefix}dba_audit")  # made by a DBA, not managed
        with e.as_owner() as conn:
            run(conn, "GRANT UPDATE ON trading.approvals TO {}", f"{role_prefix}bkaczmarek")
            run(conn, "GRANT UPDATE ON trading.approvals TO {}", f"{role_prefix}dba_audit")
        yield e


def access(env: Env, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["access", "-c", str(env.path), *args])
    assert result.exit_code == 0, result.output + str(result.exception)
    return result.stdout  # logs and notices go to stderr; stdout is the report alone


def test_who_can_update_approvals_lists_exactly_the_roles_and_people_with_hand_grants_marked(env: Env) -> None:
    p = env.prefix
    data = json.loads(access(env, "trading.approvals", "--privilege", "UPDATE", "--format", "json"))
    (result,) = data["results"]
    assert result["object"] == f"table trading.approvals in database {p}db0"
    assert result["owner"] == f"{p}app_owner"
    mine = [x for x in result["paths"] if x["role"].startswith(p)]
    holders = {x["role"]: x for x in mine}
    approvers = {f"{p}hmorrow", f"{p}mlindqvist"}
    assert set(holders) == {
        f"{p}app_owner", f"{p}svc",                           # the owner, and the provisioner login via membership
        f"{p}trade_approver", *approvers,                     # the catalog's column grant, through the rule
        f"{p}bkaczmarek", f"{p}dba_audit",                    # hand grants
    }, sorted(holders)
    assert all(x["privilege"] == "UPDATE" for x in mine)
    for person in approvers:
        (path,) = [x for x in mine if x["role"] == person]
        assert [s["kind"] for s in path["steps"]] == ["rule", "catalog_grant"]
        assert "trade-approvers" in path["steps"][0]["text"]
        assert path["columns"] == ["approved_at", "approved_by", "status"]
        assert path["hand_grant"] is False and path["login"] is True
    hand = {x["role"] for x in mine if x["hand_grant"]}
    assert hand == {f"{p}bkaczmarek", f"{p}dba_audit", f"{p}svc"}  # svc: hand-made membership of the owner
    (bk,) = [x for x in mine if x["role"] == f"{p}bkaczmarek"]
    assert bk["person"] == "bkaczmarek" and bk["columns"] == [] and bk["steps"][0]["kind"] == "hand_grant"
    supers = [x for x in result["paths"] if x["steps"][0]["kind"] == "superuser"]
    assert any(x["role"] == "postgres" for x in supers)


def test_text_and_csv_mark_hand_grants(env: Env) -> None:
    p = env.prefix
    text = access(env, "trading.approvals", "--privilege", "UPDATE")
    assert re.search(rf"{p}bkaczmarek \[bkaczmarek\] \(login\)  HAND GRANT", text), text
    assert re.search(rf"{p}hmorrow \[hmorrow\] \(login\) \(approved_at, approved_by, status\)\n", text), text
    rows = list(csv.DictReader(io.StringIO(access(env, "trading.approvals", "--format", "csv"))))
    bk = [r for r in rows if r["role"] == f"{p}bkaczmarek" and r["privilege"] == "UPDATE"]
    assert [(r["hand_grant"], r["step_kinds"]) for r in bk] == [("true", "hand_grant")]
    readers = {r["role"] for r in rows if r["privilege"] == "SELECT" and r["role"].startswith(p)}
    assert f"{p}tobrien" in readers and f"{p}pdurand" in readers  # trader and compliance, through trade_reader


def test_every_path_and_public_on_a_function(env: Env) -> None:
    p = env.prefix
    data = json.loads(access(env, "trading.approve_order", "--format", "json"))
    (result,) = data["results"]
    assert result["object"] == f"function trading.approve_order(bigint) in database {p}db0"
    assert result["public"] == ["EXECUTE"]  # PostgreSQL's default: everyone can approve orders
    schema = json.loads(access(env, "trading", "--format", "json"))["results"][0]
    usage = [x for x in schema["paths"] if x["role"] == f"{p}hmorrow" and x["privilege"] == "USAGE"]
    # hmorrow reaches trade_reader twice: directly by rule, and through trade_approver (catalog inherits)
    assert sorted(tuple(s["kind"] for s in x["steps"]) for x in usage) == [
        ("rule", "catalog_grant"),
        ("rule", "catalog_inherits", "catalog_grant"),
    ], usage
    database = json.loads(access(env, f"{p}db0", "--format", "json"))["results"][0]
    assert database["object_type"] == "database" and "CONNECT" in database["public"]


def test_unknown_object_is_a_clear_error(env: Env) -> None:
    result = CliRunner().invoke(cli, ["access", "-c", str(env.path), "trading.nope"])
    assert result.exit_code == 1
    assert "no table, sequence, function, schema or database named 'trading.nope'" in result.output
