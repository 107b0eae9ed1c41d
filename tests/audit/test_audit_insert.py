"""The audit store inserts its rows by the driver's executemany (store/audit_schema.py ``insert_rows``) and
reads the head's time from its ``at`` column: the rows are byte for byte those SQLAlchemy Core's
insert wrote, records stamped before the head take the head's time (read back from a head another
log wrote), and ``audit verify`` accepts the trail, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert

from provisioner.core.governance.audit import (
    AuditEvent,
    EventKind,
    canonical_text,
    chain_hash,
    record_time,
)
from provisioner.store.audit_schema import audit
from provisioner.store.signer import Signer
from provisioner.store.signing import verify_chain
from provisioner.store.state import StateStore
from tests.audit.pgstore import scratch_database

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

STRINGS = [
    "", "plain", "Zoë ✓", "😀 \U0001d518\U0001d52b\U0001d526 \U0010ffff", "\x00\x01\x1f\x7f\x80\x9f", "\u2028\u2029\ufeff",
    'a "quote"', "back\\slash \\u0000 \\n", '"change":null', 'x"change', "null", "}{][", "\t\r\n",
]
KEYS = ["a", "b", "change", "after", "before", "at", "kind", "", "Zoë", "😀", 'x"change', "\\", "null", "0"]
ATOMS: list[Any] = [
    None, True, False, 0, -1, 2**70, -(2**63), 1.5, -0.0, 1e16, 1e-7, 123456789.125, float("nan"), float("inf"),
    float("-inf"), T0, datetime(2026, 1, 5, 9, 0, 0, 1), date(2026, 1, 5), Decimal("1.10"), ("tu", "ple"), [], {},
]


def value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.25:
        return {rng.choice(KEYS): value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if depth < 3 and roll < 0.4:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice(STRINGS) if roll < 0.7 else rng.choice(ATOMS)


def obj(rng: random.Random) -> dict[str, Any]:
    return {rng.choice(KEYS): value(rng) for _ in range(rng.randint(0, 5))}


def change_json(rng: random.Random) -> dict[str, Any]:
    return {"kind": "grant_membership", "role": rng.choice(STRINGS), "params": obj(rng), "reasons": [obj(rng)],
            "before": obj(rng), "after": obj(rng), "summary": rng.choice(STRINGS)}


def events(rng: random.Random, n: int) -> list[AuditEvent]:
    """Records as an apply writes them (an intent, then one record per change, then another)."""
    columns = [s for s in STRINGS if "\x00" not in s]  # PostgreSQL text holds no NUL
    out: list[AuditEvent] = []
    for i in range(n):
        at = T0 + timedelta(seconds=i, microseconds=rng.choice([0, 1, 999999]))
        changes = [change_json(rng) for _ in range(rng.randint(0, 4))]
        common: dict[str, Any] = {"target": rng.choice([None, *columns]), "role": rng.choice([None, *columns]),
                                  "reason": rng.choice(STRINGS)}
        run, actor, trigger = rng.choice(columns), rng.choice(columns), rng.choice(STRINGS)
        out.append(AuditEvent(run, at, actor, trigger, EventKind.APPLY_INTENT,
                              after={"changes": changes}, **common))
        for change in changes:
            before, after = dict(change["before"]), dict(change["after"])
            out.append(AuditEvent(
                run, at, actor, trigger, EventKind.CHANGE_APPLIED, change=change, before=before, after=after, **common,
            ))
        out.append(AuditEvent(run, at, actor, trigger, EventKind.RUN_FINISHED, after=obj(rng), **common))
    return out


# ------------------------------------------------------------------ real stores


EARLY = AuditEvent("late", T0 - timedelta(days=1), "svc", "manual", EventKind.CHANGE_APPLIED,
                   change={"role": "Zoë"}, after={"n": 1.5})
"""Stamped before every other record: the store moves it to the head's time."""


def appended(url: str, signer: Signer) -> list[AuditEvent]:
    """Append a trail as the runtime does, from two logs (processes) on one store; each append
    after the first carries a record stamped before the head.  Returns the events in order."""
    trail = events(random.Random(7), 60)
    first, second = StateStore(url, signer=signer), StateStore(url, signer=signer)
    try:
        first.append(trail[:100])
        second.append([EARLY, *trail[100:]])  # the head is first's: its time is read back
        second.append([EARLY])  # the head is second's own
        first.append([EARLY])  # the head is second's, not the one first wrote last
    finally:
        first.close()
        second.close()
    return [*trail[:100], EARLY, *trail[100:], EARLY, EARLY]


