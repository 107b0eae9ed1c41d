"""A broker-dealer's working week, end to end, as an operator drives it.

Every step runs the real CLI (``provisioner validate / plan / apply / explain /
access / audit verify``) as a subprocess against the test slapd and the shared
PostgreSQL, and checks the outcome in ``pg_roles`` / ``pg_auth_members`` directly.

Brownfield: before day 1 the DBAs created the business roles (no marker), gave them
table privileges on a small schema, and granted some of them by hand.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from psycopg import sql

from provisioner.core.values import marker as markers
from provisioner.core.values.plan import digest
from tests.cli.test_cli import run
from tests.support import pg
from tests.support.config import pin_instance
from tests.support.e2e import RELAXED_SAFETY, Setup, make_setup, person
from tests.support.fixtures import LdapOu

BUSINESS = ("desk_equities_trader", "market_data_reader", "compliance_reader", "trade_approver")

RULES = """
[[rule]]
id = "equities"
description = "the equities desk trades and reads market data"
grant = ["{p}desk_equities_trader", "{p}market_data_reader"]
when = {{ attr = "department", equals = "Equities" }}

[[rule]]
id = "compliance"
description = "compliance reads every trade"
grant = ["{p}compliance_reader"]
when = {{ attr = "department", equals = "Compliance" }}

[[rule]]
id = "approvers"
description = "members of the trade-approvers group approve trades"
grant = ["{p}trade_approver"]
when = {{ group = "trade-approvers" }}
"""

CATALOG = """
[role.{p}trade_approver]
description = "Approve trades above the desk limit."
owner = "Head of Trading"
sensitivity = "critical"

[role.{p}desk_equities_trader]
description = "Enter equity orders."
owner = "Head of Trading"
sensitivity = "high"

[role.{p}compliance_reader]
description = "Read every trade and approval."
owner = "Chief Compliance Officer"
sensitivity = "medium"
"""

LEAVE_DATE = {"attribute": "description", "pattern": r"leave-date:(\S+)", "format": "%Y-%m-%d"}


@pytest.fixture
def schema(role_prefix: str) -> Iterator[str]:
    """The DBAs' world before day 1: business roles, a schema, table privileges, a DBA login."""
    p = role_prefix
    name = f"{p}trading"
    with pg.admin_connect() as conn:
        for role in BUSINESS:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(p + role)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        for table in ("trades", "approvals"):
            conn.execute(sql.SQL("CREATE TABLE {}.{} (id int)").format(sql.Identifier(name), sql.Identifier(table)))
        grants = [
            ("desk_equities_trader", "SELECT, INSERT", "trades"),
            ("trade_approver", "SELECT, UPDATE", "approvals"),
            ("compliance_reader", "SELECT", "trades"),
            ("compliance_reader", "SELECT", "approvals"),
        ]
        for role in BUSINESS:
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(name), sql.Identifier(p + role)))
        for role, privs, table in grants:
            conn.execute(
                sql.SQL("GRANT " + privs + " ON {}.{} TO {}").format(
                    sql.Identifier(name), sql.Identifier(table), sql.Identifier(p + role)
                )
            )
        # a DBA's own login, not in the directory, holding an approver grant by hand
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"{p}dba_jane")))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}trade_approver"), sql.Identifier(f"{p}dba_jane")))
    try:
        yield name
    finally:
        with pg.admin_connect() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def access(p: str) -> dict[str, tuple[bool, datetime | None, frozenset[str]]]:
    """role -> (rolcanlogin, rolvaliduntil, groups) for every role carrying ``p``."""
    with pg.admin_connect() as conn:
        rows = conn.execute(
            "SELECT r.rolname, r.rolcanlogin, r.rolvaliduntil,"
            " coalesce(array_agg(g.rolname) FILTER (WHERE g.rolname IS NOT NULL), '{}')"
            " FROM pg_roles r LEFT JOIN pg_auth_members am ON am.member = r.oid"
            " LEFT JOIN pg_roles g ON g.oid = am.roleid WHERE starts_with(r.rolname, %s) GROUP BY 1, 2, 3",
            (p,),
        ).fetchall()
    return {name: (bool(login), until, frozenset(groups)) for name, login, until, groups in rows}


def can(role: str, table: str, privilege: str) -> bool:
    with pg.admin_connect() as conn:
        row = conn.execute("SELECT has_table_privilege(%s, %s, %s)", (role, table, privilege)).fetchone()
    assert row is not None
    return bool(row[0])


