"""A warm run's plan fingerprint with and without the daemon's memo (issue 19).

An incremental inspect returns a new roles mapping whose unchanged roles are the very same
objects; the daemon's ``FingerprintMemo`` keeps each role's row digest while the role is the same
object, so only changed roles are encoded again.  Prints milliseconds per fingerprint, five
times each, for N managed login roles (default 10,000) and N/20 groups:

    .venv/bin/python -m bench.fingerprint [N]
"""

from __future__ import annotations

import sys
import time

from provisioner.core.values.model import ActualRole, ActualState, FingerprintMemo, Marker, RoleKind


def main(n: int) -> None:
    g = max(1, n // 20)
    groups = [ActualRole(f"grp_{i}", False, marker=Marker(RoleKind.GROUP)) for i in range(g)]
    users = [
        ActualRole(
            f"user{i}",
            True,
            marker=Marker(RoleKind.USER, str(i), "ldap", granted=frozenset({f"grp_{i % g}", f"grp_{i * 7 % g}"})),
            member_of=frozenset({f"grp_{i % g}", f"grp_{i * 7 % g}", f"grp_{i * 13 % g}"}),
        )
        for i in range(n)
    ]
    roles = {r.name: r for r in groups + users}
    scope, sources = frozenset({"user1", "user2"}), frozenset({"ldap"})
    print(f"{n:,} login roles, {g:,} groups; a new roles mapping of the same role objects each time")
    for label, memo in (("without memo", None), ("with memo (the daemon)", FingerprintMemo())):
        took = []
        for _ in range(5):
            state = ActualState("pg", dict(roles), "svc")
            started = time.perf_counter()
            state.fingerprint(scope, sources, memo)
            took.append((time.perf_counter() - started) * 1000)
        print(f"  {label:24} " + " ".join(f"{t:6.1f}" for t in took) + " ms (the first with memo fills it)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
