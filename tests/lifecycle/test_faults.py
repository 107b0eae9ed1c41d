"""Fault injection: the target's connection is killed (pg_terminate_backend from
a second connection) before and after each round trip of an apply that holds a
joiner, a mover and a leaver's disable.  After every fault: nobody has more
access than before, the catalog is as before or as after the removals phase
(which commits on its own, before any grant: issue 14), the audit trail records
exactly what committed, and the next run converges."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from provisioner.errors import ApplyFailed
from provisioner.targets import pg_apply
from tests.lifecycle.support import access, applied_changes, more_access, person, setup
from tests.support import pg
from tests.support.fixtures import LdapOu


class Killer:
    """Kills the target's backend at round trip ``at`` (1-based), before or after it runs."""

    def __init__(self) -> None:
        self.at: int | None = None
        self.after = False
        self.calls = 0
        self.fired = False

    def arm(self, at: int | None, after: bool = False) -> None:
        self.at, self.after, self.calls, self.fired = at, after, 0, False

    def kill(self, runner: pg_apply.BatchRunner) -> None:
        with pg.admin_connect() as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (runner.conn.info.backend_pid,))
        self.fired = True


@pytest.fixture
def killer(monkeypatch: pytest.MonkeyPatch) -> Killer:
    k = Killer()
    original = pg_apply.BatchRunner._execute

    def execute(runner: pg_apply.BatchRunner, query: Any) -> None:
        k.calls += 1
        if k.calls == k.at and not k.after:
            k.kill(runner)
        original(runner, query)
        if k.calls == k.at and k.after:
            k.kill(runner)

    monkeypatch.setattr(pg_apply.BatchRunner, "_execute", execute)
    # one change per round trip, so that every change boundary is a fault point
    monkeypatch.setattr(pg_apply, "batches", lambda steps, size: ([s] for s in steps))
    return k


def test_connection_killed_at_each_statement(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, killer: Killer) -> None:
    p = role_prefix
    ann = ldap_ou.add_user("ann", **person("Trading"))
    bob = ldap_ou.add_user("bob", **person("Operations"))
    ldap_ou.add_user("cy", **person("Trading"))
    s = setup(tmp_path, ldap_ou, p)
    s.apply()
    # the run under test: ann moves, bob leaves, dee joins, cy stays
    ldap_ou.modify(ann, departmentNumber="Operations")
    ldap_ou.modify(bob, hrStatus="terminated")
    ldap_ou.add_user("dee", **person("Trading"))
    before = access(p)
    audited = len(applied_changes(s))
    expected = s.plan()
    assert {c.kind.value for c in expected.changes} >= {
        "create_role",
        "grant_membership",
        "revoke_membership",
        "alter_role",
        "terminate_sessions",
    }
    # the removals phase commits on its own, before any grant or create (issue 14)
    removed = {
        **before,
        f"{p}bob": (False, frozenset()),
        f"{p}ann": (True, before[f"{p}ann"][1] - {f"{p}trade_executor"}),
    }
    removals = sum(
        1 for c in expected.changes if c.role in (f"{p}bob", f"{p}ann") and c.kind.value != "grant_membership"
    )

    points = 0
    state, recorded = before, audited
    for at in range(1, 100):
        for after in (False, True):
            killer.arm(at, after)
            with contextlib.suppress(ApplyFailed):
                s.apply()
            if not killer.fired:
                continue
            points += 1
            now = access(p)
            where = f"fault at round trip {at} ({'after' if after else 'before'})"
            assert now in (state, removed), f"{where} left a partial transaction"
            assert all(not more_access(before.get(r), now[r]) for r in now if r != f"{p}dee"), where
            assert not more_access(before[f"{p}bob"], now[f"{p}bob"])
            count = len(applied_changes(s))
            if now == state:
                assert count == recorded, f"{where}: the audit trail records changes that did not commit"
            else:
                assert count == recorded + removals, f"{where}: the committed removals are all audited"
            state, recorded = now, count
        if not killer.fired and killer.calls < at:
            break
    assert points >= 2 * len(expected.changes), f"only {points} fault points for {len(expected.changes)} changes"

    killer.arm(None)
    s.apply()
    assert not s.plan().has_changes, "the next run converges"
    after = access(p)
    assert after[f"{p}bob"] == (False, frozenset())
    assert after[f"{p}ann"] == (True, frozenset({f"{p}ops_settlement", f"{p}trade_reader"}))
    assert len(applied_changes(s)) == audited + len(expected.changes)
    print(f"fault points exercised: {points} for {len(expected.changes)} changes")


def test_mover_revoke_commits_before_the_grant(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, killer: Killer
) -> None:
    """Removals first (issue 14): the mover's revoke commits in its own phase; a
    fault before the grant leaves the mover with less access, never more, and
    the next run grants the new role."""
    p = role_prefix
    ann = ldap_ou.add_user("ann", **person("Trading"))
    s = setup(tmp_path, ldap_ou, p)
    s.apply()
    ldap_ou.modify(ann, departmentNumber="Operations")
    changes = s.plan().changes
    kinds = [c.kind.value for c in changes]
    assert kinds == ["create_role", "revoke_membership", "grant_membership"]  # the new group, then the move
    before = access(p)[f"{p}ann"]
    assert before == (True, frozenset({f"{p}trade_executor", f"{p}trade_reader"}))
    # batch round trips: savepoint, revoke (phase 1, committed); savepoint, create, savepoint, grant
    killer.arm(5, after=False)
    with pytest.raises(ApplyFailed, match="connection lost"):
        s.apply()
    assert killer.fired
    assert access(p)[f"{p}ann"] == (True, frozenset({f"{p}trade_reader"}))
    killer.arm(None)
    s.apply()
    assert access(p)[f"{p}ann"] == (True, frozenset({f"{p}ops_settlement", f"{p}trade_reader"}))