def expected_contents(trail: list[AuditEvent]) -> list[dict[str, Any]]:
    """The contents as the store chains them: each ``at`` never before the previous record's."""
    out: list[dict[str, Any]] = []
    last: datetime | None = None
    for event in trail:
        content = event.content()
        at = record_time(content)
        assert at is not None
        if last is not None and at < last:
            content = {**content, "at": last.isoformat()}
        else:
            last = at
        out.append(content)
    return out


def old_insert(url: str, contents: list[dict[str, Any]]) -> None:
    """The rows as the store inserted them before: SQLAlchemy Core's executemany of dict rows."""
    store = StateStore(url)
    try:
        prev, rows = "sha256:" + "0" * 64, []
        for seq, content in enumerate(contents, start=1):
            digest = chain_hash(seq, prev, content)
            rows.append({"seq": seq, "run_id": content["run_id"], "at": record_time(content), "kind": content["kind"],
                         "actor": content["actor"], "target": content["target"], "role": content["role"],
                         "content": canonical_text(content), "prev_hash": prev, "hash": digest})
            prev = digest
        with store.engine.begin() as conn:
            conn.execute(insert(audit), rows)
    finally:
        store.close()


def check_trail(url: str, trail: list[AuditEvent], key: Ed25519PrivateKey) -> None:
    store = StateStore(url)
    try:
        report = verify_chain(store.audit, [], key.public_key(), require_signed=True)
        rows = list(store.audit.iter_rows())
    finally:
        store.close()
    assert report.ok and report.count == len(trail), report
    assert [r.column_mismatch for r in rows] == [None] * len(trail)
    for i in (100, len(rows) - 2, len(rows) - 1):  # moved to the head's time
        assert rows[i].content["at"] == rows[i - 1].content["at"] != EARLY.content()["at"]
    # equal, and in equal types: JSON reads back what was written (NaN is not equal to itself)
    assert json.dumps([r.content for r in rows]) == json.dumps(json.loads(canonical_text(
        {"c": expected_contents(trail)})
    )["c"])


def test_sqlite_trail_verifies_and_its_rows_are_those_the_old_insert_wrote(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    new, old = tmp_path / "new.db", tmp_path / "old.db"
    trail = appended(f"sqlite:///{new}", Signer(key))
    check_trail(f"sqlite:///{new}", trail, key)
    old_insert(f"sqlite:///{old}", expected_contents(trail))
    query = "SELECT seq, run_id, at, typeof(at), kind, actor, target, role, content, prev_hash, hash " \
            "FROM provisioner_audit ORDER BY seq"
    with sqlite3.connect(new) as a, sqlite3.connect(old) as b:
        mine, theirs = a.execute(query).fetchall(), b.execute(query).fetchall()
    assert len(mine) == len(trail) and mine == theirs
    # SQLAlchemy's DATETIME text: the wall time, always with microseconds, no offset
    assert mine[0][2] == trail[0].at.strftime("%Y-%m-%d %H:%M:%S.%f") and mine[0][3] == "text"


@pytest.fixture
def pg_urls() -> Iterator[tuple[str, str]]:
    with scratch_database("encnew") as new, scratch_database("encold") as old:
        yield new, old


def test_postgresql_trail_verifies_and_its_rows_are_those_the_old_insert_wrote(pg_urls: tuple[str, str]) -> None:
    new, old = pg_urls
    key = Ed25519PrivateKey.generate()
    trail = appended(new, Signer(key))
    check_trail(new, trail, key)
    old_insert(old, expected_contents(trail))
    query = "SELECT seq, run_id, at, at::text, kind, actor, target, role, content, prev_hash, hash " \
            "FROM provisioner_audit ORDER BY seq"
    found = []
    for url in (new, old):
        with psycopg.connect(url) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            found.append(conn.execute(query).fetchall())
    assert len(found[0]) == len(trail) and found[0] == found[1]
