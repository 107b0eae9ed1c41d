"""The breaker counts every change that ends or limits access and tells leavers
from movers (issue 14, findings 6 and 10).  Pure tests on real diffs, then the
arithmetic of docs/lifecycle.md at 50,000 and 100,000 identities."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provisioner.core.reconcile.breaker import Affected, BreakerPolicy, affected_roles, check_breaker
from provisioner.core.reconcile.phases import apply_phases, removes_access
from provisioner.core.values.model import ActualRole, ActualState, Marker, RoleKind
from provisioner.core.values.plan import Change, ChangeKind, Plan, TargetPlan, make_change
from provisioner.errors import BreakerTripped
from tests.lifecycle.support import STRICT, audit_kinds, person, setup
from tests.lifecycle.test_core import NOW, ident, managed, run, state
from tests.support.e2e import role_options
from tests.support.fixtures import LdapOu


def _plan(changes: tuple[Change, ...] | list[Change]) -> Plan:
    return Plan(NOW, "x", (TargetPlan("pg", "f", tuple(changes)),), sources=("src",))


def test_a_leave_date_set_on_everyone_trips_the_breaker() -> None:
    """Finding 6: VALID UNTIL tomorrow on every user limits everyone's access."""
    roles = [managed(f"u{i}") for i in range(10)]
    tomorrow = (NOW + timedelta(days=1)).date().isoformat()
    changes, _ = run([ident(f"u{i}", leave_date=tomorrow) for i in range(10)], state(*roles))
    assert {c.kind for c in changes} == {ChangeKind.ALTER_ROLE}
    assert all(removes_access(c) for c in changes)
    trips = check_breaker(_plan(changes), {"pg": state(*roles)}, BreakerPolicy())
    assert [(t.kind, t.affected, t.managed) for t in trips] == [(Affected.LEAVERS, 10, 10)]
    assert "leavers" in trips[0].message() and "max_revocation_share" in trips[0].message()


def test_extending_or_clearing_valid_until_is_not_a_removal() -> None:
    later = make_change(
        ChangeKind.ALTER_ROLE,
        "ann",
        (),
        valid_until="2027-01-01T00:00:00+00:00",
        before={"valid_until": "2026-06-01T00:00:00+00:00"},
    )
    cleared = make_change(ChangeKind.ALTER_ROLE, "ann", (), valid_until=None, before={"valid_until": "2026-06-01"})
    rehire = make_change(ChangeKind.ALTER_ROLE, "ann", (), login=True, valid_until="2026-06-01T00:00:00+00:00")
    earlier = make_change(
        ChangeKind.ALTER_ROLE, "ann", (), valid_until="2026-04-01T00:00:00+00:00", before={"valid_until": "2026-06-01"}
    )
    assert [removes_access(c) for c in (later, cleared, rehire, earlier)] == [False, False, False, True]


def test_leavers_and_movers_are_counted_apart() -> None:
    roles = [managed("ann", groups=("desk",)), managed("bob"), ActualRole("ops", False, marker=Marker(RoleKind.GROUP))]
    actual = state(*roles)
    mover = [
        make_change(ChangeKind.REVOKE_MEMBERSHIP, "ann", (), group="desk"),
        make_change(ChangeKind.GRANT_MEMBERSHIP, "ann", (), group="ops"),
    ]
    leaver = [
        make_change(ChangeKind.ALTER_ROLE, "bob", (), login=False),
        make_change(ChangeKind.TERMINATE_SESSIONS, "bob", ()),
        make_change(ChangeKind.REVOKE_MEMBERSHIP, "bob", (), group="desk"),
    ]
    counted = affected_roles(TargetPlan("pg", "f", (*mover, *leaver)))
    assert counted == {Affected.LEAVERS: {"bob"}, Affected.MOVERS: {"ann"}}
    # one leaver allowed, no mover: only the movers trip
    trips = check_breaker(_plan([*mover, *leaver]), {"pg": actual}, BreakerPolicy(1.0, 1, 1.0, 0))
    assert [(t.kind, t.affected) for t in trips] == [(Affected.MOVERS, 1)]


