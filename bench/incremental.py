"""Incremental versus full directory reads against a real slapd.

For N synthetic users (default 100,000) this prints, measured in one process
and one run: a full-read no-op (no state store), the first incremental run (a
full read that stores the snapshot), incremental no-ops in a warm process (the
daemon: stored snapshot and grant memo in memory) and a cold one (a fresh
process: snapshot decoded from the state store, empty memo), and incremental
runs after 100 users changed (department / leaver) -- with the deletion scan
every run (the default) and with ``deletion_scan_every = "1h"`` -- each as
source read plus the desired-state computation over the bench rules, and the
ratios between them.

    .venv/bin/python -m bench.incremental            # 100,000 users
    .venv/bin/python -m bench.incremental 10000 50000
"""

from __future__ import annotations

import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from bench.ldap_fixture import PEOPLE, _uid, generate_directory
from bench.sync import RULES
from provisioner.core.identity.desired import desired_state
from provisioner.core.identity.lifecycle import LifecyclePolicy
from provisioner.core.identity.memo import GrantMemo
from provisioner.core.identity.naming import NamingPolicy
from provisioner.core.identity.needs import source_needs
from provisioner.core.identity.rules import build_ruleset
from provisioner.engine.gcpause import paused_gc
from provisioner.sources.ldap import LdapSource
from provisioner.sources.memory import SourceMemory
from provisioner.store.state import StateStore
from tests.support.slapd import Slapd


def _aged(i: int) -> str:
    """modifyTimestamps spread over 2023, one entry a minute: written long before
    the runs measured, as in a directory that has lived for a while."""
    return (datetime(2023, 1, 1, tzinfo=UTC) + timedelta(minutes=i)).strftime("%Y%m%d%H%M%SZ")


def load_aged(n: int) -> tuple[Slapd, float]:
    server = Slapd(sizelimit="unlimited")
    entries = generate_directory(n, max(1, min(3000, n // 5)))
    records = ((dn, {**attrs, "modifyTimestamp": _aged(i)}) for i, (dn, attrs) in enumerate(entries))
    try:
        took = server.slapadd(records)
        server.start()
    except BaseException:
        server.cleanup()
        raise
    return server, took


def _run(
    cfg: Any, store: StateStore | None, rules: Any, memo: GrantMemo | None, memory: SourceMemory | None = None
) -> tuple[float, float, str, int]:
    needs = source_needs(rules)
    started = time.perf_counter()
    source = LdapSource(cfg, store=store, needs=needs, memory=memory)
    snap = source.read()
    read = time.perf_counter() - started
    naming, now = NamingPolicy("{username}", "b_", 63), datetime.now(UTC)
    with paused_gc():  # as pipeline.compute_desired does
        desired = desired_state((snap,), rules, naming, LifecyclePolicy(), now, memo)
    took = time.perf_counter() - started
    stats = source.last_stats
    mode = stats.get("mode", "no store")
    if mode == "incremental":
        scan = "scan" if stats["deletion_scan"] else "no scan"
        warm = "warm" if stats["warm"] else "cold"
        mode += f" {warm}, {scan} ({stats['users_changed']} users re-read, {stats['users_gone']} gone)"
    return took, read, mode, len(desired.users)


def measure(n: int) -> None:
    rules, problems = build_ruleset([("bench.toml", RULES.format(p="b_"))])
    assert not problems, problems
    server, load = load_aged(n)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = StateStore(f"sqlite:///{Path(tmp) / 'state.db'}")
            cfg = server.source_config(page_size=1000, timeout=120.0)
            hourly = server.source_config(page_size=1000, timeout=120.0, deletion_scan_every="1h")
            daemon = GrantMemo()  # kept across runs, as the daemon keeps it
            rows = [("full read, no state store", *_run(cfg, None, rules, None))]
            sources = SourceMemory()  # the daemon's, kept across its runs (its WarmState's)
            rows.append(("incremental: first run (full)", *_run(cfg, store, rules, daemon, sources)))
            rows.append(("incremental: no-op, warm", *_run(cfg, store, rules, daemon, sources)))
            sources.forget()
            rows.append(("incremental: no-op, cold process", *_run(cfg, store, rules, None, sources)))
            rng = random.Random(3)
            sample = rng.sample(range(n), 200)
            _change(server, sample[:100])
            rows.append(("incremental: 100 changed, warm", *_run(cfg, store, rules, daemon, sources)))
            rows.append(("no-op, warm, scan hourly", *_run(hourly, store, rules, daemon, sources)))
            _change(server, sample[100:])
            rows.append(("100 changed, warm, scan hourly", *_run(hourly, store, rules, daemon, sources)))
            store.close()
    finally:
        server.cleanup()
    full = rows[0][1]
    print(f"\nN = {n:,} users (slapadd {load:.1f}s, not part of a run)")
    print(f"  {'run':32} {'total s':>8} {'read s':>7} {'ratio':>6}")
    for label, took, read, mode, users in rows:
        print(f"  {label:32} {took:8.2f} {read:7.2f}  x{took / full:5.2f}   [{mode}; {users} desired users]")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def _change(server: Slapd, users: list[int]) -> None:
    for k, i in enumerate(users):
        change = {"hrStatus": "terminated"} if k % 2 else {"departmentNumber": "Compliance"}
        server.modify(f"uid={_uid(i)},{PEOPLE}", **change)


def main(argv: list[str]) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    for n in [int(a) for a in argv] or [100_000]:
        measure(n)


if __name__ == "__main__":
    main(sys.argv[1:])
