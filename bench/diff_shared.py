"""Benchmark: the diff of a warm no-op run on a shared cluster.

N people, each with a login role of this installation (its marker, its ledger) and three of
20 group roles, and F roles of other tenants on the same cluster: half of them marked by
another installation, half made by hand.  The diff runs twice with one :class:`DiffMemo`
(the daemon's): the second is the warm run, where every person is a memo hit and what is
left is the passes over the whole catalog (renames, vanished roles, ownership notices).
Prints the best of ``--rounds`` warm diffs, in seconds, per foreign-role count.

    .venv/bin/python -m bench.diff_shared [-n 50000] [--foreign 0 --foreign 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from provisioner.core.ownership.policy import DiffPolicy
from provisioner.core.reconcile.diff import diff
from provisioner.core.reconcile.diffmemo import DiffMemo
from provisioner.core.values.model import (
    ActualRole,
    ActualState,
    DesiredState,
    DesiredUser,
    Lifecycle,
    Marker,
    Reason,
    RoleKind,
)

INSTANCE = "bench"
NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def states(n: int, foreign: int) -> tuple[DesiredState, ActualState]:
    groups = [f"grp_{g:02d}" for g in range(20)]
    active = Reason("lifecycle:active", "active in the directory")
    users: dict[str, DesiredUser] = {}
    roles: dict[str, ActualRole] = {}
    for g in groups:
        roles[g] = ActualRole(g, login=False, marker=Marker(RoleKind.GROUP, instance=INSTANCE))
    for i in range(n):
        name = f"u{i:06d}"
        member_of = frozenset(groups[(i + k * 7) % 20] for k in range(3))
        rule = Reason("rule:groups", f"member of {sorted(member_of)}")
        users[name] = DesiredUser(
            name, f"id{i}", name, "ldap", Lifecycle.ACTIVE, active, None, {g: (rule,) for g in member_of}
        )
        ours = Marker(RoleKind.USER, f"id{i}", "ldap", INSTANCE, member_of)
        roles[name] = ActualRole(name, login=True, marker=ours, member_of=member_of)
    for j in range(foreign):
        name = f"other_{j:06d}"
        marker = Marker(RoleKind.USER, f"x{j}", "hr", "another") if j % 2 else None
        roles[name] = ActualRole(name, login=True, marker=marker, member_of=frozenset({"their_group"}))
    desired = DesiredState(users, frozenset(groups), frozenset({"ldap"}))
    actual = ActualState("pg", dict(sorted(roles.items())), "provisioner")
    return desired, actual


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=50_000)
    parser.add_argument("--foreign", type=int, action="append")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    policy = DiffPolicy(instance=INSTANCE)
    for foreign in args.foreign or [0, 2 * args.n]:
        desired, actual = states(args.n, foreign)
        memo = DiffMemo()
        changes, _ = diff(desired, actual, policy, NOW, memo)
        assert not changes, f"the bench's states should plan nothing, planned {len(changes)}"
        best = float("inf")
        for _ in range(args.rounds):
            started = time.perf_counter()
            changes, _ = diff(desired, actual, policy, NOW, memo)
            best = min(best, time.perf_counter() - started)
            assert not changes
        print(f"{args.n:,} people, {foreign:,} other tenants' roles: warm diff {best:.3f} s (best of {args.rounds})")


if __name__ == "__main__":
    main()
