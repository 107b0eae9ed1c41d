"""Benchmark: `audit verify` over chains of growing size in a SQLite store.

Bulk-loads chains of N, 2N and 4N records (default N = 10,000), then times the
full streaming verification (hash and link of every record, checkpoint
signature and head) of each and prints records/s and the time ratios, which
stay near 2 and 4 when verification is linear.  Also prints the peak memory
of each verification (a separate tracemalloc pass), which stays flat when it streams.

    .venv/bin/python bench/audit_verify.py [-n 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.store.signing import sign_head, verify_chain
from provisioner.store.state import StateStore

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def content(i: int) -> dict[str, Any]:
    """A change_applied record of the size the runtime writes."""
    user, group = f"user{i % 997:03d}", ("trade_executor", "trade_reader", "ops_settlement")[i % 3]
    change = {
        "kind": "grant_membership", "role": user, "params": {"group": group},
        "reasons": [{"rule": "desk-traders", "text": "matched", "attributes": {"department": "Trading"}}],
        "before": {}, "after": {}, "summary": f"grant {group} to {user}",
    }
    return {
        "run_id": f"run-{i // 100:08d}", "at": (T0 + timedelta(seconds=i)).isoformat(), "actor": "svc",
        "trigger": "schedule", "kind": "change_applied", "target": "pg", "role": user, "change": change,
        "reason": "desk-traders: department=Trading", "before": {"member_of": []}, "after": {"member_of": [group]},
    }


def measure(n: int, tmp: Path) -> tuple[float, float, int]:
    store = StateStore(f"sqlite:///{tmp / f'chain-{n}.db'}")
    try:
        t0 = time.perf_counter()
        store.audit.append_contents(content(i) for i in range(1, n + 1))
        load = time.perf_counter() - t0
        key = Ed25519PrivateKey.generate()
        cp = sign_head(store.audit, key)
        t0 = time.perf_counter()
        report = verify_chain(store.audit, [("stored", cp)], key.public_key())
        took = time.perf_counter() - t0
        assert report.ok and report.count == n, report
        tracemalloc.start()  # a second pass for memory only: tracing slows it down
        verify_chain(store.audit, [("stored", cp)], key.public_key())
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return load, took, peak
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rows = [(k * args.n, *measure(k * args.n, Path(d))) for k in (1, 2, 4)]
    base = rows[0][2]
    print(f"{'records':>8}  {'bulk load s':>11}  {'verify s':>8}  {'records/s':>10}  {'ratio':>5}  {'peak MiB':>8}")
    for n, load, took, peak in rows:
        print(f"{n:>8}  {load:>11.2f}  {took:>8.2f}  {n / took:>10,.0f}  {took / base:>5.2f}  {peak / 2**20:>8.1f}")


if __name__ == "__main__":
    main()
