"""What a first sync of the realistic directory cannot go below, beside ldap2pg's time (issue 19).

Issue 19 asks a first sync 3x (10,000 people) and 5x (50,000) faster than ldap2pg 5.9 while
keeping an audit record per change.  This bench measures, in one run on one directory (the
shared generator's, as ``bench/peer_realistic.py`` loads it), the parts of a first sync that
no implementation of that contract avoids, each on its own with nothing of provisioner's
planning around it, and sets their sum beside ldap2pg's first sync:

1. **start**: a fresh interpreter importing the libraries a run needs (ldap3, SQLAlchemy,
   structlog, psycopg; the product card fixes the first three);
2. **directory**: the directory's people and groups read over the wire and decoded
   (provisioner's own reader, no identities built);
3. **server**: PostgreSQL executing the statements provisioner's first sync sent (every round
   trip of its batches, captured from that run and replayed raw as the same login in the same
   transactions; the lock and transaction-id queries, two per transaction, left out);
4. **audit**: the run's audit records chained (SHA-256 per record) and inserted into a fresh
   SQLite state store, 5,000 per transaction (what a transaction of the default
   ``max_changes_per_transaction`` writes; one transaction of 300,000 records is slower).

Then ``budget``: ldap2pg's time divided by the target ratio.  When the sum of the floors
exceeds the budget, no tuning of the rest of provisioner can meet the target.

    LDAP2PG=/tmp/l2p/bin/ldap2pg .venv/bin/python -m bench.first_sync_floor 10000 50000
"""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.peer_realistic import (
    db_dsn,
    drop_database,
    loaded_directory,
    login_role,
    make_database,
    ours_config,
    peer_config,
    run_peer,
    timed,
)
from tests.support import pg

TARGET = {10_000: 3.0, 50_000: 5.0}
LIBRARIES = "import ldap3, sqlalchemy, structlog, psycopg"


def capture_worker(cfg: str, out: str) -> None:
    """``bench.peer_warm.once`` with every round trip of the apply recorded: per
    transaction (one :class:`BatchRunner` each) its database and the bytes sent."""
    from provisioner.targets import pg_apply

    sent: dict[int, tuple[str, list[bytes]]] = {}
    inner = pg_apply.BatchRunner._execute

    def execute(self: pg_apply.BatchRunner, query: sql.SQL | bytes) -> None:
        data = query if isinstance(query, bytes) else query.as_bytes(self.conn)
        sent.setdefault(id(self), (str(self.conn.info.dbname), []))[1].append(data)
        inner(self, query)

    pg_apply.BatchRunner._execute = execute  # type: ignore[method-assign]
    from bench.peer_warm import once

    once(cfg)
    Path(out).write_bytes(pickle.dumps(list(sent.values())))


def start_floor() -> float:
    """The fastest of three fresh interpreters importing the libraries."""
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", LIBRARIES], check=True)
        best = min(best, time.perf_counter() - began)
    return best


def directory_floor(cfg: Path) -> tuple[float, int]:
    """Seconds to read the people and groups with provisioner's LDAP reader, no identities built."""
    from provisioner.config import load_config
    from provisioner.core.identity.needs import source_needs
    from provisioner.mappings import load_mappings
    from provisioner.sources.ldap import LdapSource

    config = load_config(cfg)
    needs = source_needs(load_mappings(config.mappings_dir).rules, config.naming.template)  # what the run asks
    source = LdapSource(config.sources[0], needs=needs)  # type: ignore[arg-type]
    conn = source._connect()
    try:
        began = time.perf_counter()
        ldap = source.config
        people = sum(1 for _ in source.search(conn, ldap.user_base, ldap.user_filter, source.user_attrs()))
        groups = len(source.read_groups(conn))
        took = time.perf_counter() - began
    finally:
        source.close()
    assert people and groups, f"read {people} people and {groups} groups"
    return took, people


def server_floor(transactions: list[tuple[str, list[bytes]]], login: str) -> tuple[float, int]:
    """Seconds for PostgreSQL to run the captured transactions again, and their round trips."""
    round_trips = 0
    began = time.perf_counter()
    for db, queries in transactions:
        with psycopg.connect(db_dsn(db, login), autocommit=True) as conn:
            conn.execute(b"BEGIN")
            for query in queries:
                conn.execute(query)
            conn.execute(b"COMMIT")
            round_trips += len(queries) + 2
    return time.perf_counter() - began, round_trips


