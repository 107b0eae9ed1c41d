"""Real HR data against a real slapd and PostgreSQL (issue 15): leave dates read out of
``description`` with a transform, leave instants with a time of day and a time zone,
unusable lifecycle values and partial reads as loud, fail-safe error notices.

Brownfield throughout: the business roles exist before the first run (created by a
DBA), and one person holds a hand grant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from psycopg import sql

from provisioner.cli import cli
from provisioner.core.values.plan import ChangeKind, NoticeLevel, Plan
from tests.lifecycle.support import RELAXED, access, person, setup
from tests.support import pg
from tests.support.e2e import Setup
from tests.support.fixtures import LdapOu

LEAVE_IN_DESCRIPTION = {
    "leave_date": {"attribute": "description", "pattern": r"leave-date:(\d{4}-\d{2}-\d{2})", "format": "%Y-%m-%d"}
}


def business_roles(p: str) -> None:
    """The DBA's roles, there before provisioner ever ran."""
    with pg.admin_connect() as conn:
        for role in ("ops_settlement", "trade_reader", "trade_executor"):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}{role}")))


def errors(plan: Plan) -> list[str]:
    return [n.message for t in plan.targets for n in t.notices if n.level is NoticeLevel.ERROR]


def hr_setup(tmp_path: Path, ldap_ou: LdapOu, p: str, lifecycle: str = "", **source: Any) -> Setup:
    return setup(tmp_path, ldap_ou, p, extra=RELAXED + lifecycle, **source)


