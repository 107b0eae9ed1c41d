"""The diff memo (core/reconcile/diffmemo.py) never changes a plan: over random sequences of
directory changes, applies, clock moves, hand-made grants and policy changes, the
diff with a memo kept across steps equals a fresh diff at every step."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.core.identity.desired import desired_state
from provisioner.core.identity.lifecycle import LifecyclePolicy
from provisioner.core.identity.memo import GrantMemo
from provisioner.core.identity.naming import NamingPolicy
from provisioner.core.reconcile.diff import DiffPolicy, diff
from provisioner.core.reconcile.diffmemo import DiffMemo
from provisioner.core.values.model import ActualState, Identity, SourceSnapshot
from tests.unit.test_diff import NOW, RULES, apply_changes, empty_state, group, person

PEOPLE = [f"u{i}" for i in range(8)]
STEPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["move", "leave", "rejoin", "approver", "leave_date", "apply", "tick", "hand", "policy", "session",
             "reinspect", "protect"]
        ),
        st.sampled_from(PEOPLE),
        st.sampled_from(["Trading", "Operations", "Risk"]),
    ),
    min_size=1,
    max_size=12,
)


def _step(kind: str, who: str, dept: str, people: dict[str, Identity], state: ActualState) -> ActualState:
    p = people[who]
    if kind == "move":
        people[who] = replace(p, attributes={**p.attributes, "department": (dept,)})
    elif kind == "leave":
        people[who] = replace(p, attributes={**p.attributes, "status": ("terminated",)})
    elif kind == "rejoin":
        people[who] = replace(p, attributes={**p.attributes, "status": ("active",)})
    elif kind == "approver":
        people[who] = replace(p, groups=p.groups ^ {"approvers"})
    elif kind == "leave_date":
        people[who] = replace(p, attributes={**p.attributes, "leave_date": ((NOW + timedelta(days=1)).date().isoformat(),)})
    elif kind == "session":  # the same roles, a new session: the roles mapping stays the same object
        return replace(state, sessions={**state.sessions, who: 1})
    elif kind == "reinspect":  # a fresh inspect that took every unchanged role again: a new mapping
        return replace(state, roles=dict(state.roles))
    elif kind == "protect" and "trade_approver" in state.roles:  # a group role changes: revocations may not
        roles = dict(state.roles)
        roles["trade_approver"] = replace(roles["trade_approver"], superuser=not roles["trade_approver"].superuser)
        return replace(state, roles=roles)
    elif kind == "hand" and who in state.roles:
        roles = dict(state.roles)
        roles[who] = replace(roles[who], member_of=roles[who].member_of | {"trade_approver"})
        return replace(state, roles=roles)
    return state


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(STEPS)
def test_memoised_diff_equals_a_fresh_diff_at_every_step(steps: list[tuple[str, str, str]]) -> None:
    people = {uid: person(uid, "Trading") for uid in PEOPLE}
    groups = [group(g) for g in ("trade_executor", "trade_reader", "ops_settlement", "trade_approver")]
    state, now, policy = empty_state(*groups), NOW, DiffPolicy()
    grants, memo = GrantMemo(), DiffMemo()
    for kind, who, dept in [("apply", PEOPLE[0], ""), *steps, ("tick", PEOPLE[0], "")]:
        state = _step(kind, who, dept, people, state)
        if kind == "tick":
            now += timedelta(days=1)
        if kind == "policy":
            policy = DiffPolicy(drift="revoke" if policy.drift == "report" else "report")
        snaps = [SourceSnapshot("ldap", tuple(people[u] for u in PEOPLE))]
        desired = desired_state(snaps, RULES, NamingPolicy(), LifecyclePolicy(), now, grants)
        fresh = diff(desired, state, policy, now)
        assert diff(desired, state, policy, now, memo) == fresh
        assert diff(desired, state, policy, now, memo) == fresh  # and again, now from the memo
        if kind == "apply":
            state = apply_changes(state, fresh[0])


def test_unchanged_people_are_served_from_the_memo() -> None:
    people = [person(f"u{i}", "Trading") for i in range(50)]
    state = empty_state(*(group(g) for g in ("trade_executor", "trade_reader")))
    grants, memo = GrantMemo(), DiffMemo()
    desired = desired_state([SourceSnapshot("ldap", tuple(people))], RULES, NamingPolicy(), LifecyclePolicy(), NOW, grants)
    state = apply_changes(state, diff(desired, state, DiffPolicy(), NOW)[0])
    first = diff(desired, state, DiffPolicy(), NOW, memo)
    assert memo.hits == 0 and first == ((), ())
    people[7] = replace(people[7], attributes={**people[7].attributes, "department": ("Operations",)})
    desired = desired_state([SourceSnapshot("ldap", tuple(people))], RULES, NamingPolicy(), LifecyclePolicy(), NOW, grants)
    changes, _ = diff(desired, state, DiffPolicy(), NOW, memo)
    assert memo.hits == 49 and {c.role for c in changes} == {"u7", "ops_settlement"}  # the group is new
    reinspected = replace(state, roles=dict(state.roles))  # the same role objects in a new mapping
    # u7 has changes: diffed again, never kept (applying them replaces the roles it read)
    assert diff(desired, reinspected, DiffPolicy(), NOW, memo) == (changes, _) and memo.hits == 98


def test_a_person_with_changes_is_not_kept() -> None:
    """A first sync's changes are not held by the memo until the next run (issue 19: memory)."""
    people = [person(f"u{i}", "Trading") for i in range(20)]
    state = empty_state(*(group(g) for g in ("trade_executor", "trade_reader")))
    memo = DiffMemo()
    desired = desired_state([SourceSnapshot("ldap", tuple(people))], RULES, NamingPolicy(), LifecyclePolicy(), NOW)
    changes, _ = diff(desired, state, DiffPolicy(), NOW, memo)
    assert len({c.role for c in changes}) >= 20
    assert diff(desired, state, DiffPolicy(), NOW, memo)[0] == changes and memo.hits == 0