def audit_floor(state_db: Path, tmp: Path, chunk: int = 5000) -> tuple[float, int, float]:
    """Seconds to chain and insert the run's audit records into a fresh store, ``chunk`` per
    transaction; their count; the seconds for the same without the ``apply_intent`` records (the
    write-ahead lists of each transaction's changes that make a crash recoverable)."""
    from provisioner.core.governance.encode import split_at
    from provisioner.store.state import StateStore

    with sqlite3.connect(state_db) as source:
        rows = source.execute("SELECT content FROM provisioner_audit ORDER BY seq")
        contents = [json.loads(text) for (text,) in rows]
    stamps: dict[str, str] = {}  # one object per time, as the run's records of one append share theirs
    records = [
        (c["run_id"], c["kind"], c["actor"], c["target"], c["role"], stamps.setdefault(c["at"], c["at"]), *split_at(c))
        for c in contents
    ]
    taken = []
    for name, kept in (("all", records), ("no_intents", [r for r in records if r[1] != "apply_intent"])):
        store = StateStore(f"sqlite:///{tmp / f'floor-{name}.db'}")
        try:
            began = time.perf_counter()
            for start in range(0, len(kept), chunk):
                store.audit.append(kept[start : start + chunk])
            taken.append(time.perf_counter() - began)
        finally:
            store.close()
    return taken[0], len(records), taken[1]


def recreate(p: str) -> None:
    """Back to before the first sync: the run's roles and database dropped, the database and the
    login made again (as ``ours_config`` makes them)."""
    drop_database(f"{p}db")
    pg.drop_roles_with_prefix(p)
    make_database(f"{p}db", f"{p}app_owner")
    login_role(p)


def floor(n: int, exe: str | None) -> dict[str, Any]:
    p, q = pg.new_prefix(), pg.new_prefix()
    out: dict[str, Any] = {"n": n}
    with loaded_directory(n, "first-sync-floor-") as (tmp, server, _changes, _stats):
        try:
            if exe:
                make_database(f"{q}db", f"{q}app_owner")
                out["ldap2pg"] = run_peer(exe, peer_config(tmp, server, q, f"{q}db"))["wall"]
            make_database(f"{p}db", f"{p}app_owner")
            (tmp / "ours").mkdir()
            cfg = ours_config(tmp / "ours", server, p, f"{p}db")
            captured = tmp / "sent.pickle"
            wall, mib, output = timed(
                [sys.executable, "-m", "bench.first_sync_floor", "--capture-worker", str(cfg), str(captured)]
            )
            figures = json.loads(output.strip().splitlines()[-1])
            out["provisioner"] = {"wall": wall, "mib": mib, "changes": figures["changes"]}
            out["start"] = start_floor()
            out["directory"], out["people"] = directory_floor(cfg)
            out["audit"], out["records"], out["audit_no_intents"] = audit_floor(tmp / "ours" / "state.db", tmp)
            transactions = pickle.loads(captured.read_bytes())
            recreate(p)
            out["server"], out["round_trips"] = server_floor(transactions, f"{p}svc")
        finally:
            drop_database(f"{p}db")
            drop_database(f"{q}db")
            pg.drop_roles_with_prefix(p)
            pg.drop_roles_with_prefix(q)
    return out


def report(r: dict[str, Any]) -> None:
    ours = r["provisioner"]
    parts = [
        ("start: interpreter + " + LIBRARIES.removeprefix("import "), r["start"]),
        (f"directory: {r['people']:,} people and their groups read and decoded", r["directory"]),
        (f"server: the first sync's SQL replayed ({r['round_trips']:,} round trips)", r["server"]),
        (f"audit: {r['records']:,} records chained and stored, 5,000 per commit", r["audit"]),
    ]
    total = sum(s for _, s in parts)
    print(f"\n{r['n']:,} people: first sync, {ours['changes']:,} changes (one run)")
    print(f"  {'provisioner one-shot first sync':<66} {ours['wall']:7.2f} s  {ours['mib']:5.0f} MiB")
    for what, seconds in parts:
        print(f"    floor {what:<60} {seconds:7.2f} s")
    print(f"    {'sum of the floors':<66} {total:7.2f} s  ({total / ours['wall']:.0%} of provisioner's run)")
    print(f"    {'(the audit floor without the apply intents)':<66} {r['audit_no_intents']:7.2f} s")
    peer, target = r.get("ldap2pg"), TARGET.get(r["n"])
    if peer is None:
        print("  ldap2pg: not run (LDAP2PG is not set)")
        return
    print(f"  {'ldap2pg 5.9 first sync':<66} {peer:7.2f} s  ({peer / ours['wall']:.1f}x provisioner's time)")
    if target:
        budget = peer / target
        verdict = "below" if total < budget else "ABOVE"
        print(f"  {f'budget for {target:.0f}x (ldap2pg / {target:.0f})':<66} {budget:7.2f} s: the floors' sum is "
              f"{verdict} it ({total / budget:.0%}); the floors leave {budget - total:.2f} s for everything else")


def main(argv: list[str]) -> None:
    exe = os.environ.get("LDAP2PG")
    if not exe:
        print("LDAP2PG is not set: provisioner only (see bench/peer_realistic.py to install ldap2pg 5.9)")
    for n in [int(a) for a in argv if a.isdigit()] or [10_000]:
        report(floor(n, exe))


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--capture-worker":
        capture_worker(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1:])
