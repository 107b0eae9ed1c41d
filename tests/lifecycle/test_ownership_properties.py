"""Ownership property test against the real PostgreSQL (issue 13).

Random directories over several runs -- names reused by other people, people renamed,
people leaving and coming back -- with business roles that exist before provisioner
(created by a DBA, no marker), an unmanaged namesake login, and hand grants made by a
DBA between runs.  Identities are built in process (no directory server) and the
plan goes through the real diff and the real PostgreSQL target, so that hundreds of
examples stay fast.  After every apply:

* the next plan is empty;
* a login-enabled managed role belongs to a person in the directory, under the name
  that person has now (a reused name never hands a role over; the leaver is disabled);
* no hand grant is removed (drift = "report") from a person still in the directory;
* every membership provisioner granted that no rule wants is gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from provisioner.core.identity.desired import desired_state
from provisioner.core.identity.lifecycle import LifecyclePolicy
from provisioner.core.identity.naming import NamingPolicy
from provisioner.core.identity.rules import build_ruleset
from provisioner.core.reconcile.diff import DiffPolicy, diff
from provisioner.core.values.model import ActualState, DesiredState, Identity, RoleKind, SourceSnapshot
from provisioner.targets.postgres import PostgresTarget
from tests.support import pg

EXAMPLES = 300
NOW = datetime(2031, 3, 2, 9, tzinfo=UTC)
NAMES = ["ann", "bob", "cy", "dee"]
DEPTS = ["Equities", "Compliance", "Research", "None"]
BUSINESS = ["desk", "mkt", "comp"]  # pre-existing, unmarked; "research" is created by provisioner
GROUPS = [*BUSINESS, "research"]
RULES = """
[[rule]]
id = "equities"
description = "equities desk"
grant = ["{p}desk", "{p}mkt"]
when = {{ attr = "department", equals = "Equities" }}

[[rule]]
id = "compliance"
description = "compliance"
grant = ["{p}comp"]
when = {{ attr = "department", equals = "Compliance" }}

[[rule]]
id = "research"
description = "research, a role provisioner creates"
grant = ["{p}research", "{p}mkt"]
when = {{ attr = "department", equals = "Research" }}
"""

# one run's directory: stable id (0..4) -> (name, department); names unique per run
person_st = st.tuples(st.sampled_from(NAMES), st.sampled_from(DEPTS))
directory_st = st.dictionaries(st.integers(0, 4), person_st, min_size=1, max_size=4).filter(
    lambda d: len({n for n, _ in d.values()}) == len(d)
)
hand_st = st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(GROUPS)), max_size=3)


@pytest.fixture(scope="module")
def target() -> Iterator[PostgresTarget]:
    t = PostgresTarget(pg.target_config())
    try:
        yield t
    finally:
        t.close()


def desired(prefix: str, source: str, people: dict[int, tuple[str, str]]) -> DesiredState:
    rules, problems = build_ruleset([("r.toml", RULES.format(p=prefix))])
    assert problems == []
    idents = tuple(
        Identity(f"id-{sid}", name, source, {"department": (dept,), "status": ("active",)})
        for sid, (name, dept) in sorted(people.items())
    )
    return desired_state([SourceSnapshot(source, idents)], rules, NamingPolicy(prefix=prefix), LifecyclePolicy(), NOW)


def mine(target: PostgresTarget, prefix: str) -> ActualState:
    """The roles of this example only (the shared server holds other engineers' roles):
    every name the example can create, read in constant time."""
    return target.inspect(frozenset(prefix + n for n in (*NAMES, *GROUPS)))


def plan(target: PostgresTarget, want: DesiredState, prefix: str, policy: DiffPolicy) -> tuple[Any, ActualState]:
    actual = mine(target, prefix)
    changes, _ = diff(want, actual, policy, NOW)
    assert all(c.role.startswith(prefix) for c in changes), changes
    return changes, actual


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    runs=st.lists(st.tuples(directory_st, hand_st), min_size=2, max_size=3),
    namesake=st.sampled_from([None, *NAMES]),
)
def test_ownership_properties(target: PostgresTarget, runs: list[Any], namesake: str | None) -> None:
    p = pg.new_prefix()
    source, policy = f"{p}src", DiffPolicy(instance=f"{p}inst")
    hand: set[tuple[str, str]] = set()  # (stable id, group): granted by the DBA, never by provisioner
    try:
        with pg.admin_connect() as conn:
            for g in BUSINESS:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(p + g)))
            if namesake is not None:  # a DBA's own login that happens to carry a person's name
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(p + namesake)))
        state = mine(target, p)
        for people, grants in runs:
            want = desired(p, source, people)
            with pg.admin_connect() as conn:  # the DBA's hand grants before the run
                for name, group in grants:
                    role, grp = state.roles.get(p + name), state.roles.get(p + group)
                    if role is None or grp is None or role.marker is None or grp.name in role.member_of:
                        continue
                    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(grp.name), sql.Identifier(role.name)))
                    hand.add((str(role.marker.stable_id), grp.name))
            changes, _ = plan(target, want, p, policy)
            target.apply(changes)
            again, after = plan(target, want, p, policy)
            state = after
            assert again == (), f"the next plan is not empty: {[c.describe() for c in again]}"

            by_id = {u.stable_id: u for u in want.users.values()}
            hand = {(sid, g) for sid, g in hand if sid in by_id}  # a leaver loses every membership
            for role in after.roles.values():
                m = role.marker
                if m is None or m.kind is not RoleKind.USER or m.instance != policy.instance:
                    continue
                person = by_id.get(str(m.stable_id))
                if role.login:  # only a present person's role can log in
                    assert person is not None, f"{role.name}: the role of vanished {m.stable_id} can log in"
                if person is None:
                    continue
                for group in role.member_of:  # nothing provisioner granted and no rule wants
                    assert group in person.memberships or (person.stable_id, group) in hand, (
                        f"{role.name} keeps {group} that no rule grants and nobody granted by hand"
                    )
                for sid, group in hand:  # hand grants of people still here stay (drift = report)
                    if sid == person.stable_id:
                        assert group in role.member_of, f"hand grant {group} of {role.name} removed"
            for name, user in want.users.items():  # a name never passes to another identity
                role = after.roles.get(name)
                if role is not None and role.marker is not None and role.marker.stable_id != user.stable_id:
                    assert not role.login or by_id.get(str(role.marker.stable_id)) is not None, name
    finally:
        pg.drop_roles_with_prefix(p)
