"""Benchmark: the audit records of a first sync's apply, appended to a fresh SQLite store.

N changes (default 60,000: one joiner's ``create_role`` and five ``grant_membership`` each,
as a first sync plans them) go through the engine's own transaction step
(``engine.execute._apply_transaction``) against a target that applies nothing, in
transactions of ``--per-transaction`` changes (default 5,000, the default
``max_changes_per_transaction``): per transaction one ``apply_intent`` record listing
every change, one ``apply_begun``, one ``change_applied`` per change and one
``apply_completed``.  Prints seconds (wall and CPU) and records/s of the whole apply.

    .venv/bin/python -m bench.audit_append [-n 60000] [--rounds 3] [--tree /tmp/base --tree .]

``--tree DIR`` (repeatable): a source tree (``git archive HEAD | tar -x -C DIR``) run with
``PYTHONPATH=DIR`` in its own process; the trees alternate within each round (interleaved A/B).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import provisioner
from provisioner.core.values.model import Marker, Reason, RoleKind
from provisioner.core.values.plan import Change, ChangeKind, make_change, transactions
from provisioner.engine.context import RunContext
from provisioner.engine.execute import _apply_transaction
from provisioner.engine.gcpause import paused_gc
from provisioner.logs import configure
from provisioner.store.state import StateStore
from provisioner.targets.base import ApplyResult

GROUPS = ("readers", "dept_trading", "dept_ops", "grp_desk_a", "grp_desk_b", "grp_settlement", "grp_risk")


def changes(n: int) -> list[Change]:
    """``n`` changes: per person a ``create_role`` with its marker and five memberships."""
    out: list[Change] = []
    i = 0
    while len(out) < n:
        user = f"bench_user{i:06d}"
        granted = frozenset(GROUPS[(i + k) % len(GROUPS)] for k in range(5))
        marker = Marker(RoleKind.USER, f"uid={i:06d}", "ldap", "bench", granted)
        joiner = Reason("lifecycle:joiner", f"new identity 'user{i:06d}' (uid={i:06d}) in ldap")
        out.append(make_change(
            ChangeKind.CREATE_ROLE, user, [joiner], role_kind="user", login=True, valid_until=None,
            marker=marker.to_json(), after={"exists": True, "login": True},
        ))
        rule = Reason("people", "matched", (("department", "Trading"), ("title", "Equity Trader — Zoë's desk")))
        for group in sorted(granted):
            out.append(make_change(
                ChangeKind.GRANT_MEMBERSHIP, user, [rule], before={"member": False}, after={"member": True}, group=group
            ))
        i += 1
    return out[:n]


class Applies:
    """A target that commits every change at once (nothing is executed).  Not the in-package
    ``MemoryTarget``: that one applies for real, and its catalog work (6.4-6.6 s CPU in all at
    60,000 changes, against 2.6-2.9 s here) would hide the audit's cost this bench measures."""

    def apply(
        self,
        changes: Sequence[Change],
        on_change: Callable[[Change], None] | None = None,
        on_begin: Callable[[str | None], None] | None = None,
    ) -> ApplyResult:
        if on_begin is not None:
            on_begin("4711")
        for change in changes:
            if on_change is not None:
                on_change(change)
        return ApplyResult(tuple(changes), len(changes))


def worker(n: int, per_transaction: int) -> dict[str, Any]:
    configure("json", "warning")  # as a first sync runs (bench/peer_realistic.py): no line per change
    planned = changes(n)
    chunks = transactions(planned, per_transaction)
    with tempfile.TemporaryDirectory(prefix="audit-append-") as tmp:
        store = StateStore(f"sqlite:///{Path(tmp) / 'state.db'}")
        try:
            ctx = RunContext(datetime.now(UTC), "bench", "schedule", store=store)
            done = [0]
            wall, cpu = time.perf_counter(), time.process_time()
            with paused_gc():  # as a run is made (engine/gcpause.py)
                for chunk in chunks:
                    _apply_transaction("pg", chunk, Applies(), ctx, done, n)  # type: ignore[arg-type]
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            records = store.audit.count()
        finally:
            store.close()
    assert records == n + 3 * len(chunks), records
    return {"provisioner": str(Path(provisioner.__file__).parent.parent), "changes": n, "records": records,
            "wall": round(wall, 3), "cpu": round(cpu, 3), "records_per_s": round(records / cpu)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=60_000)
    ap.add_argument("--per-transaction", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--tree", action="append", type=Path, default=[])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.n, args.per_transaction)), flush=True)
        return
    trees = [t.resolve() for t in args.tree] or [Path.cwd()]
    cpu: dict[Path, list[float]] = {t: [] for t in trees}
    for r in range(args.rounds):
        for tree in trees:
            # this very script, importing the tree's provisioner
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "-n", str(args.n),
                   "--per-transaction", str(args.per_transaction)]
            env = {**os.environ, "PYTHONPATH": str(tree)}
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree, check=True)
            figures = json.loads(res.stdout.strip().splitlines()[-1])
            cpu[tree].append(figures["cpu"])
            print(json.dumps({"round": r, "tree": str(tree), **figures}), flush=True)
    for tree, took in cpu.items():
        best = min(took)
        print(f"{tree}: best of {len(took)}: {best:.2f} s CPU", flush=True)


if __name__ == "__main__":
    main()
