"""Diff and plan: joiners, movers, leavers, protected and unmanaged roles. Pure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.core.identity.desired import desired_state
from provisioner.core.identity.lifecycle import LifecyclePolicy
from provisioner.core.identity.naming import NamingPolicy, assign_names, normalise
from provisioner.core.identity.rules import build_ruleset
from provisioner.core.reconcile.diff import DiffPolicy, diff
from provisioner.core.values import marker as markers
from provisioner.core.values.model import ActualRole, ActualState, Identity, Marker, RoleKind, SourceSnapshot
from provisioner.core.values.plan import Change, ChangeKind, Plan, TargetPlan
from provisioner.targets.memory import MemoryTarget

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
RULES, _ = build_ruleset(
    [
        (
            "r.toml",
            """
[[rule]]
id = "traders"
description = "traders execute"
grant = ["trade_executor", "trade_reader"]
when = { attr = "department", equals = "Trading" }

[[rule]]
id = "ops"
description = "operations settle"
grant = ["ops_settlement", "trade_reader"]
when = { attr = "department", equals = "Operations" }

[[rule]]
id = "approvers"
description = "approvers"
grant = ["trade_approver"]
when = { group = "approvers" }
""",
        )
    ]
)


def person(uid: str, dept: str, *, status: str = "active", groups: tuple[str, ...] = (), **extra: str) -> Identity:
    attrs = {"department": (dept,), "status": (status,), **{k: (v,) for k, v in extra.items()}}
    return Identity(f"uuid-{uid}", uid, "ldap", attrs, frozenset(groups))


def plan_for(people: list[Identity], state: ActualState, policy: DiffPolicy = DiffPolicy(), now: datetime = NOW):
    desired = desired_state([SourceSnapshot("ldap", tuple(people))], RULES, NamingPolicy(), LifecyclePolicy(), now)
    return diff(desired, state, policy, now)


def apply_changes(state: ActualState, changes: Sequence[Change]) -> ActualState:
    """``changes`` applied by the in-memory target (provisioner/targets/memory.py), which the
    conformance suite checks against PostgreSQL and MariaDB; every change must apply."""
    target = MemoryTarget.from_state(state)
    result = target.apply(changes)
    assert result.failed == (), [f.describe() for f in result.failed]
    assert len(result.applied) == len(changes)
    return target.inspect()


def empty_state(*roles: ActualRole) -> ActualState:
    base = [
        ActualRole("postgres", True, superuser=True, system=True),
        ActualRole("provisioner", True, createrole=True),
        ActualRole("pg_read_all_data", False, system=True),
    ]
    return ActualState("pg", {r.name: r for r in [*base, *roles]}, "provisioner")


def managed(name: str, sid: str, login: bool = True, member_of: frozenset[str] = frozenset()) -> ActualRole:
    """A role provisioner created and granted ``member_of`` (its ledger)."""
    return ActualRole(name, login, marker=Marker(RoleKind.USER, sid, "ldap", granted=member_of), member_of=member_of)


def group(name: str) -> ActualRole:
    return ActualRole(name, False, marker=Marker(RoleKind.GROUP))


def test_joiners_mover_leaver_over_three_syncs() -> None:
    state = empty_state()
    day1 = [person("alice", "Trading"), person("bob", "Operations")]
    changes, _ = plan_for(day1, state)
    kinds = [(c.kind, c.role, c.param("group")) for c in changes]
    assert (ChangeKind.CREATE_ROLE, "trade_executor", None) in kinds
    assert (ChangeKind.GRANT_MEMBERSHIP, "alice", "trade_executor") in kinds
    grant = next(c for c in changes if c.role == "alice" and c.param("group") == "trade_executor")
    assert grant.reasons[0].rule == "traders" and ("department", "Trading") in grant.reasons[0].attributes
    state = apply_changes(state, changes)
    assert plan_for(day1, state)[0] == ()

    day2 = [person("alice", "Operations"), person("bob", "Operations")]  # alice moves
    changes, _ = plan_for(day2, state)
    summary = {(c.kind, c.role, c.param("group")) for c in changes}
    assert summary == {
        (ChangeKind.REVOKE_MEMBERSHIP, "alice", "trade_executor"),
        (ChangeKind.GRANT_MEMBERSHIP, "alice", "ops_settlement"),
    }
    state = apply_changes(state, changes)

    day3 = [person("alice", "Operations", status="terminated")]  # alice leaves, bob vanishes
    changes, _ = plan_for(day3, state)
    state = apply_changes(state, changes)
    for name in ("alice", "bob"):
        role = state.roles[name]
        assert not role.login and role.member_of == frozenset() and role.valid_until == NOW
        assert role.marker is not None  # still managed: never an unmanaged usable account
    assert plan_for(day3, state, now=NOW + timedelta(hours=1))[0] == ()


def test_unmanaged_and_protected_roles_untouched() -> None:
    state = empty_state(ActualRole("carol", True, member_of=frozenset({"legacy"})), ActualRole("legacy", False))
    people = [person("carol", "Trading"), person("postgres", "Trading"), person("provisioner", "Trading")]
    changes, notices = plan_for(people, state)
    touched = {c.role for c in changes}
    assert touched.isdisjoint({"carol", "postgres", "provisioner", "legacy"})
    codes = {(n.code, n.role) for n in notices}
    assert (
        ("unmanaged", "carol") in codes and ("protected", "postgres") in codes and ("protected", "provisioner") in codes
    )


def test_rule_granting_protected_role_is_refused() -> None:
    rules, problems = build_ruleset(
        [("x.toml", '[[rule]]\nid="x"\ndescription="d"\ngrant=["postgres"]\nwhen={attr="department",equals="IT"}\n')]
    )
    assert problems == []
    desired = desired_state(
        [SourceSnapshot("ldap", (person("dan", "IT"),))], rules, NamingPolicy(), LifecyclePolicy(), NOW
    )
    changes, notices = diff(desired, empty_state(), DiffPolicy(), NOW)
    assert all(c.param("group") != "postgres" for c in changes)
    assert any(n.code == "protected" and n.role == "postgres" for n in notices)


def test_drift_report_vs_revoke() -> None:
    state = empty_state(
        group("trade_executor"),
        group("trade_reader"),
        ActualRole("handmade", False),
        replace(
            managed("alice", "uuid-alice", member_of=frozenset({"trade_executor", "trade_reader"})),
            member_of=frozenset({"trade_executor", "trade_reader", "handmade"}),
        ),
    )
    changes, notices = plan_for([person("alice", "Trading")], state)
    assert changes == () and any(n.code == "drift" for n in notices)
    changes, _ = plan_for([person("alice", "Trading")], state, DiffPolicy(drift="revoke"))
    assert [(c.kind, c.param("group")) for c in changes] == [(ChangeKind.REVOKE_MEMBERSHIP, "handmade")]
    assert changes[0].reasons[0].rule == "drift"


def test_future_hire_and_future_leave() -> None:
    future = person("erin", "Trading", hire_date="2026-12-15")
    changes, notices = plan_for([future], empty_state())
    assert all(c.role != "erin" for c in changes)
    assert any(n.code == "scheduled_joiner" for n in notices)
    leaving = person("fay", "Trading", leave_date="2026-12-31")
    changes, notices = plan_for([leaving], empty_state())
    create = next(c for c in changes if c.kind is ChangeKind.CREATE_ROLE and c.role == "fay")
    assert create.param("valid_until") == "2027-01-01T00:00:00+00:00"  # the end of the last working day
    assert any(n.code == "scheduled_disable" for n in notices)


def test_rehire_and_rename_keep_the_role() -> None:
    state = empty_state(group("trade_reader"), group("trade_executor"), managed("gil", "uuid-gil", login=False))
    changes, _ = plan_for([person("gil", "Trading")], state)
    alter = next(c for c in changes if c.kind is ChangeKind.ALTER_ROLE)
    assert alter.param("login") is True and alter.reasons[0].rule == "lifecycle:rehire"
    renamed = Identity("uuid-gil", "gil.new", "ldap", {"department": ("Trading",)})
    changes, _ = plan_for([renamed], state)
    assert changes[0].kind is ChangeKind.RENAME_ROLE and changes[0].param("old_name") == "gil"
    assert not any(c.kind is ChangeKind.CREATE_ROLE for c in changes)


def test_other_sources_roles_are_not_leavers() -> None:
    other = ActualRole("hal", True, marker=Marker(RoleKind.USER, "x", "entra"))
    changes, _ = plan_for([person("alice", "Trading")], empty_state(other))
    assert all(c.role != "hal" for c in changes)


def test_collisions_reported_never_merged() -> None:
    a = Identity("1", "Jose", "s")
    b = Identity("2", "josé", "s")
    naming = assign_names([a, b], NamingPolicy())
    assert naming.names == {} and naming.held == {"jose"}
    assert "collision" in naming.problems[0]
    assert normalise("x" * 100) == "x" * 63
    assert normalise("O'Brien; DROP ROLE x") == "o_brien_drop_role_x"


def test_plan_json_round_trip_and_tamper_detection() -> None:
    changes, notices = plan_for([person("alice", "Trading")], empty_state())
    plan = Plan(NOW, "sha256:cfg", (TargetPlan("pg", empty_state().fingerprint(), changes, notices),), 1, ("ldap",))
    data = json.loads(json.dumps(plan.to_json()))
    again = Plan.from_json(data)
    assert again.targets == plan.targets and again.created_at == plan.created_at
    data["targets"][0]["changes"][0]["role"] = "mallory"
    with pytest.raises(ValueError, match="edited"):
        Plan.from_json(data)


def test_marker_round_trip_and_foreign_comment() -> None:
    m = Marker(RoleKind.USER, "abc", "ldap")
    assert markers.parse(markers.encode(m)) == m
    assert markers.parse("hand-made role") is None
    assert markers.parse(markers.PREFIX + "{not json") is None


# ------------------------------------------------------------------ properties

DEPTS = st.sampled_from(["Trading", "Operations", "IT", "Risk"])
STATUS = st.sampled_from(["active", "active", "active", "terminated"])


@st.composite
def directories(draw: st.DrawFn) -> list[Identity]:
    n = draw(st.integers(0, 12))
    people = []
    for i in range(n):
        groups = ("approvers",) if draw(st.booleans()) else ()
        people.append(person(f"u{i}", draw(DEPTS), status=draw(STATUS), groups=groups))
    return people


@st.composite
def start_states(draw: st.DrawFn) -> ActualState:
    roles: list[ActualRole] = [ActualRole("legacy", False), ActualRole("dba", True, superuser=True)]
    for name in ("trade_executor", "trade_reader", "ops_settlement", "trade_approver"):
        if draw(st.booleans()):
            roles.append(group(name))
    names = [r.name for r in roles]
    for i in range(draw(st.integers(0, 12))):
        member_of = frozenset(draw(st.lists(st.sampled_from(names), max_size=3)))
        if draw(st.integers(0, 4)) == 0:
            roles.append(ActualRole(f"u{i}", True, member_of=member_of))  # unmanaged namesake
        else:
            roles.append(managed(f"u{i}", f"uuid-u{i}", draw(st.booleans()), member_of))
    return empty_state(*roles)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(directories(), start_states(), st.sampled_from(["report", "revoke"]))
def test_apply_converges_and_never_touches_what_it_does_not_own(
    people: list[Identity], start: ActualState, drift: str
) -> None:
    policy = DiffPolicy(drift=drift)  # type: ignore[arg-type]
    changes, _ = plan_for(people, start, policy)
    after = apply_changes(start, changes)
    assert plan_for(people, after, policy)[0] == ()
    for name, role in start.roles.items():
        if role.marker is None or role.superuser or role.system:
            assert after.roles[name] == role, f"unmanaged or protected role {name} changed"
    leavers = {f"u{i}" for i in range(20)} - {p.username for p in people if p.first("status") == "active"}
    for name in leavers & set(start.roles):
        before, now = start.roles[name], after.roles[name]
        if before.marker is not None:
            assert now.member_of <= before.member_of and not (now.login and not before.login)


def test_grants_into_one_group_share_their_parameters() -> None:
    """Memory (issue 19): a first sync plans 100,000s of grants into a few thousand groups; every
    grant into one group holds the same parameters object, for joiners and existing people alike."""
    existing = managed("carol", "uuid-carol")
    changes, _ = plan_for([person("alice", "Trading"), person("bob", "Trading"), person("carol", "Trading")],
                          empty_state(existing, group("trade_reader"), group("trade_executor")))
    grants = [c for c in changes if c.kind is ChangeKind.GRANT_MEMBERSHIP and c.param("group") == "trade_reader"]
    assert sorted(c.role for c in grants) == ["alice", "bob", "carol"]
    joiners = [c for c in grants if c.role != "carol"]
    assert joiners[0].params is joiners[1].params == (("group", "trade_reader"),)
    carol = next(c for c in grants if c.role == "carol")  # an existing person's grant also writes her ledger
    assert carol.params[0] is joiners[0].params[0] and carol.param("marker")["granted"] == ["trade_executor", "trade_reader"]
