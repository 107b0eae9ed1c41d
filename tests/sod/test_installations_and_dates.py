"""SoD on a shared server and SoD dates, against a real slapd and PostgreSQL.

* ``sod report`` covers this installation's managed logins and hand-made (DBA) logins; the
  login roles another installation manages on the same server are that installation's report's:
  counted as skipped, never a conflict of this one (no exit 2 for them), and never matched to
  this installation's exceptions by name -- as access reviews keep installations apart.
* An exception's date-only expiry is a day in ``[lifecycle] timezone``, like a date-only leave
  date: valid through the end of that day there (docs/sod.md); the rules' ``today`` is that
  zone's date too (docs/rules.md)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql

from provisioner.core.values import marker as markers
from tests.cli.test_cli import run
from tests.sod.test_sod_e2e import notices, setup_with_sod
from tests.support import pg
from tests.support.config import pin_instance
from tests.support.e2e import memberships, person
from tests.support.fixtures import LdapOu


def _login(name: str, groups: list[str], marker: dict[str, object] | None = None) -> None:
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        for group in groups:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(name)))
        if marker is not None:
            text = markers.PREFIX + json.dumps(marker)
            conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(name), sql.Literal(text)))


def test_report_skips_other_installations_and_covers_hand_made_logins(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    ldap_ou.add_user("amy", **person("Trading", "Equity Trader"))
    frank = ldap_ou.add_user("frank", **person("Legal", "Counsel"))
    ldap_ou.add_group("approvers", [frank])
    # this installation's exception for "zoe": its own zoe is not the risk team's zoe
    exceptions = (
        '[[exception]]\nidentity = "zoe"\npolicy = "trade-approve-execute"\napprover = "CCO"\n'
        'reason = "desk-a sole desk head"\nexpires = 2099-12-31\n'
    )
    setup = setup_with_sod(tmp_path, ldap_ou, p, exceptions)
    pin_instance(setup.path, "desk-a")
    setup.apply()
    both = [f"{p}trade_approver", f"{p}trade_executor"]
    # the risk team's installation on the same server manages zoe and yan, who hold both sides
    other = {"kind": "user", "source": "hr", "instance": "risk-team", "granted": both}
    _login(f"{p}zoe", both, {**other, "id": "0000-zoe"})
    _login(f"{p}yan", both, {**other, "id": "0000-yan"})

    res = run("sod", "report", "-c", str(setup.path), "--detailed-exitcode")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{p}zoe" not in res.stdout and f"{p}yan" not in res.stdout, res.stdout
    # the shared test server holds other tests' installations too: at least the risk team's two
    assert re.search(r"Skipped \d+ login role\(s\) of other installations \(this one is 'desk-a'\)", res.stdout)
    doc = json.loads(run("sod", "report", "-c", str(setup.path), "--format", "json").stdout)
    assert doc["conflicts"] == [] and doc["skipped_other_installations"] >= 2, doc
    plan = setup.plan()
    assert not [m for m in notices(plan, "sod_conflict") + notices(plan, "sod_exception") if f"{p}zoe" in m]

    # a DBA's hand-made login in this installation's scope is reported, with an out-of-band cause
    _login(f"{p}amy_admin", both)
    res = run("sod", "report", "-c", str(setup.path), "--format", "json", "--detailed-exitcode")
    assert res.returncode == 2, res.stdout + res.stderr
    (found,) = json.loads(res.stdout)["conflicts"]
    assert found["user"] == f"{p}amy_admin" and found["status"] == "conflict", found
    assert {h["cause"] for h in found["holdings"]} == {"out-of-band grant (no rule grants it)"}, found


def test_exception_expiry_and_today_are_days_in_the_lifecycle_timezone(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    ldap_ou.add_user("carol", **person("Trading", "Rates Trader", hrHireDate="2026-12-31"))
    dave = ldap_ou.add_user("dave", **person("Trading", "FX Trader"))
    ldap_ou.add_group("approvers", [dave])
    exceptions = (
        '[[exception]]\nidentity = "dave"\npolicy = "trade-approve-execute"\napprover = "CCO"\n'
        'reason = "sole desk head in New York"\nexpires = 2026-12-31\n'
    )
    setup = setup_with_sod(tmp_path, ldap_ou, p, exceptions)
    rules = tmp_path / "mappings" / "rules" / "r.toml"
    rules.write_text(  # a rule reading today: people hired before today (carol's first day is 2026-12-31)
        rules.read_text() + f'\n[[rule]]\nid = "veterans"\ndescription = "hired before today"\n'
        f'grant = ["{p}desk_veteran"]\nwhen = {{ attr = "hire_date", before = "today" }}\n'
    )
    setup.path.write_text(setup.path.read_text() + '\n[lifecycle]\ntimezone = "America/New_York"\n')
    setup.apply(now=datetime(2026, 12, 1, 12, tzinfo=UTC))
    assert memberships(p)[f"{p}dave"] >= {f"{p}trade_approver", f"{p}trade_executor"}

    # 2027-01-01 03:00 UTC is 2026-12-31 22:00 in New York: the exception's last day, carol's first
    plan = setup.plan(now=datetime(2027, 1, 1, 3, tzinfo=UTC))
    assert any("dave" in m for m in notices(plan, "sod_exception")), [n.message for tp in plan.targets for n in tp.notices]
    assert not [m for m in notices(plan, "sod_exception_expired") if "dave" in m]
    assert not [m for m in notices(plan, "sod_conflict") if "dave" in m]
    granted = {(c.role, c.param("group")) for c in plan.changes if c.kind.value == "grant_membership"}
    assert (f"{p}carol", f"{p}trade_executor") in granted, "carol's first day has begun in New York"
    assert (f"{p}carol", f"{p}desk_veteran") not in granted, "hired today is not hired before today"

    # 2027-01-01 06:00 UTC is 01:00 on 1 January in New York: expired, and carol hired before today
    plan = setup.plan(now=datetime(2027, 1, 1, 6, tzinfo=UTC))
    assert [m for m in notices(plan, "sod_exception_expired") if "dave" in m], [n.message for tp in plan.targets for n in tp.notices]
    granted = {(c.role, c.param("group")) for c in plan.changes if c.kind.value == "grant_membership"}
    assert (f"{p}carol", f"{p}desk_veteran") in granted


def test_an_exception_by_username_never_covers_the_leavers_role_of_that_name(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """A reused username: the exception approved for today's jsmith names "jsmith"; the role
    ``jsmith`` still belongs to the leaver (its marker's stable id), so it does not cover a
    conflict someone made there by hand -- as a review attributes that role to nobody."""
    p = role_prefix
    ldap_ou.add_user("jsmith", **person("Legal", "Counsel"))
    ldap_ou.add_group("approvers", [ldap_ou.add_user("frank", **person("Legal", "Counsel"))])
    exceptions = (
        '[[exception]]\nidentity = "jsmith"\npolicy = "trade-approve-execute"\napprover = "CCO"\n'
        'reason = "the new jsmith runs the Tokyo desk alone"\nexpires = 2099-12-31\n'
    )
    setup = setup_with_sod(tmp_path, ldap_ou, p, exceptions)
    setup.apply()
    ldap_ou.delete(ldap_ou.user_dn("jsmith"))  # the first jsmith leaves; her role stays, disabled
    setup.apply()
    ldap_ou.add_user("jsmith", **person("Trading", "Equity Trader"))  # a new person, a new stable id
    setup.apply()
    with pg.admin_connect() as conn:
        for group in (f"{p}trade_approver", f"{p}trade_executor"):
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(f"{p}jsmith")))

    res = run("sod", "report", "-c", str(setup.path), "--format", "json", "--detailed-exitcode")
    (found,) = [c for c in json.loads(res.stdout)["conflicts"] if c["user"] == f"{p}jsmith"]
    assert found["status"] == "conflict" and found["exception"] is None, found
    assert res.returncode == 2, res.stdout + res.stderr
