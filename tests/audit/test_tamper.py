"""Tampering with a 10,000-record chain: every kind is detected and the first bad record named.

Two levels: the streaming verifier over the records in memory at sampled positions
(first, last, middle and a random sample of 50 per kind), and the real store: SQL
tampering on a copy of a bulk-loaded SQLite file, verified with a signed checkpoint.
"""

from __future__ import annotations

import random
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.core.governance.audit import ChainProblem, ChainVerifier, chain_hash
from provisioner.store.signing import sign_head, verify_chain
from provisioner.store.state import StateStore
from tests.audit.chain import chain, sql, sqlite_store

N = 10_000
Row = tuple[int, dict[str, Any], str, str]


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return chain(N)


def positions(lo: int, hi: int, seed: int) -> list[int]:
    """first, last, middle and a random sample of 50 (seeded per kind)."""
    rnd = random.Random(seed)
    return sorted({lo, hi, (lo + hi) // 2, *rnd.sample(range(lo, hi + 1), 50)})


def run(rows: list[Row], pins: dict[int, str] | None = None) -> tuple[ChainProblem | None, int]:
    v = ChainVerifier(pins)
    for r in rows:
        if v.feed(*r):
            break
    return v.finish(), v.count


def test_intact_chain_verifies(rows: list[Row]) -> None:
    problem, count = run(rows, {N: rows[-1][3]})
    assert problem is None
    assert count == N


def edit(rows: list[Row], k: int) -> list[Row]:
    out = list(rows)
    seq, c, prev, h = out[k - 1]
    out[k - 1] = (seq, {**c, "role": "mallory"}, prev, h)
    return out


def delete(rows: list[Row], k: int) -> list[Row]:
    return rows[: k - 1] + rows[k:]


def insert_after(rows: list[Row], k: int) -> list[Row]:
    """A well-forged record after record k (valid hash and link), later records renumbered."""
    prev = rows[k - 1][3] if k else rows[0][2]
    forged = {**rows[k - 1 if k else 0][1], "role": "mallory", "reason": "forged"}
    new = (k + 1, forged, prev, chain_hash(k + 1, prev, forged))
    shifted = [(s + 1, c, p, h) for s, c, p, h in rows[k:]]
    return [*rows[:k], new, *shifted]


def swap(rows: list[Row], i: int, j: int) -> list[Row]:
    """Records i and j trade places (each keeps its stored prev_hash and hash)."""
    out = list(rows)
    _, ci, pi, hi = rows[i - 1]
    _, cj, pj, hj = rows[j - 1]
    out[i - 1], out[j - 1] = (i, cj, pj, hj), (j, ci, pi, hi)
    return out


CASES: list[tuple[str, Callable[[list[Row], int], list[Row]], int, int, Callable[[int], int], str]] = [
    ("edit", edit, 1, N, lambda k: k, "edited"),
    ("delete", delete, 1, N - 1, lambda k: k, "deleted"),
    ("insert", insert_after, 0, N - 1, lambda k: k + 1, "inserted"),
    ("reorder-adjacent", lambda r, k: swap(r, k, k + 1), 1, N - 1, lambda k: k, "moved"),
    ("reorder-far", lambda r, k: swap(r, k, min(N, k + 1 + (k * 7919) % 500)), 1, N - 1, lambda k: k, "moved"),
]


@pytest.mark.parametrize(("name", "tamper", "lo", "hi", "first_bad", "kind"), CASES, ids=[c[0] for c in CASES])
def test_each_tampering_is_named(
    rows: list[Row],
    name: str,
    tamper: Callable[[list[Row], int], list[Row]],
    lo: int,
    hi: int,
    first_bad: Callable[[int], int],
    kind: str,
) -> None:
    misses = []
    for k in positions(lo, hi, seed=zlib.crc32(name.encode())):
        problem, _ = run(tamper(rows, k))
        if problem is None or (problem.seq, problem.kind) != (first_bad(k), kind):
            misses.append((k, problem))
    assert misses == []


def test_tail_truncation_needs_and_uses_the_checkpoint(rows: list[Row]) -> None:
    pins = {N: rows[-1][3]}
    for cut in (1, 2, 17, 500, N - 1):
        problem, _ = run(rows[: N - cut], pins)
        assert problem is not None
        assert (problem.seq, problem.kind) == (N - cut + 1, "truncated")
    assert run(rows[: N - 1])[0] is None  # without a checkpoint a shorter chain looks whole


def test_rewritten_chain_is_caught_by_the_checkpoint(rows: list[Row]) -> None:
    """An attacker who edits record 4000 and recomputes every later hash still fails the pin."""
    k = 4000
    out = rows[: k - 1]
    prev = out[-1][3]
    for seq, c, _, _ in rows[k - 1 :]:
        c2 = {**c, "role": "mallory"} if seq == k else c
        h = chain_hash(seq, prev, c2)
        out.append((seq, c2, prev, h))
        prev = h
    assert run(out)[0] is None
    problem, _ = run(out, {N: rows[-1][3]})
    assert problem is not None and (problem.seq, problem.kind) == (N, "checkpoint")
    problem, _ = run(out, {5000: rows[4999][3], N: rows[-1][3]})
    assert problem is not None and problem.seq == 5000  # more checkpoints, narrower window


# ------------------------------------------------------------------ the real store


@pytest.fixture(scope="module")
def signed_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Ed25519PrivateKey]:
    path = tmp_path_factory.mktemp("audit") / "chain.db"
    store = sqlite_store(path, N)
    key = Ed25519PrivateKey.generate()
    sign_head(store.audit, key, adopt=True)  # the bulk-loaded trail predates the key
    store.close()
    return path, key


def db_verify(path: Path, key: Ed25519PrivateKey) -> ChainProblem | None:
    store = StateStore(f"sqlite:///{path}")
    try:
        latest = store.audit.latest_checkpoint()
        assert latest is not None
        report = verify_chain(store.audit, [("stored", latest)], key.public_key())
        assert report.checkpoint_problems == []
        return report.problem
    finally:
        store.close()


def _swap_sql(path: Path, i: int, j: int) -> None:
    sql(path, "UPDATE provisioner_audit SET seq = -1 WHERE seq = ?", i)
    sql(path, "UPDATE provisioner_audit SET seq = ? WHERE seq = ?", i, j)
    sql(path, "UPDATE provisioner_audit SET seq = ? WHERE seq = -1", j)


def _insert_sql(path: Path, k: int) -> None:
    """Renumber records after k and insert a well-forged record k+1."""
    import json
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("UPDATE provisioner_audit SET seq = -seq - 1 WHERE seq > ?", (k,))
        conn.execute("UPDATE provisioner_audit SET seq = -seq WHERE seq < 0")
        content_text, prev = conn.execute("SELECT content, hash FROM provisioner_audit WHERE seq = ?", (k,)).fetchone()
        forged = {**json.loads(content_text), "reason": "forged"}
        conn.execute(
            "INSERT INTO provisioner_audit (seq, run_id, at, kind, actor, target, role, content, prev_hash, hash) "
            "SELECT ?, run_id, at, kind, actor, target, role, ?, ?, ? FROM provisioner_audit WHERE seq = ?",
            (k + 1, json.dumps(forged), prev, chain_hash(k + 1, prev, forged), k),
        )
        conn.commit()
    finally:
        conn.close()


SQL_CASES: list[tuple[str, Callable[[Path, int], None], Callable[[int], tuple[int, str]]]] = [
    ("edit-content", lambda p, k: sql(p, "UPDATE provisioner_audit SET content = json_set(content, '$.reason', 'forged') WHERE seq = ?", k), lambda k: (k, "edited")),
    ("edit-column", lambda p, k: sql(p, "UPDATE provisioner_audit SET role = 'mallory' WHERE seq = ?", k), lambda k: (k, "edited")),
    ("delete", lambda p, k: sql(p, "DELETE FROM provisioner_audit WHERE seq = ?", k), lambda k: (k, "deleted") if k < N else (k, "truncated")),
    ("insert", lambda p, k: _insert_sql(p, k), lambda k: (k + 1, "inserted") if k < N - 1 else (k + 1, "checkpoint")),
    ("reorder", lambda p, k: _swap_sql(p, k, k + 1 if k < N else k - 1), lambda k: (k if k < N else k - 1, "moved")),
    ("truncate-tail", lambda p, k: sql(p, "DELETE FROM provisioner_audit WHERE seq >= ?", k), lambda k: (k, "truncated")),
]


@pytest.mark.parametrize(("name", "tamper", "expect"), SQL_CASES, ids=[c[0] for c in SQL_CASES])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_sql_tampering_on_the_store(
    signed_db: tuple[Path, Ed25519PrivateKey],
    tmp_path: Path,
    name: str,
    tamper: Callable[[Path, int], None],
    expect: Callable[[int], tuple[int, str]],
    where: str,
) -> None:
    src, key = signed_db
    k = {"first": 1, "middle": N // 2, "last": N}[where]
    if name == "insert":
        k = {"first": 1, "middle": N // 2, "last": N - 1}[where]
    if name == "truncate-tail" and where == "first":
        k = 2  # keep one record
    path = tmp_path / "copy.db"
    shutil.copy(src, path)
    assert db_verify(path, key) is None
    tamper(path, k)
    problem = db_verify(path, key)
    assert problem is not None
    assert (problem.seq, problem.kind) == expect(k), problem.describe()
