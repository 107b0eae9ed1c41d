"""A regulated firm's working week on Active Directory, PostgreSQL and MariaDB, as an examiner runs it.

Everything goes through the documented interface only: the ``provisioner`` CLI as a subprocess,
a TOML configuration written the way config.example.toml describes, mapping files as
docs/rules.md, docs/sod.md and docs/privileges.md describe them. The directory is a real
(Samba) Active Directory domain controller; the targets are the shared PostgreSQL and MariaDB.

Two teams share the PostgreSQL server: *trading* (installation ``trading-prod``, PostgreSQL and
MariaDB) and *risk* (installation ``risk-prod``, PostgreSQL only, ``drift = "revoke"``), each with
its own OU, service login and state store. Neither may touch the other's roles.

Brownfield: before the firm's first week with provisioner the DBAs made the business roles (with
a DBA member and table privileges), granted roles by hand, and the previous week's runs left
disabled leavers behind. Day 0 brings a disabled AD account still in its groups, a rehire, a new
hire reusing a former employee's username, a person without a department, two people with one
employee id, hire dates in European formats (and one that is not a date), a future hire.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from psycopg import sql

from tests.scenario.ad_firm import BUSINESS, Firm, uk
from tests.scenario.firm import (
    MyAccount,
    PgRole,
    audit_records,
    cli,
    filetime,
    my_exec,
    pg_can,
    pg_comment,
    pg_exec,
    plan_changes,
    plan_notices,
)
from tests.support import mysql as my


@pytest.mark.timeout(2400)  # about 60 CLI runs against three servers: minutes on a loaded machine
def test_a_week_on_active_directory_postgresql_and_mariadb(firm: Firm) -> None:
    f, p = firm, firm.p
    T, R = f.trading, f.risk
    now = datetime.now(UTC)

    # ================= last week: the first syncs (both teams), then two leavers, one per run
    for name, dept, hired in (
        ("ann", "Trading", "03/02/2020"),
        ("bob", "Trading", "15.06.2021"),
        ("cat", "Trading", "01/09/2022"),
        ("fay", "Operations", "01/01/2019"),
        ("gus", "Trading", "12.12.2012"),
        ("hal", "Operations", "05/05/2015"),
        ("oli", "Operations", "07/07/2017"),
    ):
        T.add_user(name, department=dept, title="Staff", employeeID=f"E{name}", info=hired)
    T.add_group("trade-approvers", ["fay", "oli"])
    R.add_user("kim", department="Risk", title="Analyst")
    R.add_user("sam_w", department="Risk", title="Analyst")

    f.apply("CHG-0001 first sync, risk team", f.risk_cfg)
    f.settled(f.risk_cfg)
    f.apply("CHG-0002 first sync, trading team")
    f.settled()
    T.delete("gus")  # gus leaves the firm: gone from AD
    f.apply("CHG-0003 gus left")
    T.disable("hal")
    f.apply("CHG-0004 hal left")
    last_week = f.pg()
    assert last_week[f"{p}gus"] == PgRole(False, last_week[f"{p}gus"].valid_until, frozenset())
    assert last_week[f"{p}hal"].login is False and last_week[f"{p}hal"].groups == frozenset()
    assert last_week[f"{p}sam_w"].groups == f.r("risk_analyst", "market_data_reader")
    assert last_week[f"{p}fay"].groups == f.r("ops_settlement", "trade_approver")

    # ================= day 0: what the directory and the DBAs did over the weekend
    T.disable("fay")  # a disabled account, still in trade-approvers
    T.enable("hal")  # rehired ...
    T.set("hal", info=uk(now, "%d.%m.%Y"))  # ... from today, in a German-style date
    T.add_user("gus", department="Operations", title="Clerk", employeeID="Egus2", info=uk(now, "%d/%m/%Y"))  # username reuse
    T.add_user("dan", title="Assistant", employeeID="Edan")  # no department
    T.add_user("eve", department="Operations", title="Clerk", employeeID="E100")
    T.add_user("eva", department="Operations", title="Clerk", employeeID="E100")  # HR typed eve's id again
    T.add_user("ivy", department="Trading", title="Trader", employeeID="Eivy", info="31/02/2026")  # not a date
    future = now + timedelta(days=10)
    T.add_user("kay", department="Trading", title="Trader", employeeID="Ekay", info=uk(future, "%d/%m/%Y"))
    T.add_user("joe", department="Trading", title="Trader", employeeID="Ejoe", info=uk(now, "%d/%m/%Y"))
    T.add_user("sam.w", department="Operations", title="Clerk", employeeID="Esam")  # the risk team has a sam_w
    pg_exec(  # a DBA hands ann the reporting role; a hand grant of a role no rule knows
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}reporting_reader"), sql.Identifier(f"{p}ann"))
    )
    my_exec(f"GRANT {my.ident(p + 'reporting_reader')} TO '{p}ann'@'%'")
    before = f.pg()
    maria_before = f.maria()

    # ================= Monday: dry run, then the apply
    res, doc = f.plan()
    assert res.code == 3, "error notices (a date that is not a date, a reused username) must exit 3"
    for target in ("pg", "maria"):
        assert plan_changes(doc, target, f"{p}fay") == [
            ("alter_role", None),
            ("revoke_membership", f"{p}ops_settlement"),
            ("revoke_membership", f"{p}trade_approver"),
            ("terminate_sessions", None),
        ], target
        assert plan_changes(doc, target, f"{p}gus") == [], "a reused username inherits a leaver's role"
        assert plan_changes(doc, target, f"{p}kim") == []
        assert plan_changes(doc, target, f"{p}kay") == [], "a future hire got access early"
        assert plan_changes(doc, target, f"{p}ivy") == [], "a hire date that is not a date was ignored"
        assert plan_changes(doc, target, f"{p}dan") == [("create_role", None)]
        assert plan_changes(doc, target, f"{p}ann") == [], "a hand grant was revoked under drift = report"
        assert plan_changes(doc, target, f"{p}dba_jane") == []
    assert plan_changes(doc, "pg", f"{p}sam_w") == [], "the trading team plans the risk team's sam_w"
    assert plan_changes(doc, "maria", f"{p}sam_w") == [("create_role", None), ("grant_membership", f"{p}ops_settlement")]
    pg_hal = [c for t in doc["targets"] if t["target"] == "pg" for c in t["changes"] if c["role"] == f"{p}hal"]
    assert sorted(c["kind"] for c in pg_hal) == ["alter_role", "grant_membership"], pg_hal
    assert any(r["rule"] == "lifecycle:rehire" for c in pg_hal for r in c["reasons"]), pg_hal
    ivy = [n for n in plan_notices(doc, "identity") if "ivy" in n["message"]]
    assert ivy and all(n["level"] == "error" for n in ivy) and any("31/02/2026" in n["message"] for n in ivy), ivy
    gus = [n for n in plan_notices(doc, "conflict") if f"{p}gus" in n["message"] or n.get("role") == f"{p}gus"]
    assert gus, plan_notices(doc, "conflict")
    assert any("kay" in n["message"] for n in plan_notices(doc, "scheduled_joiner")), plan_notices(doc, "scheduled_joiner")
    sam = [n for t in doc["targets"] for n in t["notices"] if f"{p}sam_w" in n["message"]]
    assert sam, "the risk team's sam, wanted by a trading identity, is not reported"
    dup = [n for t in doc["targets"] for n in t["notices"] if "E100" in n["message"]]
    assert dup and all("eve" in n["message"] and "eva" in n["message"] for n in dup), (
        "two people with one employee id are not reported"
    )
    drift = [n["message"] for n in plan_notices(doc, "drift", "pg")]
    assert any(f"{p}ann" in m and f"{p}reporting_reader" in m for m in drift), drift
    assert f.pg() == before and f.maria() == maria_before, "a dry run changed something"

    monday = f.apply("CHG-1001 Monday joiners")
    now_pg, now_my = f.pg(), f.maria()
    trader = f.r("desk_trader", "market_data_reader")
    assert now_pg[f"{p}ann"] == PgRole(True, None, trader | f.r("reporting_reader"))
    assert now_pg[f"{p}joe"] == PgRole(True, None, trader)
    assert now_pg[f"{p}dan"] == PgRole(True, None, frozenset())
    assert now_pg[f"{p}eve"] == now_pg[f"{p}eva"] == PgRole(True, None, f.r("ops_settlement"))
    assert now_pg[f"{p}hal"] == PgRole(True, None, f.r("ops_settlement")), "the rehire is not back"
    assert now_pg[f"{p}oli"] == PgRole(True, None, f.r("ops_settlement", "trade_approver"))
    fay = now_pg[f"{p}fay"]
    assert fay.login is False and fay.groups == frozenset(), "a disabled AD account keeps access"
    assert fay.valid_until is not None and fay.valid_until <= datetime.now(UTC)
    assert now_pg[f"{p}gus"] == last_week[f"{p}gus"], "the old gus's role changed"
    assert f"{p}kay" not in now_pg and f"{p}ivy" not in now_pg
    assert now_pg[f"{p}sam_w"] == last_week[f"{p}sam_w"] and now_pg[f"{p}kim"] == last_week[f"{p}kim"]
    assert now_pg[f"{p}dba_jane"] == before[f"{p}dba_jane"]
    for role in BUSINESS:
        assert pg_comment(p + role) is None, f"business role {role} was marked"
    assert pg_can(f"{p}joe", f'"{f.schema}".orders', "INSERT") and not pg_can(f"{p}fay", f'"{f.schema}".approvals', "UPDATE")
    assert now_my[f"{p}ann"] == MyAccount(False, trader | f.r("reporting_reader"))
    assert now_my[f"{p}joe"] == MyAccount(False, trader)
    assert now_my[f"{p}fay"] == MyAccount(True, frozenset())
    assert now_my[f"{p}hal"] == MyAccount(False, f.r("ops_settlement"))
    assert now_my[f"{p}dba_olga"] == maria_before[f"{p}dba_olga"]
    assert f"{p}kay" not in now_my and f"{p}ivy" not in now_my
    assert now_my[f"{p}sam_w"] == MyAccount(False, f.r("ops_settlement"))
    # the critical approver role revoked from fay: an alert, in the log
    alerts = monday.events("alert")
    assert any("trade_approver" in json.dumps(a) and "fay" in json.dumps(a) for a in alerts), alerts
    f.settled(code=3)
    records = audit_records(f.trading_cfg, "--user", f"{p}fay", "--kind", "change_applied")
    revoked = {(r["target"], r["change"]["params"].get("group")) for r in records if r["change"]["kind"] == "revoke_membership"}
    assert revoked >= {("pg", f"{p}trade_approver"), ("maria", f"{p}trade_approver")}, records
    fay_revokes = [r for r in records if r["change"]["kind"] == "revoke_membership"]
    assert all("CHG-1001" in r["reason"] and "lifecycle:leaver" in r["reason"] for r in fay_revokes), fay_revokes


    # ================= Tuesday: a mover keeps his hand grant (drift, reported); the risk team revokes its own drift
    pg_exec(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}reporting_reader"), sql.Identifier(f"{p}cat")))
    pg_exec(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}reporting_reader"), sql.Identifier(f"{p}kim")))
    T.set("cat", department="Operations")
    res, doc = f.plan()
    assert res.code == 3
    for target in ("pg", "maria"):
        assert plan_changes(doc, target, f"{p}cat") == [
            ("grant_membership", f"{p}ops_settlement"),
            ("revoke_membership", f"{p}desk_trader"),
            ("revoke_membership", f"{p}market_data_reader"),
        ], target
        cat = [c for t in doc["targets"] if t["target"] == target for c in t["changes"] if c["role"] == f"{p}cat"]
        assert all(
            r["rule"] == "lifecycle:mover" for c in cat if c["kind"] == "revoke_membership" for r in c["reasons"]
        ), cat
        assert plan_changes(doc, target, f"{p}kim") == [], "the trading team plans the risk team's kim"
    drift = [n for n in plan_notices(doc, "drift", "pg") if f"{p}cat" in n["message"]]
    assert len(drift) == 1 and f"{p}reporting_reader" in drift[0]["message"], drift
    f.apply("CHG-1002 cat moves to operations")
    now_pg, now_my = f.pg(), f.maria()
    assert now_pg[f"{p}cat"] == PgRole(True, None, f.r("ops_settlement", "reporting_reader"))
    assert now_my[f"{p}cat"] == MyAccount(False, f.r("ops_settlement"))
    assert not pg_can(f"{p}cat", f'"{f.schema}".orders', "INSERT"), "a mover still enters orders"
    assert now_pg[f"{p}kim"].groups == f.r("risk_analyst", "market_data_reader", "reporting_reader")
    f.settled(code=3)

    res, doc = f.plan(f.risk_cfg)
    risk_changes = {(c["role"], c["kind"], c["params"].get("group")) for t in doc["targets"] for c in t["changes"]}
    assert risk_changes == {(f"{p}kim", "revoke_membership", f"{p}reporting_reader")}, (
        "the risk team's drift = revoke reached beyond its own people"
    )
    assert plan_notices(doc, "foreign"), "the other installation's roles are not reported"
    f.apply("RISK-0002 hand grant to kim", f.risk_cfg)
    now_pg = f.pg()
    assert now_pg[f"{p}kim"].groups == f.r("risk_analyst", "market_data_reader")
    assert now_pg[f"{p}cat"].groups == f.r("ops_settlement", "reporting_reader")
    assert now_pg[f"{p}ann"].groups == trader | f.r("reporting_reader")
    f.settled(f.risk_cfg)

    # ================= Wednesday: HR terminates bob; joe's account simply disappears; the breaker holds both
    T.set("bob", accountExpires=filetime(now - timedelta(days=1)))
    T.delete("joe")
    before = f.pg()
    maria_before = f.maria()
    res, doc = f.plan(ok=(4,))
    res = f.apply("CHG-1003 leavers", ok=(4,))
    assert "max_revocations" in res.err or "max_revocation_share" in res.err, res.err
    assert f.pg() == before and f.maria() == maria_before, "the breaker let something through"
    tripped = audit_records(f.trading_cfg, "--kind", "breaker_tripped")
    assert {r["target"] for r in tripped} == {"pg", "maria"}, tripped
    res = f.apply("CHG-1003 leavers, approved by the CISO", None, "--allow-mass-revocation")
    now_pg, now_my = f.pg(), f.maria()
    for who in ("bob", "joe"):
        gone = now_pg[f"{p}{who}"]
        assert gone.login is False and gone.groups == frozenset(), (who, gone)
        assert gone.valid_until is not None and gone.valid_until <= datetime.now(UTC), (who, gone)
        assert now_my[f"{p}{who}"] == MyAccount(True, frozenset()), who
    assert now_pg[f"{p}ann"].login and now_pg[f"{p}cat"].login
    overrides = audit_records(f.trading_cfg, "--kind", "override")
    assert overrides and all("CHG-1003" in r["reason"] for r in overrides), overrides
    joe = audit_records(f.trading_cfg, "--user", f"{p}joe", "--kind", "change_applied")
    assert any(r["change"]["kind"] == "alter_role" and "lifecycle:leaver" in r["reason"] for r in joe), joe
    f.settled(code=3)

    R.disable("kim")  # the risk team's leaver: its run, not the trading team's
    res, doc = f.plan()
    assert plan_changes(doc, "pg", f"{p}kim") == []
    f.apply("RISK-0003 kim left", f.risk_cfg)
    kim = f.pg()[f"{p}kim"]
    assert kim.login is False and kim.groups == frozenset()
    f.settled(f.risk_cfg)

    # ================= Thursday: a reviewed plan goes stale; segregation of duties withholds a grant
    T.add_user("lea", department="Trading", title="Trader", employeeID="Elea", info=uk(now, "%d/%m/%Y"))
    T.join_group("trade-approvers", "ann")  # ann enters orders: she may not approve them
    saved = f.trading_cfg.parent / "thursday.json"
    res = cli("plan", "-c", str(f.trading_cfg), "--format", "json", "--out", str(saved), "--detailed-exitcode", ok=(3,))
    doc = json.loads(saved.read_text())
    for target in ("pg", "maria"):
        assert plan_changes(doc, target, f"{p}lea") == [
            ("create_role", None),
            ("grant_membership", f"{p}desk_trader"),
            ("grant_membership", f"{p}market_data_reader"),
        ]
        assert plan_changes(doc, target, f"{p}ann") == [], "SoD did not withhold ann's approver grant"
    sod = [n for n in plan_notices(doc, "sod_violation") if f"{p}ann" in n["message"]]
    assert sod and all(n["level"] == "error" and "approve-execute" in n["message"] for n in sod), sod
    pg_exec(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}reporting_reader"), sql.Identifier(f"{p}oli")))
    before = f.pg()
    res = cli("apply", "-c", str(f.trading_cfg), "--plan", str(saved), "--reason", "CHG-1004", ok=(1, 3))
    assert "stale" in res.err.lower(), res.err
    assert f.pg() == before, "a stale plan applied something"
    refused = audit_records(f.trading_cfg, "--kind", "plan_refused")
    assert any("stale" in json.dumps(r).lower() for r in refused), refused
    cli("plan", "-c", str(f.trading_cfg), "--format", "json", "--out", str(saved), ok=(0,))
    res = cli("apply", "-c", str(f.trading_cfg), "--plan", str(saved), "--reason", "CHG-1004 re-approved",
              "--approved-by", "Head of Trading")  # fmt: skip
    now_pg, now_my = f.pg(), f.maria()
    assert now_pg[f"{p}lea"] == PgRole(True, None, trader)
    assert now_my[f"{p}lea"] == MyAccount(False, trader)
    assert now_pg[f"{p}ann"].groups == trader | f.r("reporting_reader"), "ann approves her own trades"
    assert now_my[f"{p}ann"].roles == trader | f.r("reporting_reader")
    assert now_pg[f"{p}oli"].groups == f.r("ops_settlement", "trade_approver", "reporting_reader")
    violations = audit_records(f.trading_cfg, "--kind", "violation")
    assert any(r["role"] == f"{p}ann" for r in violations), violations
    alerts = res.events("alert")
    assert any("approve-execute" in json.dumps(a) and "ann" in json.dumps(a) for a in alerts), alerts
    authorised = audit_records(f.trading_cfg, "--kind", "apply_authorised")
    assert authorised[-1]["after"]["approver"] == "Head of Trading", authorised[-1]
    assert authorised[-1]["after"]["saved_plan"]["digest"] == json.loads(saved.read_text())["plan_digest"]
    report = cli("sod", "report", "-c", str(f.trading_cfg), "--format", "json", "--detailed-exitcode", ok=(2,))
    withheld = json.loads(report.out)["withheld"]
    assert any(w.get("identity") in ("ann", f"{p}ann") or "ann" in json.dumps(w) for w in withheld), withheld
    f.settled(code=3)

    # ================= Friday: explain, access review, evidence, the audit chain
    out = cli("explain", "-c", str(f.trading_cfg), "cat").out
    assert f"MATCH operations -> {p}ops_settlement" in out, out
    assert "failed: department equals 'trading' (has 'Operations')" in out, out
    assert f"{p}reporting_reader" in out, "explain hides cat's hand grant"
    out = cli("explain", "-c", str(f.trading_cfg), "gus").out
    assert "conflict" in out.lower() or "another identity" in out.lower(), out
    campaign = f"W{now.isocalendar().week}-{now.year}"
    cli("review", "start", "-c", str(f.trading_cfg), "--campaign", campaign, "--reviewer", "owner")
    sheets = f.trading_cfg.parent / "worksheets"
    cli("review", "export", "-c", str(f.trading_cfg), "--campaign", campaign, "--out", str(sheets))
    rows = "\n".join(x.read_text() for x in sheets.glob("*.csv"))
    cat_rows = [line for line in rows.splitlines() if f"{p}cat" in line and f"{p}reporting_reader" in line]
    assert cat_rows and all("out-of-band" in line and "not granted by provisioner" in line for line in cat_rows), rows
    sam_rows = {line.split(",")[3] for line in rows.splitlines() if f",{p}sam_w," in line}
    assert sam_rows == {"maria"}, "the trading team's campaign reviews the risk team's sam_w as its own sam.w"
    quarter = f"{now.year}-Q{(now.month - 1) // 3 + 1}"
    pack = f.trading_cfg.parent / "evidence"
    cli("report", "evidence", "-c", str(f.trading_cfg), "--quarter", quarter, "--out", str(pack))
    assert any(pack.iterdir())
    public = f.trading_cfg.parent.parent / "audit-pub.pem"
    cli("report", "verify", str(pack), "--public-key", str(public))
    verified = cli("audit", "verify", "-c", str(f.trading_cfg), "--public-key", str(public))
    assert "BROKEN" not in verified.out + verified.err
    cli("audit", "verify", "-c", str(f.risk_cfg))
