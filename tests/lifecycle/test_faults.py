"""Fault injection: the target's connection is killed (pg_terminate_backend from
a second connection) before and after each round trip of an apply that holds a
joiner, a mover and a leaver's disable.  After every fault: no leaver has more
access than before, the catalog is exactly as before (one transaction), the
mover's revoke and grant are both undone, the audit trail records no applied
change, and the next run converges."""

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

    points = 0
    for at in range(1, 100):
        for after in (False, True):
            killer.arm(at, after)
            with contextlib.suppress(ApplyFailed):
                s.apply()
            if not killer.fired:
                continue
            points += 1
            now = access(p)
            assert now == before, f"fault at round trip {at} ({'after' if after else 'before'}) left a partial apply"
            assert not more_access(before[f"{p}bob"], now[f"{p}bob"])
            assert len(applied_changes(s)) == audited, "the audit trail records changes that did not commit"
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


def test_mover_revoke_and_grant_commit_together(
    tmp_path: Path, ldap_ou: LdapOu, role_prefix: str, killer: Killer
) -> None:
    """A fault between the mover's revoke and its grant leaves both undone."""
    p = role_prefix
    ann = ldap_ou.add_user("ann", **person("Trading"))
    s = setup(tmp_path, ldap_ou, p)
    s.apply()
    ldap_ou.modify(ann, departmentNumber="Operations")
    changes = s.plan().changes
    kinds = [c.kind.value for c in changes]
    assert kinds == ["create_role", "revoke_membership", "grant_membership"]  # the new group, then the move
    before = access(p)[f"{p}ann"]
    killer.arm(kinds.index("grant_membership") + 1, after=False)  # one round trip per change: after the revoke
    with pytest.raises(ApplyFailed, match="connection lost"):
        s.apply()
    assert killer.fired
    assert access(p)[f"{p}ann"] == before == (True, frozenset({f"{p}trade_executor", f"{p}trade_reader"}))
    killer.arm(None)
    s.apply()
    assert access(p)[f"{p}ann"] == (True, frozenset({f"{p}ops_settlement", f"{p}trade_reader"}))
