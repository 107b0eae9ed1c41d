"""One conformance suite: the same sequences against the in-memory target (with PostgreSQL's
and with MariaDB's capabilities), PostgreSQL 15 and MariaDB 10.11 (issue 20).

Every step is planned and applied through the whole engine.  Each test states the plans and
the inspected states it expects; they are the same on every target, except where the
capabilities differ, and then the difference is derived from the capabilities (never from
the target's name).  Against a real server an in-memory twin with the same capabilities runs
in the same configuration and must plan and read exactly alike (tests/conformance/support.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from provisioner.core.values.capabilities import MARIADB, Capabilities
from provisioner.core.values.plan import Change, ChangeKind, TargetPlan
from provisioner.errors import ApplyFailed
from provisioner.targets.base import ChangeFailed, Target
from provisioner.targets.memory import MemoryTarget
from tests.conformance.support import KINDS, Backend, Interfering, backend, normalise, shapes, sid
from tests.mysql.support import Person

# Every step inspects the whole cluster, and a shared test server may hold thousands of other
# tests' roles: under load a sequence on a real server takes minutes.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(params=KINDS)
def b(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend(request.param, tmp_path) as it:
        yield it


def step(b: Backend, *people: Person, now: datetime | None = None) -> TargetPlan:
    """Apply (``apply_run`` derives the very plan a plan run makes, checked against the
    twin's) and re-plan empty."""
    now = now or datetime.now(UTC)
    b.people(*people)
    applied = b.ours(b.apply(now))
    assert b.plan(now).changes == ()  # converged (and the twin too)
    return applied


def user(b: Backend, uid: str, groups: set[str], login: bool = True, until: datetime | None = None,
         ledger: set[str] | None = None, of: str | None = None) -> tuple[Any, ...]:
    """The normalised state of a managed login role (``of``: whose stable id, when renamed)."""
    member_of = frozenset(b.role(g) for g in groups)
    kept = member_of if ledger is None else frozenset(b.role(g) for g in ledger)
    return (login, member_of, ("user", sid(of or uid), f"{b.prefix}ldif", "conformance"), kept, until)


def group(b: Backend) -> tuple[Any, ...]:
    return (False, frozenset(), ("group", None, None, "conformance"), None, None)


def groups(b: Backend, *names: str) -> dict[str, tuple[Any, ...]]:
    return {b.role(n): group(b) for n in names}


def create(b: Backend, uid: str, login: bool = True) -> tuple[Any, ...]:
    return ("create_role", b.role(uid), None, login)


def grant(b: Backend, uid: str, g: str) -> tuple[Any, ...]:
    return ("grant_membership", b.role(uid), b.role(g), None)


def revoke(b: Backend, uid: str, g: str) -> tuple[Any, ...]:
    return ("revoke_membership", b.role(uid), b.role(g), None)


ALICE, BOB = Person("alice", "Trading"), Person("bob", "Operations")


def joiners(b: Backend) -> list[tuple[Any, ...]]:
    return sorted([
        *(create(b, g, False) for g in ("trader", "reader", "ops")),
        create(b, "alice"), create(b, "bob"),
        grant(b, "alice", "trader"), grant(b, "alice", "reader"), grant(b, "bob", "ops"), grant(b, "bob", "reader"),
    ])


def joined(b: Backend) -> dict[str, tuple[Any, ...]]:
    return {
        **groups(b, "trader", "reader", "ops"),
        b.role("alice"): user(b, "alice", {"trader", "reader"}),
        b.role("bob"): user(b, "bob", {"ops", "reader"}),
    }


def test_joiner_mover_leaver_rename_rehire(b: Backend) -> None:
    assert shapes(step(b, ALICE, BOB)) == joiners(b)
    assert b.state() == joined(b)

    mover = step(b, Person("alice", "Operations"), BOB)
    assert shapes(mover) == sorted([revoke(b, "alice", "trader"), grant(b, "alice", "ops")])
    assert b.state()[b.role("alice")] == user(b, "alice", {"ops", "reader"})

    left = datetime.now(UTC)
    with b.session("bob"):  # a leaver still logged in: ended by the apply (session_termination)
        assert b.sessions() == {b.role("bob"): 1}
        leaver = step(b, Person("alice", "Operations"), Person("bob", "Operations", status="terminated"), now=left)
        assert b.sessions() == {}
    assert shapes(leaver) == sorted([
        ("alter_role", b.role("bob"), None, False), ("terminate_sessions", b.role("bob"), None, None),
        revoke(b, "bob", "ops"), revoke(b, "bob", "reader"),
    ])
    (lock,) = [c for c in leaver.changes if c.kind.value == "alter_role"]
    assert lock.param("valid_until") == left.isoformat()  # PostgreSQL's VALID UNTIL, MariaDB's marker row
    assert b.state()[b.role("bob")] == user(b, "bob", set(), login=False, until=left)

    renamed = Person("alicia", "Operations", stable_id=sid("alice"))
    rename = step(b, renamed, Person("bob", "Operations", status="terminated"), now=left)
    assert shapes(rename) == [("rename_role", b.role("alicia"), None, None)]
    state = b.state()
    assert b.role("alice") not in state
    assert state[b.role("alicia")] == user(b, "alicia", {"ops", "reader"}, of="alice")

    rehire = step(b, renamed, BOB)
    assert shapes(rehire) == sorted([
        ("alter_role", b.role("bob"), None, True), grant(b, "bob", "ops"), grant(b, "bob", "reader"),
    ])
    assert b.state() == {
        **groups(b, "trader", "reader", "ops"),
        b.role("alicia"): user(b, "alicia", {"ops", "reader"}, of="alice"),
        b.role("bob"): user(b, "bob", {"ops", "reader"}),
    }


def test_hand_grant_is_drift_and_a_leaver_is_dropped_after_retention(b: Backend) -> None:
    step(b, ALICE, BOB)
    b.grant("alice", "ops")  # brownfield: a DBA grants a business role by hand
    plan = b.ours(b.plan())
    assert plan.changes == ()  # drift = "report": never revoked by itself
    assert ("drift", b.role("alice")) in {(n.code, n.role) for n in plan.notices}
    # the hand grant is a membership, not the provisioner's: outside the ledger
    assert b.state()[b.role("alice")] == user(b, "alice", {"trader", "reader", "ops"}, ledger={"trader", "reader"})

    step(b, ALICE, Person("bob", "Operations", status="terminated"))
    later = datetime.now(UTC) + timedelta(days=400)
    b.people(ALICE, Person("bob", "Operations", status="terminated"))
    assert shapes(b.ours(b.plan(later))) == [("drop_role", b.role("bob"), None, None)]
    b.apply(later)
    assert b.role("bob") not in b.state()
    assert b.ours(b.plan(later)).changes == ()


def test_a_leave_date_expires_where_the_target_can_expire_accounts(b: Backend) -> None:
    """The one plan difference of these sequences, from ``capabilities.expiring_accounts``:
    PostgreSQL creates the account with VALID UNTIL the leave instant; MariaDB cannot
    expire an account, so the plan says the run at that time disables it."""
    carol = Person("carol", "Trading", leave_date="2099-01-01")
    plan = step(b, carol)
    (created,) = [c for c in plan.changes if c.role == b.role("carol") and c.kind.value == "create_role"]
    until = created.param("valid_until")
    (notice,) = [n.message for n in plan.notices if (n.code, n.role) == ("scheduled_disable", b.role("carol"))]
    if b.capabilities.expiring_accounts:
        assert until is not None and datetime(2099, 1, 1, tzinfo=UTC) <= datetime.fromisoformat(until)
        assert "enforced as VALID UNTIL" in notice
    else:
        assert until is None and "this target cannot expire accounts" in notice
    expected = datetime.fromisoformat(until) if until else None
    assert b.state()[b.role("carol")] == user(b, "carol", {"trader", "reader"}, until=expected)


def test_a_change_the_target_refuses_is_isolated(b: Backend) -> None:
    """Between the plan and its apply a DBA creates a namesake of a joiner: the CREATE is
    refused, the joiner's later changes are skipped (never applied to the namesake), every
    other change applies; the next plan leaves the namesake alone."""
    b.people(ALICE, BOB)

    def namesake(t: Target) -> Target:
        return Interfering(t, lambda: b.create_role("alice", on=t))

    with pytest.raises(ApplyFailed) as info:
        b.apply(interfere=namesake)
    assert str(info.value).count(b.role("alice")) >= 3  # its CREATE and both grants did not happen
    expected = joined(b)
    expected[b.role("alice")] = (True, frozenset(), None, None, None)  # the namesake, untouched
    assert b.state() == expected
    plan = b.ours(b.plan())
    assert plan.changes == () and ("unmanaged", b.role("alice")) in {(n.code, n.role) for n in plan.notices}


def test_a_crash_mid_apply_leaves_what_the_capabilities_promise_and_the_next_run_converges(b: Backend) -> None:
    """The provisioner's session is killed during an apply.  Transactional: at its start,
    and nothing of the apply is left.  Statement by statement: after the third change, and
    exactly those three changes are left (each change's statements ordered so that a prefix
    is safe).  The next run converges to the same state as without the crash."""
    b.people(ALICE, BOB)
    transactional = b.capabilities.transactional
    after = 0 if transactional else 3

    def kill(t: Target) -> Target:
        return Interfering(t, lambda: b.kill(t), after)

    for name in filter(None, (b.name, b.twin)):  # a lost connection ends the run: one target each
        with pytest.raises(ChangeFailed) as info:
            b.apply(interfere=kill, only=name)
        assert info.value.applied == after  # committed before the crash: none in a transaction
    state = b.state()
    if transactional:
        assert state == {}
    else:
        assert len(state) == 3 and all(r in joined(b).values() or r[1] == frozenset() for r in state.values())
        assert all(role[1] == frozenset() for role in state.values())  # three creates, no grant yet
    b.apply()
    assert b.state() == joined(b)
    assert b.plan().changes == ()


def as_planned_for(change: Change, caps: Capabilities) -> dict[str, Any]:
    """A change planned for PostgreSQL as a target with ``caps`` plans it: without
    ``expiring_accounts`` an active account gets no VALID UNTIL (a leaver's disable instant
    stays: it records when access ended)."""
    data = change.to_json()
    login = change.param("login")
    if not caps.expiring_accounts and change.kind in (ChangeKind.CREATE_ROLE, ChangeKind.ALTER_ROLE) and login:
        data["params"] = {**data["params"], "valid_until": None}
    return data


def test_the_plans_of_postgresql_and_mariadb_capabilities_differ_only_where_the_capabilities_do(
    tmp_path: Path,
) -> None:
    """Both in-memory flavours in one configuration, one sequence: every change the same,
    but for what ``expiring_accounts`` changes; the transaction semantics do not change a plan."""
    with backend("memory-postgresql", tmp_path) as b:
        p = b.prefix
        with b.path.open("a") as f:
            f.write(f'\n[[targets]]\nname = "{p}maria"\ntype = "memory"\nflavor = "mariadb"\nsession_role = "{p}svc"\n')
        b.memory[f"{p}maria"] = MemoryTarget(f"{p}maria", capabilities=MARIADB, session_role=f"{p}svc")
        carol = Person("carol", "Trading", leave_date="2099-01-01")
        differed = 0
        for people in (
            (ALICE, BOB, carol),
            (Person("alice", "Operations"), BOB, carol),
            (Person("alice", "Operations"), Person("bob", "Operations", status="terminated"), carol),
            (Person("alice", "Operations"), BOB, carol),
        ):
            b.people(*people)
            now = datetime.now(UTC)
            plan = b.plan(now)
            pg, maria = b.ours(plan), plan.for_target(f"{p}maria")
            assert maria is not None and pg.changes
            assert [as_planned_for(c, MARIADB) for c in pg.changes] == [c.to_json() for c in maria.changes]
            differed += sum(as_planned_for(c, MARIADB) != c.to_json() for c in pg.changes)
            assert sorted((n.code, n.role) for n in pg.notices) == sorted((n.code, n.role) for n in maria.notices)
            b.apply(now)
            assert normalise(b.memory[f"{p}maria"].inspect(), p) == {
                name: (*row[:4], None if row[0] else row[4]) for name, row in b.state().items()
            }
        assert differed == 1  # carol's VALID UNTIL: the one capability difference these plans meet