def _population(n: int) -> ActualState:
    desk = ActualRole("desk", False, marker=Marker(RoleKind.GROUP))
    roles = {
        f"u{i}": ActualRole(f"u{i}", True, marker=Marker(RoleKind.USER, f"id{i}", "src"), member_of=frozenset({"desk"}))
        for i in range(n)
    }
    return ActualState("pg", {"desk": desk, **roles}, "svc")


def _day(leavers: range, movers: range) -> list[Change]:
    out: list[Change] = []
    for i in leavers:
        out += [
            make_change(ChangeKind.ALTER_ROLE, f"u{i}", (), login=False, valid_until=NOW.isoformat()),
            make_change(ChangeKind.TERMINATE_SESSIONS, f"u{i}", ()),
            make_change(ChangeKind.REVOKE_MEMBERSHIP, f"u{i}", (), group="desk"),
        ]
    for i in movers:
        out += [
            make_change(ChangeKind.REVOKE_MEMBERSHIP, f"u{i}", (), group="desk"),
            make_change(ChangeKind.GRANT_MEMBERSHIP, f"u{i}", (), group="ops"),
        ]
    return out


def test_ordinary_days_pass_by_default_and_a_half_read_source_trips() -> None:
    """Finding 10 and the arithmetic in docs/lifecycle.md."""
    for n in (50_000, 100_000):
        actual = {"pg": _population(n)}
        one_percent = n // 100
        ordinary = _day(range(one_percent), range(one_percent, 2 * one_percent))
        assert check_breaker(_plan(ordinary), actual, BreakerPolicy()) == [], n
        # a source that returned half the people: the other half are leavers
        half = _day(range(n // 2), range(0))
        trips = check_breaker(_plan(half), actual, BreakerPolicy())
        assert [(t.kind, t.affected, t.limit) for t in trips] == [(Affected.LEAVERS, n // 2, 5000.0)], n
    # a source that lost an attribute: everyone loses a membership, nobody's login ends
    actual = {"pg": _population(100_000)}
    trips = check_breaker(_plan(_day(range(0), range(100_000))), actual, BreakerPolicy())
    assert [(t.kind, t.affected, t.limit) for t in trips] == [(Affected.MOVERS, 100_000, 25000.0)]


def test_removals_form_the_first_phase() -> None:
    create = make_change(ChangeKind.CREATE_ROLE, "new", (), login=True, role_kind="user")
    grant_new = make_change(ChangeKind.GRANT_MEMBERSHIP, "new", (), group="desk")
    renamed = make_change(ChangeKind.RENAME_ROLE, "ren", (), old_name="old")
    revoke_renamed = make_change(ChangeKind.REVOKE_MEMBERSHIP, "ren", (), group="desk")
    leaver = _day(range(1), range(0))
    mover = _day(range(0), range(1, 2))
    first, rest = apply_phases([create, renamed, *leaver, revoke_renamed, *mover, grant_new])
    assert first == (*leaver, mover[0])
    assert rest == (create, renamed, revoke_renamed, mover[1], grant_new)


def test_leave_date_set_on_everyone_is_refused_end_to_end(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    """Finding 6 against slapd and PostgreSQL: tomorrow's leave date on all ten
    traders would set VALID UNTIL on 100% of them; the breaker refuses the run."""
    p = role_prefix
    dns = [ldap_ou.add_user(f"u{i}", **person("Trading")) for i in range(10)]
    s = setup(tmp_path, ldap_ou, p, extra=STRICT)
    s.apply()
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y%m%d")
    for dn in dns:
        ldap_ou.modify(dn, hrLeaveDate=tomorrow)
    with pytest.raises(BreakerTripped, match=r"10 of 10 managed identities \(leavers\)"):
        s.apply()
    assert all(role_options(f"{p}u{i}") == (True, None) for i in range(10)), "no VALID UNTIL was set"
    assert ("breaker_tripped", None) in audit_kinds(s)
