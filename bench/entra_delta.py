"""Benchmark: Entra ID delta sync of N users (default 100,000) against the local
Graph server (tests/support/graph_server.py, HTTPS on 127.0.0.1, real msal).

Figures, all in one run:
  * initial round (users/delta + groups/delta from scratch, records saved to a
    SQLite state store),
  * a no-op delta round (nothing changed),
  * a delta round with 1% of the users changed (and a few deleted),
  * for reference, a full read without delta (/users with $expand=manager,
    100 per page as Graph returns with $expand, plus transitiveMembers),
and checks that the delta snapshot equals the full-read snapshot.

    .venv/bin/python bench/entra_delta.py [-n 100000] [--groups 50]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.config import EntraSourceConfig
from provisioner.core.values.model import SourceSnapshot
from provisioner.logs import configure
from provisioner.sources.entra import EntraSource
from provisioner.store.state import StateStore
from tests.support.graph_server import GraphServer

DEPARTMENTS = ["Trading", "Operations", "Risk", "Compliance", "IT", "Legal", "Finance", "Research"]


def populate(graph: GraphServer, n: int, groups: int, rnd: random.Random) -> list[str]:
    ids = []
    for i in range(n):
        ids.append(
            graph.add_user(
                f"user{i:06d}@contoso.com",
                department=rnd.choice(DEPARTMENTS),
                jobTitle=rnd.choice(["Analyst", "Trader", "Associate", "Engineer"]),
                employeeType="Employee",
                employeeId=f"E{i:06d}",
                employeeHireDate="2020-01-01T00:00:00Z",
            )
        )
    for i in range(1, n, 10):
        graph.set_manager(ids[i], ids[i - 1])
    desk_members = rnd.sample(ids, min(n, 2000))
    inner = graph.add_group("desk-heads", desk_members[:200])
    graph.add_group("approvers", [inner, *desk_members[200:1000]])
    for g in range(groups):
        graph.add_group(f"team-{g:03d}", rnd.sample(ids, min(n, 500)))
    return ids


def timed(source: EntraSource) -> tuple[SourceSnapshot, float]:
    started = time.perf_counter()
    snap = source.read()
    return snap, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    configure("console", "warning")
    rnd = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="entra-bench-"))
    graph = GraphServer(work / "graph").start()
    os.environ["BENCH_ENTRA_SECRET"] = graph.client_secret
    t0 = time.perf_counter()
    ids = populate(graph, args.n, args.groups, rnd)
    print(f"directory: {args.n:,} users, {len(graph.groups)} groups (built in {time.perf_counter() - t0:.1f} s)")
    cfg = EntraSourceConfig(
        type="entra",
        name="bench-" + secrets.token_hex(3),
        tenant_id=graph.tenant,
        client_id=graph.client_id,
        client_secret="env:BENCH_ENTRA_SECRET",  # type: ignore[arg-type]
        authority_host=graph.url,
        graph_url=graph.url,
        ca_file=str(graph.ca_file),
    )
    store = StateStore(f"sqlite:///{work / 'state.db'}")
    wanted = ("approvers", "desk-heads")
    source = EntraSource(cfg, store, wanted)
    try:
        initial, t_initial = timed(source)
        r_initial = source.info.requests
        noop, t_noop = timed(source)
        r_noop = source.info.requests
        changed = rnd.sample(ids, args.n // 100)
        for uid in changed[:-10]:
            graph.update_user(uid, department=rnd.choice(DEPARTMENTS), jobTitle="Moved")
        for uid in changed[-10:]:
            graph.delete_user(uid)
        churn, t_churn = timed(source)
        r_churn, n_changed, n_removed = source.info.requests, source.info.users_changed, source.info.users_removed
    finally:
        source.close()
    full_source = EntraSource(cfg.model_copy(update={"delta": False}), None, wanted)
    try:
        full, t_full = timed(full_source)
        r_full = full_source.info.requests
    finally:
        full_source.close()
    store.close()
    graph.stop()
    same = churn.identities == full.identities
    print(f"{'round':<46}{'seconds':>9}{'requests':>10}{'identities':>12}")
    for label, secs, reqs, snap in (
        ("initial delta round (resync)", t_initial, r_initial, initial),
        ("no-op delta round", t_noop, r_noop, noop),
        (f"delta round, 1% changed ({n_changed:,} upd, {n_removed} del)", t_churn, r_churn, churn),
        ("full read without delta", t_full, r_full, full),
    ):
        print(f"{label:<46}{secs:>9.2f}{reqs:>10}{len(snap.identities):>12,}")
    print(f"no-op delta / initial round:      {t_noop / t_initial:.3f}")
    print(f"1% delta / initial round:         {t_churn / t_initial:.3f}")
    print(f"1% delta / full read (no delta):  {t_churn / t_full:.3f}")
    print(f"delta snapshot == full-read snapshot: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