def test_leave_date_in_description_maps_and_a_past_date_disables(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    business_roles(p)
    ldap_ou.add_user(
        "carl", **person("Operations", employeeType="contractor", description=["Contractor", "leave-date:2031-09-30"])
    )
    ldap_ou.add_user("olga", **person("Operations", description="Back office"))  # no leave date: no match, no error
    lifecycle = '\n[lifecycle]\ntimezone = "Europe/London"\n'
    s = hr_setup(tmp_path, ldap_ou, p, lifecycle, attributes=LEAVE_IN_DESCRIPTION)

    plan = s.apply(now=datetime(2031, 9, 1, 9, tzinfo=UTC))
    assert not errors(plan)
    granted = (True, frozenset({f"{p}ops_settlement", f"{p}trade_reader"}))
    assert access(p)[f"{p}carl"] == granted and access(p)[f"{p}olga"] == granted
    creates = [c for c in plan.changes if c.role == f"{p}carl" and c.kind is ChangeKind.CREATE_ROLE]
    # the last working day in London ends at 23:00 UTC (BST), shown in the plan
    assert creates and creates[0].param("valid_until") == "2031-10-01T00:00:00+01:00"

    # still his last working day in London: nothing happens
    assert not s.plan(now=datetime(2031, 9, 30, 22, 59, tzinfo=UTC)).has_changes
    plan = s.apply(now=datetime(2031, 9, 30, 23, 0, tzinfo=UTC))
    assert {c.kind for c in plan.changes if c.role == f"{p}carl"} >= {
        ChangeKind.ALTER_ROLE,
        ChangeKind.REVOKE_MEMBERSHIP,
    }
    reasons = {r.text for c in plan.changes if c.role == f"{p}carl" for r in c.reasons}
    assert any("leave_date='2031-09-30' has passed (effective 2031-10-01T00:00:00+01:00)" in t for t in reasons)
    assert access(p)[f"{p}carl"] == (False, frozenset())
    assert access(p)[f"{p}olga"] == granted


def test_generalized_time_keeps_its_time_of_day(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    p = role_prefix
    business_roles(p)
    ldap_ou.add_user("tess", **person("Trading", hrLeaveDate="20311206162003Z"))
    s = hr_setup(tmp_path, ldap_ou, p)
    s.apply(now=datetime(2031, 12, 6, 9, tzinfo=UTC))
    assert access(p)[f"{p}tess"][0] is True, "access on the last working day, not cut at 00:00 UTC"
    assert not s.plan(now=datetime(2031, 12, 6, 16, 20, 2, tzinfo=UTC)).has_changes
    s.apply(now=datetime(2031, 12, 6, 16, 20, 3, tzinfo=UTC))
    assert access(p)[f"{p}tess"] == (False, frozenset())


def test_unusable_lifecycle_values_are_error_notices_and_fail_safe(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    business_roles(p)
    ldap_ou.add_user("vera", **person("Operations"))  # provisioned first, then her leave date goes bad
    ldap_ou.add_user("walt", **person("Operations"))  # unaffected colleague
    s = hr_setup(tmp_path, ldap_ou, p)
    s.apply(now=datetime(2026, 1, 5, 9, tzinfo=UTC))
    with pg.admin_connect() as conn:  # a hand grant on top
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}trade_executor"), sql.Identifier(f"{p}vera")))
    assert access(p)[f"{p}vera"][0] is True

    ldap_ou.modify(ldap_ou.user_dn("vera"), hrLeaveDate="31/12/2020")
    ldap_ou.add_user("xena", **person("Operations", hrHireDate="2020-13-45"))  # a joiner with an impossible date
    ldap_ou.add_user("yuri", **person("Operations", hrLeaveDate="yesterday\u202e\n[info] all fine"))
    now = datetime(2026, 1, 6, 9, tzinfo=UTC)
    plan = s.plan(now=now)
    found = errors(plan)
    for who, attr, raw in (
        ("vera", "leave_date", "'31/12/2020'"),
        ("xena", "hire_date", "'2020-13-45'"),
        ("yuri", "leave_date", "'yesterday\\u202e\\n[info] all fine'"),
    ):
        assert any(f"'{who}'" in m and f"{attr} = {raw}" in m for m in found), (who, found)

    runner = CliRunner()
    result = runner.invoke(cli, ["plan", "-c", str(s.path), "--detailed-exitcode"])
    assert result.exit_code == 3, result.output
    assert "[info] all fine" not in [line.strip() for line in result.output.splitlines()]
    assert "error notice(s)" in result.output

    applied = s.apply(now=now)
    assert errors(applied)
    after = access(p)
    assert after[f"{p}vera"] == (False, frozenset()), "treated as left now: login and every grant gone"
    assert f"{p}xena" not in after and f"{p}yuri" not in after, "no new access until fixed"
    assert after[f"{p}walt"] == (True, frozenset({f"{p}ops_settlement", f"{p}trade_reader"}))

    ldap_ou.modify(ldap_ou.user_dn("vera"), hrLeaveDate="2031-12-31")  # fixed: access again
    s.apply(now=now + timedelta(hours=1))
    assert access(p)[f"{p}vera"] == (True, frozenset({f"{p}ops_settlement", f"{p}trade_reader"}))


def test_plain_mapping_of_description_is_unusable_not_silent(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    p = role_prefix
    business_roles(p)
    ldap_ou.add_user("carl", **person("Operations", description="leave-date:2025-09-30"))
    s = hr_setup(tmp_path, ldap_ou, p, attributes={"leave_date": "description"})
    plan = s.apply(now=datetime(2026, 1, 5, 9, tzinfo=UTC))
    assert any("'carl'" in m and "leave_date = 'leave-date:2025-09-30'" in m for m in errors(plan))
    assert f"{p}carl" not in access(p)


@pytest.mark.parametrize("incremental", [False, True])
def test_referral_is_a_partial_read_error_and_disables_nobody(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, incremental: bool
) -> None:
    p = role_prefix
    business_roles(p)
    ldap_ou.add_user("anna", **person("Operations"))
    bob = ldap_ou.add_user("bob", **person("Operations"))
    s = hr_setup(tmp_path, ldap_ou, p, incremental=incremental)
    s.apply(now=datetime(2026, 1, 5, 9, tzinfo=UTC))
    assert access(p)[f"{p}bob"][0] is True

    # bob's OU is handed to another server: a referral where his entry was
    ldap_ou.delete(bob)
    ldap_ou.add(
        [
            (
                f"ou=contractors,{ldap_ou.people}",
                {
                    "objectClass": ["referral", "extensibleObject"],
                    "ou": "contractors",
                    "ref": "ldap://hr.example.test/ou=contractors,dc=hr,dc=test",
                },
            )
        ]
    )
    ldap_ou.modify(ldap_ou.user_dn("anna"), hrStatus="terminated")  # a leaver elsewhere is not held back
    plan = s.apply(now=datetime(2026, 1, 6, 9, tzinfo=UTC))
    assert any("partial read" in m and "ldap://hr.example.test/ou=contractors" in m for m in errors(plan))
    assert access(p)[f"{p}bob"] == (True, frozenset({f"{p}ops_settlement", f"{p}trade_reader"}))
    assert access(p)[f"{p}anna"] == (False, frozenset())


def test_every_leave_date_of_a_multi_valued_attribute_counts(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str
) -> None:
    """E2E finding: ``leave_date`` read out of the multi-valued ``description`` (the
    transform docs/rules.md shows) with two matching values.  Only the first value the
    server returned decided: a leave date that has passed, or one that is not a date,
    beside a later good one was silently ignored -- while the source's own warning said
    "the person is treated as a leaver" -- and the person kept a working login."""
    p = role_prefix
    business_roles(p)
    ldap_ou.add_user("carl", **person("Operations", description=["leave-date:2031-12-31", "leave-date:2031-13-45"]))
    ldap_ou.add_user("dana", **person("Operations", description=["leave-date:2031-12-31", "leave-date:2031-03-31"]))
    ldap_ou.add_user("olga", **person("Operations", description=["leave-date:2031-12-31"]))  # one date: as before
    s = hr_setup(tmp_path, ldap_ou, p, attributes=LEAVE_IN_DESCRIPTION)

    plan = s.apply(now=datetime(2031, 6, 1, 9, tzinfo=UTC))
    now = access(p)
    assert now.get(f"{p}olga", (False,))[0] is True
    assert now.get(f"{p}carl", (False,))[0] is False, f"a leave date that is not a date was ignored: {now}"
    assert any("'carl'" in m and "'2031-13-45'" in m for m in errors(plan)), errors(plan)
    assert now.get(f"{p}dana", (False,))[0] is False, f"a leave date that has passed was ignored: {now}"
