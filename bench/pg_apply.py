"""Benchmark: PostgresTarget's batched apply vs one statement per round trip
(and, for reference, psycopg pipeline mode).

For N users (default 10,000): CREATE ROLE + COMMENT ON ROLE each, plus two
GRANTs each (two groups).  Every strategy runs the same statements in one
transaction and commits; roles are dropped after each strategy.

    .venv/bin/python bench/pg_apply.py [--dsn DSN] [-n 10000] [--batch-size 500]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from provisioner.config import PostgresTargetConfig
from provisioner.core.values.model import Reason
from provisioner.core.values.plan import Change, ChangeKind, make_change
from provisioner.targets.pg_apply import compose
from provisioner.targets.postgres import PostgresTarget

DEFAULT_DSN = os.environ.get(
    "PROVISIONER_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test"
)
WHY = (Reason("bench", "bench"),)


def build_changes(prefix: str, n: int) -> list[Change]:
    groups = [f"{prefix}g1", f"{prefix}g2"]
    out = [
        make_change(ChangeKind.CREATE_ROLE, g, WHY, role_kind="group", login=False,
                    marker={"kind": "group", "id": None, "source": None})
        for g in groups
    ]
    users = [f"{prefix}u{i:05d}" for i in range(n)]
    out += [
        make_change(ChangeKind.CREATE_ROLE, u, WHY, role_kind="user", login=True,
                    valid_until=None, marker={"kind": "user", "id": u, "source": "bench"})
        for u in users
    ]
    out += [make_change(ChangeKind.GRANT_MEMBERSHIP, u, WHY, group=g) for u in users for g in groups]
    return out


def drop_prefix(dsn: str, prefix: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, %s)", (prefix,)
        ).fetchall()
        if rows:
            names = sql.SQL(", ").join(sql.Identifier(r[0]) for r in rows)
            conn.execute(sql.SQL("DROP ROLE {}").format(names))
        return len(rows)


def run_batched(dsn: str, changes: Sequence[Change], batch_size: int) -> int:
    cfg = PostgresTargetConfig(type="postgresql", name=f"bench-{uuid.uuid4().hex[:6]}", dsn=dsn)
    target = PostgresTarget(cfg, batch_size=batch_size)
    try:
        target.apply(changes)
        return target.round_trips
    finally:
        target.close()


def _statements(changes: Sequence[Change]) -> list[sql.Composed]:
    return [s for c in changes for s in compose(c).statements]


def run_per_statement(dsn: str, changes: Sequence[Change]) -> int:
    statements = _statements(changes)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        for statement in statements:
            conn.execute(statement)
    return len(statements)


def run_pipeline(dsn: str, changes: Sequence[Change]) -> int:
    statements = _statements(changes)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        cur = conn.cursor()
        with conn.pipeline():
            for statement in statements:
                cur.execute(statement)
    return 1


def timed(label: str, dsn: str, prefix: str, fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    trips = fn()
    elapsed = time.perf_counter() - start
    dropped = drop_prefix(dsn, prefix)
    print(f"{label:<28} {elapsed:8.2f} s  round trips ~{trips:<7} roles created {dropped}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--dsn", default=DEFAULT_DSN)
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=500)
    args = ap.parse_args()
    prefix = f"bench{uuid.uuid4().hex[:6]}_"
    changes = build_changes(prefix, args.n)
    print(f"{args.n} users: {len(changes)} changes, {len(_statements(changes))} statements")
    try:
        batched = timed(f"batched ({args.batch_size}/trip)", args.dsn, prefix,
                        lambda: run_batched(args.dsn, changes, args.batch_size))
        pipelined = timed("pipeline mode", args.dsn, prefix, lambda: run_pipeline(args.dsn, changes))
        single = timed("one statement per trip", args.dsn, prefix,
                       lambda: run_per_statement(args.dsn, changes))
    finally:
        drop_prefix(args.dsn, prefix)
    print(f"per-statement / batched = {single / batched:.1f}x; "
          f"pipeline / batched = {pipelined / batched:.2f}x")


if __name__ == "__main__":
    main()
