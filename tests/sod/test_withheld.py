"""Withheld requests are first-class (issue 16, finding 4): after a run that
withheld a grant, the report lists it, plan --detailed-exitcode exits 3 and the
plan summary says so.  Real slapd and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from tests.sod.test_sod_e2e import notices, run_cli, setup_with_sod
from tests.support.e2e import memberships, person
from tests.support.fixtures import LdapOu


def test_withheld_request_is_listed_until_someone_decides(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    alice = ldap_ou.add_user("alice", **person("Trading", "Equity Trader"))
    bob = ldap_ou.add_user("bob", **person("Legal", "Counsel"))
    ldap_ou.add_group("approvers", [bob])
    setup = setup_with_sod(tmp_path, ldap_ou, p)
    setup.apply()
    ldap_ou.modify(ldap_ou.group_dn("approvers"), member=[bob, alice])
    setup.apply()  # withholds trade_approver from alice, applies the rest
    assert f"{p}trade_approver" not in memberships(p)[f"{p}alice"]
    assert len(notices(setup.plan(), "sod_violation")) == 1, "every plan withholds it again"

    plan = run_cli("plan", "-c", str(setup.path), "--detailed-exitcode")
    assert plan.returncode == 3, plan.stdout + plan.stderr
    assert "Withheld: 1 request(s) by segregation of duties" in plan.stdout

    report = run_cli("sod", "report", "-c", str(setup.path), "--detailed-exitcode")
    assert report.returncode == 2, report.stdout + report.stderr
    assert "1 request(s) withheld by segregation of duties" in report.stdout
    assert f"alice ({p}alice): {p}trade_approver WITHHELD by policy trade-approve-execute" in report.stdout

    data = json.loads(run_cli("sod", "report", "-c", str(setup.path), "--format", "json").stdout)
    (held,) = data["withheld"]
    assert (held["user"], held["withheld"], held["status"]) == (f"{p}alice", [f"{p}trade_approver"], "withheld")
    assert data["conflicts"] == []
    rows = run_cli("sod", "report", "-c", str(setup.path), "--format", "csv").stdout.splitlines()
    assert any(f"{p}alice" in r and "withheld" in r for r in rows[1:])

    # the person leaves the approvers group: nothing is withheld any more
    ldap_ou.modify(ldap_ou.group_dn("approvers"), member=[bob])
    setup.apply()
    assert run_cli("sod", "report", "-c", str(setup.path), "--detailed-exitcode").returncode == 0
    assert run_cli("plan", "-c", str(setup.path), "--detailed-exitcode").returncode == 0
