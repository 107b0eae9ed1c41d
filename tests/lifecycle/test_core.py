"""Lifecycle and safety rails in the pure core: leaver order, vanish counting,
retention, break-glass, per-role drift, the breaker, lifecycle events."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from provisioner.core.identity.desired import desired_state
from provisioner.core.identity.lifecycle import (
    EventKindName,
    LeaverPolicy,
    LifecyclePolicy,
    flatten_missing,
    missing_counts,
    next_lifecycle_events,
)
from provisioner.core.identity.naming import NamingPolicy
from provisioner.core.identity.rules import build_ruleset
from provisioner.core.reconcile.breaker import BreakerPolicy, check_breaker
from provisioner.core.reconcile.diff import DiffPolicy, diff
from provisioner.core.values.model import ActualRole, ActualState, Identity, Marker, RoleKind, SourceSnapshot
from provisioner.core.values.plan import ChangeKind, Plan, TargetPlan

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RULES, _ = build_ruleset(
    [
        (
            "r.toml",
            '[[rule]]\nid = "t"\ndescription = "t"\ngrant = ["desk"]\nwhen = { attr = "department", equals = "T" }\n',
        )
    ]
)


def ident(uid: str, **attrs: str) -> Identity:
    return Identity(f"id-{uid}", uid, "src", {"department": ("T",), **{k: (v,) for k, v in attrs.items()}})


def managed(
    name: str, *, login: bool = True, until: datetime | None = None, groups: tuple[str, ...] = ("desk",)
) -> ActualRole:
    return ActualRole(
        name, login, valid_until=until, marker=Marker(RoleKind.USER, f"id-{name}", "src", granted=frozenset(groups)),
        member_of=frozenset(groups),
    )


def state(*roles: ActualRole, sessions: dict[str, int] | None = None) -> ActualState:
    base = [ActualRole("desk", False, marker=Marker(RoleKind.GROUP)), ActualRole("svc", True, createrole=True)]
    return ActualState("pg", {r.name: r for r in [*base, *roles]}, "svc", sessions=sessions or {})


def run(people: list[Identity], actual: ActualState, policy: DiffPolicy = DiffPolicy(), now: datetime = NOW):
    desired = desired_state([SourceSnapshot("src", tuple(people))], RULES, NamingPolicy(), LifecyclePolicy(), now)
    return diff(desired, actual, policy, now)


def test_leaver_order_nologin_then_sessions_then_revokes_and_marker_kept() -> None:
    changes, _ = run([ident("ann", status="terminated")], state(managed("ann")))
    kinds = [c.kind for c in changes]
    assert kinds == [ChangeKind.ALTER_ROLE, ChangeKind.TERMINATE_SESSIONS, ChangeKind.REVOKE_MEMBERSHIP]
    alter = changes[0]
    assert alter.param("login") is False and alter.param("valid_until") == NOW.isoformat()
    assert not any(c.kind is ChangeKind.SET_MARKER for c in changes)


def test_open_session_of_disabled_leaver_is_terminated_on_the_next_run() -> None:
    ann = managed("ann", login=False, until=NOW - timedelta(days=1), groups=())
    changes, _ = run([ident("ann", status="terminated")], state(ann, sessions={"ann": 2}))
    assert [c.kind for c in changes] == [ChangeKind.TERMINATE_SESSIONS]
    assert run([ident("ann", status="terminated")], state(ann))[0] == ()


def test_vanished_identity_waits_for_vanish_after_runs() -> None:
    actual = state(managed("ann"), managed("bob"))
    prev = missing_counts({}, [SourceSnapshot("src", (ident("bob"),))], [actual])
    assert prev == {"src": {"id-ann": 1}}
    policy = DiffPolicy(leavers=LeaverPolicy(vanish_after_runs=2, missing_runs=flatten_missing(prev)))
    changes, notices = run([ident("bob")], actual, policy)
    assert changes == ()
    assert [n.code for n in notices] == ["vanishing"]
    second = missing_counts(prev, [SourceSnapshot("src", (ident("bob"),))], [actual])
    assert second == {"src": {"id-ann": 2}}
    policy = DiffPolicy(leavers=LeaverPolicy(vanish_after_runs=2, missing_runs=flatten_missing(second)))
    assert {c.kind for c in run([ident("bob")], actual, policy)[0]} >= {ChangeKind.ALTER_ROLE}
    back = missing_counts(second, [SourceSnapshot("src", (ident("bob"), ident("ann")))], [actual])
    assert back == {"src": {}}, "an identity seen again starts from zero"


def test_retention_drops_with_heir_and_reports_failures() -> None:
    old = managed("ann", login=False, until=NOW - timedelta(days=31), groups=())
    heir = ActualRole("heir", False)
    leavers = LeaverPolicy(reassign_to="heir", drop_failures={"ann": "boom"})
    changes, notices = run([ident("ann", status="terminated")], state(old, heir), DiffPolicy(leavers=leavers))
    assert [(c.kind, c.param("reassign_to")) for c in changes] == [(ChangeKind.DROP_ROLE, "heir")]
    assert [(n.level.value, n.code) for n in notices] == [("error", "drop_failed")]
    young = managed("ann", login=False, until=NOW - timedelta(days=29), groups=())
    assert run([ident("ann", status="terminated")], state(young, heir), DiffPolicy(leavers=leavers))[0] == ()
    missing_heir = run([ident("ann", status="terminated")], state(old), DiffPolicy(leavers=leavers))
    assert missing_heir[0] == () and missing_heir[1][0].code == "retention"
    never = DiffPolicy(leavers=LeaverPolicy(retention=None))
    assert run([ident("ann", status="terminated")], state(old), never)[0] == ()


def test_break_glass_is_never_touched_and_reported() -> None:
    glass = ActualRole("glass", True, member_of=frozenset({"desk"}), marker=Marker(RoleKind.USER, "id-glass", "src"))
    policy = DiffPolicy(break_glass=frozenset({"glass"}))
    changes, notices = run([], state(glass, sessions={"glass": 1}), policy)
    assert changes == ()
    assert {n.code for n in notices} >= {"break_glass_session", "break_glass_grant"}


def test_drift_override_per_role() -> None:
    ann = replace(managed("ann"), member_of=frozenset({"desk", "extra"}))  # extra: granted by hand
    bob = replace(managed("bob"), member_of=frozenset({"desk", "extra"}))
    policy = DiffPolicy(drift_overrides={"ann": "revoke"})
    actual = state(ann, bob, ActualRole("extra", False))
    changes, notices = run([ident("ann"), ident("bob")], actual, policy)
    assert [(c.kind, c.role, c.param("group")) for c in changes] == [(ChangeKind.REVOKE_MEMBERSHIP, "ann", "extra")]
    assert [(n.code, n.role) for n in notices] == [("drift", "bob")]


def test_breaker_limit_is_the_smaller_of_share_and_count() -> None:
    roles = [managed(f"u{i}") for i in range(10)]
    actual = state(*roles)
    people = [ident(f"u{i}", status="terminated" if i < 3 else "active") for i in range(10)]
    changes, _ = run(people, actual)
    plan = Plan(NOW, "x", (TargetPlan("pg", "f", changes),), sources=("src",))
    trips = check_breaker(plan, {"pg": actual}, BreakerPolicy(0.2, 500))
    assert [(t.affected, t.managed, t.limit) for t in trips] == [(3, 10, 2.0)]
    assert check_breaker(plan, {"pg": actual}, BreakerPolicy(0.3, 500)) == []
    assert len(check_breaker(plan, {"pg": actual}, BreakerPolicy(1.0, 2))) == 1
    assert "allow-mass-revocation" in trips[0].message()


def test_next_lifecycle_events_lists_future_hires_and_leaves() -> None:
    people = [
        ident("new", hire_date="2026-03-10"),
        ident("going", leave_date="2026-03-05T17:30:00Z"),
        ident("gone", leave_date="2026-03-01"),
        ident("stay"),
    ]
    desired = desired_state([SourceSnapshot("src", tuple(people))], RULES, NamingPolicy(), LifecyclePolicy(), NOW)
    events = next_lifecycle_events(desired, NOW)
    assert [(e.at, e.role, e.kind) for e in events] == [
        (datetime(2026, 3, 5, 17, 30, tzinfo=UTC), "going", EventKindName.LEAVE),
        (datetime(2026, 3, 10, tzinfo=UTC), "new", EventKindName.HIRE),
    ]
    at, role, kind = events[0]
    assert (role, kind) == ("going", "leave")