def comment(role: str) -> str | None:
    with pg.admin_connect() as conn:
        row = conn.execute("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    assert row is not None, role
    return None if row[0] is None else str(row[0])


def cli(*args: str, ok: tuple[int, ...] = (0,)) -> str:
    res = run(*args)
    assert res.returncode in ok, f"{args}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def plan_json(s: Setup) -> dict[str, object]:
    doc = json.loads(cli("plan", "-c", str(s.path), "--format", "json"))
    assert isinstance(doc, dict)
    return doc


def changes(doc: dict[str, object], role: str) -> list[tuple[str, object]]:
    targets = doc["targets"]
    assert isinstance(targets, list)
    return sorted(
        (c["kind"], c["params"].get("group")) for t in targets for c in t["changes"] if c["role"] == role
    )


def notices(doc: dict[str, object], code: str) -> list[str]:
    targets = doc["targets"]
    assert isinstance(targets, list)
    return [n["message"] for t in targets for n in t["notices"] if n["code"] == code]


def settled(s: Setup, code: int = 0) -> None:
    """After each apply the next plan is empty (exit 0; 3 while an error notice stands)."""
    res = run("plan", "-c", str(s.path), "--detailed-exitcode")
    assert res.returncode == code, f"plan after apply (exit {res.returncode}):\n{res.stdout}\n{res.stderr}"
    assert "(0 change(s))" in res.stdout, res.stdout


def apply(s: Setup, reason: str) -> None:
    cli("apply", "-c", str(s.path), "--reason", reason)
    settled(s)


def test_a_working_week(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, schema: str) -> None:
    p = role_prefix
    cfg_src = ldap_ou.config(name=f"{p}src", attributes={"department": "departmentNumber", "leave_date": LEAVE_DATE})
    s = make_setup(tmp_path, cfg_src, p, rules=RULES, extra=RELAXED_SAFETY)
    pin_instance(s.path, "trading-prod")
    (tmp_path / "mappings" / "roles").mkdir()
    (tmp_path / "mappings" / "roles" / "catalog.toml").write_text(CATALOG.format(p=p))
    c = str(s.path)
    trades, approvals = f'"{schema}".trades', f'"{schema}".approvals'

    ann = ldap_ou.add_user("ann", **person("Equities", "Trader"))
    ldap_ou.add_user("bob", **person("Equities", "Trader"))
    ldap_ou.add_user("cy", **person("Compliance", "Officer"))
    ldap_ou.add_user("dee", **person("Equities", "Trader"))
    ldap_ou.add_group("trade-approvers", [ann])
    # a person whose login a DBA created by hand long ago, with a hand grant
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"{p}dee")))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}compliance_reader"), sql.Identifier(f"{p}dee")))
        # another team's installation on the same server; one of ITS people was made superuser:
        # that team's finding, never an error (exit 3) of this installation's runs
        other = {"kind": "user", "id": "0000-other", "source": "hr", "instance": "risk-team", "granted": []}
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(f"{p}risk_zoe")))
        conn.execute(
            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                sql.Identifier(f"{p}risk_zoe"), sql.Literal(markers.PREFIX + json.dumps(other))
            )
        )
    before = access(p)

    # ---- Monday: validate, dry run, first apply (with --reason) ----
    out = cli("validate", "-c", c)
    assert "installation:" in out, out
    cli("apply", "-c", c, ok=(1, 2))  # --reason is required
    assert access(p) == before, "an apply without --reason changed something"
    doc = plan_json(s)
    assert changes(doc, f"{p}ann") == [
        ("create_role", None),
        ("grant_membership", f"{p}desk_equities_trader"),
        ("grant_membership", f"{p}market_data_reader"),
        ("grant_membership", f"{p}trade_approver"),
    ]
    assert changes(doc, f"{p}dee") == [], "a role provisioner does not own was planned"
    assert changes(doc, f"{p}dba_jane") == []
    apply(s, "CHG-1001 first run")
    now = access(p)
    assert now[f"{p}ann"][0] and now[f"{p}ann"][2] == {
        f"{p}desk_equities_trader", f"{p}market_data_reader", f"{p}trade_approver"
    }
    assert now[f"{p}bob"][2] == {f"{p}desk_equities_trader", f"{p}market_data_reader"}
    assert now[f"{p}cy"][2] == {f"{p}compliance_reader"}
    assert now[f"{p}dee"] == before[f"{p}dee"], "the DBA's hand-made login was adopted or changed"
    assert markers.parse(comment(f"{p}dee")) is None
    assert now[f"{p}dba_jane"] == before[f"{p}dba_jane"]
    for role in BUSINESS:
        assert comment(p + role) is None, f"business role {role} was marked"
    assert can(f"{p}ann", trades, "INSERT") and can(f"{p}ann", approvals, "UPDATE")
    doc = plan_json(s)
    assert any(f"{p}dee" in n for t in doc["targets"] for n in [x["message"] for x in t["notices"]]), doc  # type: ignore[index]

    # ---- Tuesday: joiners; a hand grant of a sensitive role is drift ----
    ldap_ou.add_user("eve", **person("Equities", "Trader"))
    ldap_ou.add_user("fay", **person("Compliance", "Analyst"))
    res = run("plan", "-c", c, "--detailed-exitcode")
    assert res.returncode == 2, res.stderr
    apply(s, "CHG-1002 joiners")
    now = access(p)
    assert now[f"{p}eve"][2] == {f"{p}desk_equities_trader", f"{p}market_data_reader"}
    assert now[f"{p}fay"][2] == {f"{p}compliance_reader"}

    with pg.admin_connect() as conn:  # a DBA makes bob an approver by hand
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}trade_approver"), sql.Identifier(f"{p}bob")))
    doc = plan_json(s)
    assert changes(doc, f"{p}bob") == []
    drift = notices(doc, "drift")
    assert any(f"{p}bob" in d and f"{p}trade_approver" in d for d in drift), drift
    settled(s)  # drift = report: a warning, not a change
    who = cli("access", "-c", c, f"{schema}.approvals", "--privilege", "UPDATE")
    bob_lines = [line for line in who.splitlines() if f"{p}bob" in line]
    assert bob_lines and any("HAND GRANT" in line for line in who.splitlines()), who
    whoj = json.loads(cli("access", "-c", c, f"{schema}.approvals", "--privilege", "UPDATE", "--format", "json"))
    paths = {x["role"]: x for x in whoj["results"][0]["paths"] if x["role"].startswith(p)}
    # trade_approver's UPDATE is the DBA's grant, outside the catalog: every path has a hand step;
    # what differs is how each person came to be an approver
    first = {role: path["steps"][0]["kind"] for role, path in paths.items()}
    assert first[f"{p}ann"] == "rule" and "approvers" in paths[f"{p}ann"]["steps"][0]["text"], paths[f"{p}ann"]
    assert first[f"{p}bob"] == "hand_membership" and paths[f"{p}bob"]["hand_grant"] is True, paths[f"{p}bob"]
    assert first[f"{p}dba_jane"] == "hand_membership"
    assert f"{p}eve" not in paths and f"{p}cy" not in paths, sorted(paths)

    # ---- Wednesday: a mover from trading to compliance ----
    ldap_ou.modify(ldap_ou.user_dn("eve"), departmentNumber="Compliance", title="Officer")
    doc = plan_json(s)
    assert changes(doc, f"{p}eve") == [
        ("grant_membership", f"{p}compliance_reader"),
        ("revoke_membership", f"{p}desk_equities_trader"),
        ("revoke_membership", f"{p}market_data_reader"),
    ]
    apply(s, "CHG-1003 eve moves to compliance")
    now = access(p)
    assert now[f"{p}eve"][0] and now[f"{p}eve"][2] == {f"{p}compliance_reader"}
    assert not can(f"{p}eve", trades, "INSERT") and not can(f"{p}eve", approvals, "UPDATE"), "a compliance officer who can trade"
    assert now[f"{p}bob"][2] >= {f"{p}trade_approver"}, "drift = report keeps the hand grant"

    # ---- Thursday: leavers ----
    ldap_ou.modify(ldap_ou.user_dn("bob"), hrStatus="terminated")  # holds a hand grant
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    ldap_ou.modify(ldap_ou.user_dn("fay"), description=f"leave-date:{yesterday}")
    later = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    ldap_ou.modify(ldap_ou.user_dn("cy"), description=f"leave-date:{later.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    apply(s, "CHG-1004 leavers")
    now = access(p)
    assert now[f"{p}bob"][0] is False and now[f"{p}bob"][2] == frozenset(), "terminated bob keeps access"
    assert now[f"{p}fay"][0] is False and now[f"{p}fay"][2] == frozenset(), "a past leave date did not disable"
    assert now[f"{p}cy"][0] and now[f"{p}cy"][2] == {f"{p}compliance_reader"}, "a leave later today disabled early"
    assert now[f"{p}cy"][1] == later, f"VALID UNTIL {now[f'{p}cy'][1]} is not the leave instant {later}"
    assert not can(f"{p}bob", approvals, "UPDATE")
    assert now[f"{p}dba_jane"] == before[f"{p}dba_jane"]

    # a leave timestamp a few seconds ahead: not yet, then at the next run after it, disabled
    gil = ldap_ou.add_user("gil", **person("Equities", "Trader"))
    apply(s, "CHG-1004b joiner")
    soon = (datetime.now(UTC) + timedelta(seconds=15)).replace(microsecond=0)
    ldap_ou.modify(gil, description=f"leave-date:{soon.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    cli("apply", "-c", c, "--reason", "CHG-1004c leave scheduled")
    now = access(p)
    assert datetime.now(UTC) < soon, "the machine was too slow for this step"
    assert now[f"{p}gil"][0] and now[f"{p}gil"][2] == {f"{p}desk_equities_trader", f"{p}market_data_reader"}
    assert now[f"{p}gil"][1] == soon, now[f"{p}gil"]
    while datetime.now(UTC) <= soon + timedelta(seconds=1):
        time.sleep(0.5)
    res = run("plan", "-c", c, "--detailed-exitcode")
    assert res.returncode == 2 and "lifecycle:leaver" in res.stdout, res.stdout + res.stderr
    apply(s, "CHG-1004d leave instant passed")
    now = access(p)
    assert now[f"{p}gil"][0] is False and now[f"{p}gil"][2] == frozenset()

    # ---- Friday: a reused username; the saved-plan workflow; explain; audit ----
    ldap_ou.delete(ann)  # ann leaves; a new person gets uid ann in compliance
    ldap_ou.add_user("ann", **person("Compliance", "Officer"))
    saved = tmp_path / "friday.json"
    cli("plan", "-c", c, "--format", "json", "--out", str(saved))
    data = json.loads(saved.read_text())
    assert ("grant_membership", f"{p}compliance_reader") not in changes(data, f"{p}ann")
    data["targets"][0]["changes"].append(
        {
            "kind": "grant_membership",
            "role": f"{p}ann",
            "params": {"group": f"{p}trade_approver"},
            "reasons": [{"rule": "approvers", "text": "looks legitimate", "attributes": {}}],
            "before": {},
            "after": {},
            "summary": "grant",
        }
    )
    data.pop("plan_digest")
    data["plan_digest"] = digest(data)
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    res = run("apply", "-c", c, "--plan", str(edited), "--reason", "CHG-1005")
    assert res.returncode != 0 and f"grant {p}trade_approver to {p}ann" in res.stderr, res.stderr
    cli("apply", "-c", c, "--plan", str(saved), "--reason", "CHG-1005 reviewed plan")
    settled(s, 3)  # the rejected newcomer stays an error notice until HR renames one of them
    conflict = notices(plan_json(s), "conflict")
    assert any("'ann'" in n and "rejected" in n for n in conflict), conflict
    now = access(p)
    assert now[f"{p}ann"][0] is False and now[f"{p}ann"][2] == frozenset(), "the newcomer inherited the leaver's role"
    assert now[f"{p}bob"][2] == frozenset()

    explained = cli("explain", "-c", c, "eve")
    assert f"MATCH compliance -> {p}compliance_reader" in explained, explained
    assert "failed: department equals 'equities' (has 'Compliance')" in explained, explained
    assert f"eve is a member of {p}compliance_reader" in explained, explained
    # compliance_reader holds SELECT on trades and approvals (the DBA's grants): explain must not
    # claim it holds nothing because privileges were not read (manage_privileges = false)
    assert "no privileges of its own" not in explained, explained
    assert "not read" in explained, explained

    res = run("audit", "verify", "-c", c)
    assert res.returncode == 0, res.stdout + res.stderr
    # every committed change names the operator's reason: bob's hand grant went with CHG-1004
    with sqlite3.connect(tmp_path / "state.db") as db:
        rows = [json.loads(r[0]) for r in db.execute("SELECT content FROM provisioner_audit ORDER BY seq")]
    bob = {
        r["change"]["params"]["group"]: r["reason"]
        for r in rows
        if r.get("role") == f"{p}bob" and r.get("kind") == "change_applied" and r["change"]["kind"] == "revoke_membership"
    }
    assert set(bob) == {f"{p}desk_equities_trader", f"{p}market_data_reader", f"{p}trade_approver"}, bob
    assert all("lifecycle:leaver" in why and "operator: CHG-1004 leavers" in why for why in bob.values()), bob
    # an auditor's check: an edited record is found
    with sqlite3.connect(tmp_path / "state.db") as db:
        (seq, content) = db.execute(
            "SELECT seq, content FROM provisioner_audit WHERE role = ? AND content LIKE '%CHG-1004 leavers%'",
            (f"{p}bob",),
        ).fetchone()
        db.execute("UPDATE provisioner_audit SET content = ? WHERE seq = ?", (content.replace("CHG-1004", "CHG-9999"), seq))
    res = run("audit", "verify", "-c", c)
    assert res.returncode != 0 and str(seq) in res.stdout + res.stderr, res.stdout + res.stderr
