"""SoD exceptions (issue 16, finding 6): the plan names the exception a grant rests
on; expiry is warned ahead and alerted on; ``on_expiry = "revoke" | "report"``;
a maximum length per policy.  Real slapd and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql

from provisioner.core.governance.alerts import Alert, AlertPolicy, History, Severity, evaluate
from provisioner.core.privileges.catalog import Catalog
from provisioner.core.values.plan import Plan
from provisioner.engine.context import RunContext
from provisioner.engine.recovery import planned_event
from tests.sod.test_sod_e2e import notices, run_cli, setup_with_sod
from tests.support import pg
from tests.support.e2e import Setup, memberships, person, role_options
from tests.support.fixtures import LdapOu

POLICY = """
[[policy]]
id = "trade-approve-execute"
description = "No user may both approve and execute trades."
severity = "critical"
conflicts = [ {{ role = "{p}trade_approver" }}, {{ role = "{p}trade_executor" }} ]
on_expiry = "{on_expiry}"
warn_before_expiry_days = 14
max_exception_days = 90
"""

EXCEPTION = """[[exception]]
identity = "carol"
policy = "trade-approve-execute"
approver = "CCO"
reason = "sole desk head; daily compliance re-check"
approved = {approved}
expires = 2026-12-31
"""

DURING, SOON = datetime(2026, 12, 1, 9, tzinfo=UTC), datetime(2026, 12, 20, 9, tzinfo=UTC)
AFTER = datetime(2027, 1, 1, 9, tzinfo=UTC)


def make(tmp_path: Path, ldap_ou: LdapOu, p: str, on_expiry: str, approved: str = "2026-12-01") -> Setup:
    carol = ldap_ou.add_user("carol", **person("Trading", "Rates Trader"))
    ldap_ou.add_group("approvers", [carol])
    setup = setup_with_sod(tmp_path, ldap_ou, p, EXCEPTION.format(approved=approved))
    (tmp_path / "mappings" / "sod" / "trading.toml").write_text(POLICY.format(p=p, on_expiry=on_expiry))
    return setup


def alerts_of(plan: Plan, now: datetime) -> list[Alert]:
    record = planned_event(RunContext(now, "pytest", "manual"), plan).content()
    return evaluate([record], Catalog({}), History(), AlertPolicy())


def test_grant_names_its_exception_then_expiry_is_warned_alerted_and_revoked(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    setup = make(tmp_path, ldap_ou, p, "revoke")
    plan = setup.plan(now=DURING)
    (grant,) = [c for c in plan.changes if c.role == f"{p}carol" and c.param("group") == f"{p}trade_approver"]
    assert any(
        r.rule == "sod-exception:trade-approve-execute" and "granted only under the exception for carol approved by CCO"
        in r.text for r in grant.reasons
    ), grant.reasons
    setup.apply(now=DURING)
    assert not notices(setup.plan(now=DURING), "sod_exception_expiring")  # 30 days left: quiet

    soon = setup.plan(now=SOON)
    (warning,) = notices(soon, "sod_exception_expiring")
    assert "expires in 11 day(s) (2026-12-31)" in warning and "on_expiry = revoke" in warning
    assert [a.severity for a in alerts_of(soon, SOON) if a.key.startswith("sod_exception_expiring")] == [
        Severity.WARNING
    ]
    assert notices(setup.plan(now=datetime(2026, 12, 31, 9, tzinfo=UTC)), "sod_exception_expiring")  # last day

    after = setup.plan(now=AFTER)
    (expired,) = notices(after, "sod_exception_expired")
    assert "EXPIRED on 2026-12-31" in expired and f"revoking {p}trade_executor" in expired
    assert [c.describe() for c in after.changes if c.role == f"{p}carol"] == [
        f"revoke {p}trade_executor from {p}carol"
    ]
    assert [a.severity for a in alerts_of(after, AFTER) if a.key.startswith("sod_exception_expired")] == [
        Severity.CRITICAL
    ]
    setup.apply(now=AFTER)
    assert f"{p}trade_executor" not in memberships(p)[f"{p}carol"]
    assert f"{p}trade_approver" in memberships(p)[f"{p}carol"]
    again = setup.plan(now=AFTER)  # the rule asks again; SoD withholds it, nothing flaps
    assert not [c for c in again.changes if c.role == f"{p}carol"]
    assert any(f"{p}trade_executor withheld" in m for m in notices(again, "sod_violation"))


def test_on_expiry_report_revokes_nothing_and_max_length_is_enforced(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    setup = make(tmp_path, ldap_ou, p, "report")
    setup.apply(now=DURING)
    after = setup.plan(now=AFTER)
    (expired,) = notices(after, "sod_exception_expired")
    assert "on_expiry = report: nothing revoked" in expired
    assert not [c for c in after.changes if c.role == f"{p}carol"]

    (tmp_path / "mappings" / "exceptions" / "x.toml").write_text(EXCEPTION.format(approved="2026-08-01"))
    done = run_cli("validate", "-c", str(setup.path))
    assert done.returncode == 1
    assert "runs 152 days (2026-08-01 to 2026-12-31), longer than the 90 days policy 'trade-approve-execute'" in done.stderr
    (tmp_path / "mappings" / "exceptions" / "x.toml").write_text(EXCEPTION.replace("approved = {approved}\n", ""))
    done = run_cli("validate", "-c", str(setup.path))
    assert done.returncode == 1 and "'approved' (the approval date) is required" in done.stderr


def test_expired_exception_of_a_break_glass_login_holds_back_nothing(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """E2E finding: the DBAs' break-glass login holds both sides of a policy under an
    exception that has expired, and the policy says ``on_expiry = "revoke"``.  A
    break-glass role is never changed (docs/lifecycle.md), so the expiry is an error
    notice for a human; the plan must not plan a revoke that the safety checks then
    refuse together with everything else -- the leaver of the same run above all."""
    p = role_prefix
    glass = f"{p}breakglass"
    with pg.admin_connect() as conn:
        for role in ("trade_approver", "trade_executor"):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(p + role)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(glass)))
        for role in ("trade_approver", "trade_executor"):
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(p + role), sql.Identifier(glass)))
    ann = ldap_ou.add_user("ann", **person("Trading", "Equity Trader"))
    exception = EXCEPTION.replace('identity = "carol"', f'identity = "{glass}"').format(approved="2026-12-01")
    setup = setup_with_sod(tmp_path, ldap_ou, p, exception)
    (tmp_path / "mappings" / "sod" / "trading.toml").write_text(POLICY.format(p=p, on_expiry="revoke"))
    with setup.path.open("a") as fh:
        fh.write(f'\n[lifecycle]\nbreak_glass = ["{glass}"]\n')
    setup.apply(now=DURING)
    assert memberships(p)[f"{p}ann"] == {f"{p}trade_executor", f"{p}trade_reader"}

    ldap_ou.modify(ann, hrStatus="terminated")
    plan = setup.plan(now=AFTER)
    assert not [c for c in plan.changes if c.role == glass], "a revoke planned on a break-glass role"
    (expired,) = notices(plan, "sod_exception_expired")
    assert glass in expired and "EXPIRED on 2026-12-31" in expired
    setup.apply(now=AFTER)
    assert role_options(f"{p}ann") == (False, AFTER), "the leaver of the same run is disabled"
    assert f"{p}ann" not in memberships(p)
    assert memberships(p)[glass] == {f"{p}trade_approver", f"{p}trade_executor"}, "break-glass untouched"
