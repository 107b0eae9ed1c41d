"""SoD end to end against a real slapd and PostgreSQL: a mover who would gain
approval rights while keeping execution rights, an exception that expires, and
a hand-made GRANT that creates a conflict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql

from provisioner.core.values.plan import digest
from provisioner.store.state import StateStore
from tests.support import pg
from tests.support.e2e import Setup, make_setup, memberships, person
from tests.support.fixtures import LdapOu

RULES = """
[[rule]]
id = "desk-traders"
description = "traders execute"
grant = ["{p}trade_executor", "{p}trade_reader"]
when.all = [ {{ attr = "department", equals = "Trading" }}, {{ attr = "title", regex = "trader" }} ]

[[rule]]
id = "approvers"
description = "members of the approvers group approve"
grant = ["{p}trade_approver"]
when = {{ group = "approvers" }}

[[rule]]
id = "desk-heads"
description = "members of the approvers group also join the desk-heads role"
grant = ["{p}desk_heads"]
when = {{ group = "approvers" }}
"""

SOD = """
[[policy]]
id = "trade-approve-execute"
description = "No user may both approve and execute trades."
severity = "critical"
conflicts = [ {{ role = "{p}trade_approver" }}, {{ role = "{p}trade_executor" }} ]
"""



def setup_with_sod(tmp_path: Path, ldap_ou: LdapOu, p: str, exceptions: str = "") -> Setup:
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p, rules=RULES)
    (tmp_path / "mappings" / "sod").mkdir()
    (tmp_path / "mappings" / "sod" / "trading.toml").write_text(SOD.format(p=p))
    if exceptions:
        (tmp_path / "mappings" / "exceptions").mkdir()
        (tmp_path / "mappings" / "exceptions" / "x.toml").write_text(exceptions)
    return setup


def audit_rows(setup: Setup, kind: str) -> list[dict[str, object]]:
    cfg = setup.config()
    store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
    try:
        return [r.content for r in store.iter_audit() if r.content.get("kind") == kind]
    finally:
        store.close()


def notices(plan, code: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [n.message for tp in plan.targets for n in tp.notices if n.code == code]


def test_mover_gaining_approval_keeps_execution_approval_withheld(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    alice = ldap_ou.add_user("alice", **person("Trading", "Equity Trader"))
    bob = ldap_ou.add_user("bob", **person("Legal", "Counsel"))
    ldap_ou.add_group("approvers", [bob])
    setup = setup_with_sod(tmp_path, ldap_ou, p)
    setup.apply()
    assert memberships(p)[f"{p}alice"] == {f"{p}trade_executor", f"{p}trade_reader"}
    assert memberships(p)[f"{p}bob"] == {f"{p}trade_approver", f"{p}desk_heads"}

    # alice moves: she joins the approvers while staying a trader
    ldap_ou.modify(ldap_ou.group_dn("approvers"), member=[bob, alice])
    plan = setup.plan()
    granted = {(c.role, c.param("group")) for c in plan.changes if c.kind.value == "grant_membership"}
    assert (f"{p}alice", f"{p}desk_heads") in granted, "the rest of her plan goes ahead"
    assert (f"{p}alice", f"{p}trade_approver") not in granted, "the conflicting grant is withheld"
    (message,) = notices(plan, "sod_violation")
    assert "trade-approve-execute" in message and "alice" in message
    assert "approvers" in message and "desk-traders" in message, "names the rules behind both sides"

    setup.apply()
    assert memberships(p)[f"{p}alice"] == {f"{p}trade_executor", f"{p}trade_reader", f"{p}desk_heads"}
    records = audit_rows(setup, "violation")
    assert records, "the violation is in the audit trail"
    last = records[-1]
    assert last["role"] == f"{p}alice"
    assert last["after"]["withheld"] == [f"{p}trade_approver"]  # type: ignore[index]
    assert last["after"]["policy"] == "trade-approve-execute"  # type: ignore[index]


def test_exception_then_expiry(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    dave = ldap_ou.add_user("dave", **person("Trading", "FX Trader"))
    carol = ldap_ou.add_user("carol", **person("Trading", "Rates Trader"))
    ldap_ou.add_group("approvers", [carol])
    exceptions = "".join(
        f'[[exception]]\nidentity = "{who}"\npolicy = "trade-approve-execute"\napprover = "CCO"\n'
        f'reason = "sole desk head; daily compliance re-check"\nexpires = 2026-12-31\n\n'
        for who in ("dave", "carol")
    )
    setup = setup_with_sod(tmp_path, ldap_ou, p, exceptions)
    during, after = datetime(2026, 12, 1, 9, tzinfo=UTC), datetime(2027, 1, 1, 9, tzinfo=UTC)

    plan = setup.apply(now=during)  # carol joins with both sides under her exception
    assert memberships(p)[f"{p}carol"] >= {f"{p}trade_approver", f"{p}trade_executor"}
    assert not notices(plan, "sod_violation")

    ldap_ou.modify(ldap_ou.group_dn("approvers"), member=[carol, dave])
    plan = setup.plan(now=during)
    assert (f"{p}dave", f"{p}trade_approver") in {(c.role, c.param("group")) for c in plan.changes}
    assert any("carol" in m and "approved by CCO" in m for m in notices(plan, "sod_exception"))

    plan = setup.plan(now=after)  # expired: the grant is withheld again, carol's conflict reported
    assert (f"{p}dave", f"{p}trade_approver") not in {(c.role, c.param("group")) for c in plan.changes}
    (violation,) = notices(plan, "sod_violation")
    assert "dave" in violation and "EXPIRED on 2026-12-31" in violation
    assert any("carol" in m and "EXPIRED" in m for m in notices(plan, "sod_conflict"))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("provisioner"))
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=180, check=False)


def test_hand_made_grant_is_reported(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    ldap_ou.add_user("erin", **person("Trading", "Equity Trader"))
    frank = ldap_ou.add_user("frank", **person("Legal", "Counsel"))
    ldap_ou.add_group("approvers", [frank])
    setup = setup_with_sod(tmp_path, ldap_ou, p)
    setup.apply()
    assert not notices(setup.plan(), "sod_conflict")
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}trade_approver"), sql.Identifier(f"{p}erin")))

    (message,) = notices(setup.plan(), "sod_conflict")
    assert f"{p}erin" in message and "out-of-band" in message and "desk-traders" in message

    done = run_cli("sod", "report", "-c", str(setup.path), "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (conflict,) = [c for c in report["conflicts"] if c["user"] == f"{p}erin"]
    assert conflict["policy"] == "trade-approve-execute" and conflict["status"] == "conflict"
    causes = {h["path"][0]: h["cause"] for h in conflict["holdings"]}
    assert causes[f"{p}trade_approver"].startswith("out-of-band")
    assert causes[f"{p}trade_executor"].startswith("rule desk-traders")

    text = run_cli("sod", "report", "-c", str(setup.path), "--detailed-exitcode")
    assert text.returncode == 2 and "erin" in text.stdout and "out-of-band" in text.stdout
    csv_out = run_cli("sod", "report", "-c", str(setup.path), "--format", "csv")
    assert csv_out.returncode == 0 and f"{p}erin" in csv_out.stdout.splitlines()[1]


def test_saved_plan_without_the_movers_revoke_is_refused(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    """E2E finding: an (unsigned) saved plan edited down to a subset -- a mover's new
    approver grant kept, the revoke of her executor role it was planned on top of taken
    out -- was applied: she held both sides of the policy SoD had checked the plan
    against, and the grant's ledger no longer listed the executor role, so no later run
    revoked it (it became drift)."""
    p = role_prefix
    alice = ldap_ou.add_user("alice", **person("Trading", "Equity Trader"))
    setup = setup_with_sod(tmp_path, ldap_ou, p)
    setup.apply()
    assert memberships(p)[f"{p}alice"] == {f"{p}trade_executor", f"{p}trade_reader"}
    ldap_ou.modify(alice, departmentNumber="Legal", title="Counsel")  # a mover: execution out, approval in
    ldap_ou.add_group("approvers", [alice])
    ldap_ou.add_user("bob", **person("Trading", "Equity Trader"))  # a joiner of the same plan
    saved, edited = tmp_path / "plan.json", tmp_path / "edited.json"
    done = run_cli("plan", "-c", str(setup.path), "--format", "json", "--out", str(saved))
    assert done.returncode == 0, done.stderr
    data = json.loads(saved.read_text())
    changes = data["targets"][0]["changes"]

    def executor_revoke(c: dict[str, object]) -> bool:
        params = c["params"]
        assert isinstance(params, dict)
        return c["kind"] == "revoke_membership" and c["role"] == f"{p}alice" and params["group"] == f"{p}trade_executor"

    assert any(executor_revoke(c) for c in changes), changes
    data["targets"][0]["changes"] = [c for c in changes if not executor_revoke(c)]
    data.pop("plan_digest")
    data["plan_digest"] = digest(data)
    edited.write_text(json.dumps(data))

    done = run_cli("apply", "-c", str(setup.path), "--plan", str(edited), "--reason", "CHG-7")
    assert done.returncode != 0, f"applied: {memberships(p).get(f'{p}alice')}"
    assert f"revoke {p}trade_executor from {p}alice" in done.stderr, done.stderr
    assert memberships(p)[f"{p}alice"] == {f"{p}trade_executor", f"{p}trade_reader"}, "nothing applied"
    done = run_cli("apply", "-c", str(setup.path), "--plan", str(saved), "--reason", "CHG-7")  # the reviewed plan
    assert done.returncode == 0, done.stderr
    assert memberships(p)[f"{p}alice"] == {f"{p}trade_approver", f"{p}desk_heads"}
