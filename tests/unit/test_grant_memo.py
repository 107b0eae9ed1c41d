"""GrantMemo: memoised desired state equals the unmemoised computation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.core.identity.desired import desired_state
from provisioner.core.identity.lifecycle import LifecyclePolicy
from provisioner.core.identity.memo import GrantMemo, rule_inputs
from provisioner.core.identity.naming import NamingPolicy
from provisioner.core.identity.rules import RuleSet, build_ruleset
from provisioner.core.values.model import DesiredState, Identity, SourceSnapshot

RULES = """
[[rule]]
id = "traders"
description = "traders"
grant = ["trade", "dept_{department}"]
when.all = [ { attr = "department", equals = "Trading" }, { not = { group = "suspended" } } ]

[[rule]]
id = "personal"
description = "a role per person"
grant = ["home_{username}"]
when = { attr = "title", regex = "^head" }

[[rule]]
id = "recent"
description = "hired in the last 10 days"
grant = ["onboarding"]
when = { attr = "hire_date", after = "today-10d" }

[[rule]]
id = "any-group"
description = "admins, nested"
grant = ["admin"]
when.any = [ { group = "admins" }, { attr = "employee_type", one_of = ["Admin"] } ]
"""

SHARED = RULES.split("[[rule]]\nid = \"personal\"")[0]
DEPTS = st.sampled_from(["Trading", "IT", "trading"])
TITLES = st.sampled_from(["Head of X", "Analyst", "head"])
DATES = st.sampled_from(["2026-11-20", "2026-11-01", "2027-01-01", "garbage", "2026-11-26T10:00:00Z"])
GROUPS = st.frozensets(st.sampled_from(["suspended", "admins", "other", "cn=admins,o=x"]), max_size=3)


@st.composite
def identities(draw: st.DrawFn) -> list[Identity]:
    n = draw(st.integers(1, 25))
    out = []
    for i in range(n):
        attrs: dict[str, tuple[str, ...]] = {"department": (draw(DEPTS),), "title": (draw(TITLES),)}
        if draw(st.booleans()):
            attrs["hire_date"] = (draw(DATES),)
        if draw(st.booleans()):
            attrs["leave_date"] = (draw(DATES),)
        if draw(st.booleans()):
            attrs["status"] = (draw(st.sampled_from(["active", "terminated"])),)
        if draw(st.booleans()):
            attrs["employee_type"] = (draw(st.sampled_from(["Admin", "employee"])),)
        name = draw(st.sampled_from(["ann", "bob", "cy", "dee"])) + str(i)
        out.append(Identity(f"id{i}", name, "src", attrs, draw(GROUPS), draw(st.booleans()), f"uid={name}"))
    return out


def _rules(text: str = RULES) -> RuleSet:
    rules, problems = build_ruleset([("r.toml", text)])
    assert not problems
    return rules


def _desired(people: list[Identity], rules: RuleSet, now: datetime, memo: GrantMemo | None) -> DesiredState:
    return desired_state([SourceSnapshot("src", tuple(people))], rules, NamingPolicy(), LifecyclePolicy(), now, memo)


@settings(max_examples=60, deadline=None)
@given(identities(), identities(), st.integers(0, 40))
def test_memoised_desired_state_equals_fresh(first: list[Identity], second: list[Identity], days: int) -> None:
    rules = _rules()
    memo = GrantMemo()  # kept across "runs", as the daemon does
    now = datetime(2026, 11, 26, 9, tzinfo=UTC)
    later = now + timedelta(days=days, hours=days)
    assert _desired(first, rules, now, memo) == _desired(first, rules, now, None)
    assert _desired(second, rules, later, memo) == _desired(second, rules, later, GrantMemo())
    assert _desired(first + second, rules, later, memo) == _desired(first + second, rules, later, None)
    evening = later + timedelta(hours=12)  # the same identity objects again: per-object reuse, a later hour
    assert _desired(first + second, rules, evening, memo) == _desired(first + second, rules, evening, None)
    assert _desired(second, rules, evening, memo) == _desired(second, rules, evening, None)


def test_memo_serves_shared_content_and_resets_on_new_rules_or_day() -> None:
    rules = _rules(SHARED)  # no {username}: everyone in Trading shares one evaluation
    memo = GrantMemo()
    people = [Identity(f"id{i}", f"u{i}", "src", {"department": ("Trading",)}) for i in range(50)]
    now = datetime(2026, 11, 26, tzinfo=UTC)
    desired = _desired(people, rules, now, memo)
    assert memo.misses == 1 and memo.hits == 49
    assert set(desired.users["u7"].memberships) == {"trade", "dept_trading"}
    other = _rules(SHARED.replace('grant = ["trade", ', 'grant = ["trade2", '))
    assert set(_desired(people, other, now, memo).users["u7"].memberships) == {"trade2", "dept_trading"}
    assert memo.misses == 2
    _desired(people, other, now + timedelta(days=1), memo)
    assert memo.misses == 3 and len(memo) == 1


def test_rule_inputs_name_what_rules_read() -> None:
    inputs = rule_inputs(_rules())
    assert inputs.attributes == ("department", "employee_type", "hire_date", "title", "username")
    assert inputs.groups == frozenset({"admins", "suspended"})
    assert inputs.all_groups is False
    assert inputs.username is True
    assert rule_inputs(_rules(SHARED)).username is False


def test_people_given_a_role_by_one_rule_share_one_reasons_tuple() -> None:
    """Memory (issue 19): the daemon keeps every person's memberships; a membership one rule
    gives is one tuple for everyone it gives it to, and a role two rules give lists both."""
    twice = SHARED + '\n[[rule]]\nid = "also"\ndescription = "IT too"\ngrant = ["trade"]\nwhen = { attr = "title", equals = "Analyst" }\n'
    people = [Identity(f"id{i}", f"u{i}", "src", {"department": ("Trading",), "title": (t,)})
              for i, t in enumerate(["Head", "Head", "Analyst"])]
    desired = _desired(people, _rules(twice), datetime(2026, 11, 26, tzinfo=UTC), GrantMemo())
    a, b, c = (desired.users[f"u{i}"].memberships for i in range(3))
    assert a["trade"] is b["trade"] and a["dept_trading"] is b["dept_trading"] is c["dept_trading"]
    assert [r.rule for r in a["trade"]] == ["traders"]
    assert [r.rule for r in c["trade"]] == ["traders", "also"]
