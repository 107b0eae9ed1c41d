"""Benchmark: privilege plan time (inspection + diff) for a catalog of 200
roles over 5,000 tables, and over 500 tables for the growth ratio.

Each size gets a fresh database with 10 schemas of N/10 tables (two columns,
a sequence each).  Role i reads every table of schema i % 10 (wildcard, so
default privileges too), writes 5 named tables and updates one column.
For each size: the first plan (everything missing) is applied, then the
steady-state plan (nothing to do) is timed -- inspection and diff separately.

    .venv/bin/python bench/privileges_plan.py [--dsn DSN] [--roles 200] [--tables 5000]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

import psycopg
from psycopg import sql

from provisioner.config import PostgresTargetConfig
from provisioner.core.privileges.catalog import build_catalog
from provisioner.core.privileges.diff import PrivilegePolicy, plan_privileges
from provisioner.core.privileges.spec import EXTRA_KEYS, PrivilegeCatalog, build_privilege_catalog
from provisioner.targets.postgres import PostgresTarget

DEFAULT_DSN = os.environ.get("PROVISIONER_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test")
SCHEMAS = 10


def catalog(prefix: str, roles: int, per_schema: int) -> PrivilegeCatalog:
    parts = []
    for i in range(roles):
        s = f"s{i % SCHEMAS}"
        named = ", ".join(f'"t{(i * 7 + k) % per_schema}"' for k in range(5))
        parts.append(
            f"""
[role.{prefix}r{i}]
description = "bench"
owner = "bench"
extras = "revoke"
[[role.{prefix}r{i}.grants]]
on = "schema"
schema = "{s}"
privileges = ["USAGE"]
[[role.{prefix}r{i}.grants]]
on = "tables"
schema = "{s}"
privileges = ["SELECT"]
[[role.{prefix}r{i}.grants]]
on = "tables"
schema = "{s}"
objects = [{named}]
privileges = ["INSERT"]
[[role.{prefix}r{i}.grants]]
on = "columns"
schema = "{s}"
objects = ["t{i % per_schema}"]
columns = ["v"]
privileges = ["UPDATE"]
"""
        )
    cat, problems = build_catalog([("bench.toml", "".join(parts))], EXTRA_KEYS)
    model, more = build_privilege_catalog(cat)
    assert not problems + more, problems + more
    return model


def dsn_with_db(dsn: str, db: str) -> str:
    return " ".join([p for p in dsn.split() if not p.startswith("dbname=")] + [f"dbname={db}"])


def run_size(dsn: str, prefix: str, roles: int, tables: int) -> dict[str, float]:
    db = f"{prefix}db{tables}"
    per_schema = tables // SCHEMAS
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    try:
        with psycopg.connect(dsn_with_db(dsn, db), autocommit=True) as conn:
            for s in range(SCHEMAS):
                conn.execute(f"CREATE SCHEMA s{s}")
                conn.execute("; ".join(f"CREATE TABLE s{s}.t{t} (id serial, v text)" for t in range(per_schema)))
        model = catalog(prefix, roles, per_schema)
        cfg = PostgresTargetConfig.model_validate(
            {"type": "postgresql", "name": f"bench-{prefix}", "dsn": dsn_with_db(dsn, db), "manage_privileges": True}
        )
        target = PostgresTarget(cfg)
        try:
            state = target.inspect()
            changes, _ = plan_privileges(model, state, PrivilegePolicy())
            t0 = time.perf_counter()
            target.apply([c for c in changes if c.kind.value == "create_role"])
            target.apply([c for c in changes if c.kind.value != "create_role"])
            applied = time.perf_counter() - t0
            before = target.statements_executed
            t0 = time.perf_counter()
            state = target.inspect()
            t1 = time.perf_counter()
            steady, _ = plan_privileges(model, state, PrivilegePolicy())
            t2 = time.perf_counter()
            queries = target.statements_executed - before
        finally:
            target.close()
        assert steady == [], [c.describe() for c in steady[:5]]
        assert state.privileges is not None
        return {
            "tables": tables,
            "changes": len(changes),
            "grants": len(state.privileges.grants),
            "apply": applied,
            "inspect": t1 - t0,
            "diff": t2 - t1,
            "plan": t2 - t0,
            "queries": queries,
        }
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
            names = conn.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (prefix,)).fetchall()
            if names:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.SQL(", ").join(sql.Identifier(n[0]) for n in names)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dsn", default=DEFAULT_DSN)
    ap.add_argument("--roles", type=int, default=200)
    ap.add_argument("--tables", type=int, default=5000)
    args = ap.parse_args()
    results = []
    for tables in (args.tables // 10, args.tables):
        prefix = f"b{uuid.uuid4().hex[:8]}_"
        r = run_size(args.dsn, prefix, args.roles, tables)
        results.append(r)
        print(
            f"{args.roles} roles x {tables} tables: {r['grants']:.0f} grants held, first plan {r['changes']:.0f} "
            f"changes (applied in {r['apply']:.1f}s); steady plan {r['plan']:.2f}s "
            f"(inspect {r['inspect']:.2f}s in {r['queries']:.0f} queries, diff {r['diff']:.2f}s)"
        )
    small, large = results
    print(
        f"ratio {large['tables']:.0f}/{small['tables']:.0f} tables: plan time x{large['plan'] / small['plan']:.1f} "
        f"(grants x{large['grants'] / small['grants']:.1f}); inspection queries {small['queries']:.0f} vs "
        f"{large['queries']:.0f}"
    )


if __name__ == "__main__":
    main()
