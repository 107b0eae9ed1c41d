"""Evidence that cannot be forged or lost (issue 17): verify before sign, chained checkpoints
that tile the trail, checkpoints shipped off the host, monotonic time, the run history in the
chain, and the documented hash formula.

The tamper suite attacks a signed SQLite trail with SQL, each attack checked with and without
the shipped checkpoints, each with its own message; the laundering attack runs against the
real PostgreSQL with the documented insert-only writer."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.config import load_config
from provisioner.core.governance.audit import AuditEvent, EventKind, chain_hash
from provisioner.engine.context import RunContext
from provisioner.engine.installation import open_store
from provisioner.engine.record import recorded_run
from provisioner.errors import ProvisionerError
from provisioner.store.shipping import DirectorySink, Shipper, read_shipped
from provisioner.store.signer import Signer
from provisioner.store.signing import verify_chain
from provisioner.store.state import StateStore
from tests.audit.chain import T0, content
from tests.audit.servers import webhook_server
from tests.audit.support import alert_config
from tests.audit.test_pg_store import _dsn_for, _url, audit_db, doc_sql

__all__ = ["audit_db"]  # the fixture, shared with test_pg_store

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"
EXE = str(Path(sys.executable).with_name("provisioner"))
APPENDS, PER_APPEND = 30, 4
N = APPENDS * PER_APPEND


def doc_formula() -> Callable[[int, str, dict[str, Any]], str]:
    """``record_hash`` exactly as docs/audit.md writes it."""
    text = DOC.read_text()
    block = text.split("<!-- chain-hash-formula -->")[1].split("<!-- /chain-hash-formula -->")[0]
    code = block.split("```python")[1].split("```")[0]
    namespace: dict[str, Any] = {"json": json, "hashlib": hashlib}
    exec(code, namespace)
    formula: Callable[[int, str, dict[str, Any]], str] = namespace["record_hash"]
    return formula


# ------------------------------------------------------------------ a signed, shipped trail


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Ed25519PrivateKey]:
    """A SQLite trail of N records written by 30 signed appends, each checkpoint shipped to a directory."""
    root = tmp_path_factory.mktemp("trail")
    key = Ed25519PrivateKey.generate()
    shipped = root / "shipped"
    store = StateStore(f"sqlite:///{root / 'trail.db'}", signer=Signer(key),
                       on_checkpoint=Shipper([("dir", DirectorySink(shipped))]))
    try:
        for a in range(APPENDS):
            store.audit.append_contents(content(a * PER_APPEND + i) for i in range(1, PER_APPEND + 1))
    finally:
        store.close()
    return root / "trail.db", shipped, key


def verify(db: Path, key: Ed25519PrivateKey, shipped: Path | None) -> list[str]:
    store = StateStore(f"sqlite:///{db}")
    try:
        cps = list(read_shipped(shipped)) if shipped is not None else []
        report = verify_chain(store.audit, cps, key.public_key(), require_signed=True)
    finally:
        store.close()
    out = [f"checkpoint: {p}" for p in report.checkpoint_problems]
    if report.problem is not None:
        out.append(f"chain: {report.problem.describe()}")
    out += [f"signatures: {p.describe()}" for p in report.coverage]
    return out


def sql(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    try:
        for s in statements:
            conn.execute(s)
        conn.commit()
    finally:
        conn.close()


def _row(db: Path, seq: int) -> tuple[dict[str, Any], str, str]:
    conn = sqlite3.connect(db)
    try:
        text, prev, digest = conn.execute(
            "SELECT content, prev_hash, hash FROM provisioner_audit WHERE seq = ?", (seq,)
        ).fetchone()
    finally:
        conn.close()
    return json.loads(text), prev, digest


def _put(db: Path, seq: int, c: dict[str, Any], prev: str) -> str:
    digest = chain_hash(seq, prev, c)
    conn = sqlite3.connect(db)
    try:
        conn.execute(
            "INSERT INTO provisioner_audit (seq, run_id, at, kind, actor, target, role, content, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, c["run_id"], datetime.fromisoformat(c["at"]).strftime("%Y-%m-%d %H:%M:%S.%f"), c["kind"],
             c["actor"], c["target"], c["role"], json.dumps(c, sort_keys=True), prev, digest),
        )
        conn.commit()
    finally:
        conn.close()
    return digest


def edit(db: Path) -> None:
    sql(db, "UPDATE provisioner_audit SET content = replace(content, 'desk-traders', 'ceo-exception') WHERE seq = 50")


def delete(db: Path) -> None:
    sql(db, "DELETE FROM provisioner_audit WHERE seq = 50")


def insert(db: Path) -> None:
    """Renumber 51.. and slip a well-chained forged record in at 51."""
    sql(db, "UPDATE provisioner_audit SET seq = -seq - 1 WHERE seq > 50", "UPDATE provisioner_audit SET seq = -seq WHERE seq < 0")
    c, _, prev = _row(db, 50)
    _put(db, 51, {**c, "role": "mallory", "reason": "forged"}, prev)


def reorder(db: Path) -> None:
    sql(db, "UPDATE provisioner_audit SET seq = -1 WHERE seq = 50", "UPDATE provisioner_audit SET seq = 50 WHERE seq = 51",
        "UPDATE provisioner_audit SET seq = 51 WHERE seq = -1")


def truncate(db: Path) -> None:
    sql(db, f"DELETE FROM provisioner_audit WHERE seq > {N - 6}")


def rechain(db: Path) -> None:
    """Edit record 50 and recompute every later hash: a consistent chain with a forged record."""
    rows = [_row(db, s) for s in range(50, N + 1)]
    sql(db, "DELETE FROM provisioner_audit WHERE seq >= 50")
    prev = rows[0][1]
    for seq, (c, _, _) in zip(range(50, N + 1), rows, strict=True):
        prev = _put(db, seq, {**c, "role": "mallory"} if seq == 50 else c, prev)


def forged_append(db: Path, key: Ed25519PrivateKey) -> None:
    """A correctly chained record appended with the writer's credentials, then an ordinary run."""
    c, _, head = _row(db, N)
    _put(db, N + 1, {**c, "kind": "override", "actor": "Chief Compliance Officer", "reason": "approved"}, head)
    store = StateStore(f"sqlite:///{db}", signer=Signer(key))
    try:
        with pytest.raises(ProvisionerError, match=r"record\(s\) 121..121 after it are signed by nobody"):
            store.append([AuditEvent("run-x", datetime.now(UTC), "svc", "schedule", EventKind.RUN_PLANNED)])
        assert store.audit.head()[0] == N + 1  # nothing of the ordinary run was written, nothing signed
    finally:
        store.close()


def drop_all_checkpoints(db: Path) -> None:
    sql(db, "DELETE FROM provisioner_audit_checkpoints")


def drop_some_checkpoints(db: Path) -> None:
    sql(db, "DELETE FROM provisioner_audit_checkpoints WHERE id IN (10, 11)")


def forged_checkpoint(db: Path) -> None:
    """A checkpoint row signed by another key (the attacker's), covering a forged append."""
    c, _, head = _row(db, N)
    digest = _put(db, N + 1, {**c, "reason": "forged"}, head)
    other = Signer(Ed25519PrivateKey.generate())
    from provisioner.core.governance.audit import Checkpoint

    cp = Checkpoint(N + 1, N + 1, digest, T0.isoformat(), other.key_id, APPENDS + 1, N, head)
    sql(db, "INSERT INTO provisioner_audit_checkpoints (head_seq, payload, signature, public_key) VALUES "
        f"({N + 1}, '{json.dumps(cp.payload(), sort_keys=True)}', '{other.sign(cp)}', '{other.public_hex}')")


ATTACKS: dict[str, tuple[Callable[..., None], str, str]] = {
    # name: (attack, first message without the shipped checkpoints, with them)
    "edit": (edit, "chain: record seq 50: edited", "chain: record seq 50: edited"),
    "delete": (delete, "chain: record seq 50: deleted", "chain: record seq 50: deleted"),
    "insert": (insert, "chain: record seq 51: inserted", "chain: record seq 51: inserted"),
    "reorder": (reorder, "chain: record seq 50: moved", "chain: record seq 50: moved"),
    "truncate": (truncate, f"chain: record seq {N - 5}: truncated", f"chain: record seq {N - 5}: truncated"),
    "rechained-forged-tail": (rechain, "chain: record seq 52: checkpoint", "chain: record seq 52: checkpoint"),
    "forged-append-then-run": (
        forged_append, f"signatures: unsigned-tail: record(s) {N + 1} after the newest checkpoint n={APPENDS}",
        f"signatures: unsigned-tail: record(s) {N + 1} after the newest checkpoint n={APPENDS}",
    ),
    "forged-checkpoint": (
        forged_checkpoint, f"checkpoint: stored checkpoint #{APPENDS + 1}: signed by key",
        f"checkpoint: stored checkpoint #{APPENDS + 1}: signed by key",
    ),
    "checkpoints-deleted": (
        drop_all_checkpoints, f"signatures: no-checkpoint: {N} record(s) but no signed checkpoint",
        "signatures: shipped-missing: checkpoint n=1 (head seq 4",
    ),
    "some-checkpoints-deleted": (
        drop_some_checkpoints, "signatures: checkpoint-deleted: checkpoint(s) n=10..11 missing",
        "signatures: shipped-missing: checkpoint n=10 (head seq 40",
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_each_attack_is_caught_with_its_own_message_with_and_without_shipped_checkpoints(
    trail: tuple[Path, Path, Ed25519PrivateKey], tmp_path: Path, name: str
) -> None:
    src, shipped, key = trail
    db = tmp_path / "copy.db"
    shutil.copy(src, db)
    assert verify(db, key, None) == [] and verify(db, key, shipped) == []
    attack, alone, with_shipped = ATTACKS[name]
    attack(db, key) if name == "forged-append-then-run" else attack(db)
    found_alone, found_shipped = verify(db, key, None), verify(db, key, shipped)
    assert found_alone and found_alone[0].startswith(alone), found_alone
    assert any(m.startswith(with_shipped) for m in found_shipped), found_shipped


def test_the_attack_messages_are_distinct() -> None:
    messages = [re.sub(r"\d+", "#", v[1]) for v in ATTACKS.values()]
    assert len(set(messages)) == len(messages), messages


def test_a_tail_truncated_with_its_checkpoints_needs_the_shipped_ones(
    trail: tuple[Path, Path, Ed25519PrivateKey], tmp_path: Path
) -> None:
    src, shipped, key = trail
    db = tmp_path / "copy.db"
    shutil.copy(src, db)
    sql(db, f"DELETE FROM provisioner_audit WHERE seq > {N - 8}", f"DELETE FROM provisioner_audit_checkpoints WHERE id > {APPENDS - 2}")
    assert verify(db, key, None) == []  # the store alone is consistent: documented
    found = verify(db, key, shipped)
    assert f"signatures: shipped-missing: checkpoint n={APPENDS - 1} (head seq {N - 4}" in " ".join(found)
    assert any("truncated" in m for m in found)
    store = StateStore(f"sqlite:///{db}")
    try:  # ... and checkpoint_max_age bounds how long it stays unnoticed
        report = verify_chain(store.audit, [], key.public_key(), require_signed=True, max_age=timedelta(days=1),
                              now=datetime.now(UTC) + timedelta(days=2))
    finally:
        store.close()
    assert [p.kind for p in report.coverage] == ["stale-checkpoint"]


def test_shipped_files_are_written_once_and_match_the_store(trail: tuple[Path, Path, Ed25519PrivateKey]) -> None:
    src, shipped, key = trail
    files = sorted(shipped.glob("checkpoint-*.json"))
    assert [f.name for f in files] == [f"checkpoint-{n:012d}.json" for n in range(1, APPENDS + 1)]
    store = StateStore(f"sqlite:///{src}")
    try:
        stored = [cp for _, cp in store.audit.iter_checkpoints() if cp is not None]
    finally:
        store.close()
    assert [json.loads(f.read_text()) for f in files] == [s.to_json() for s in stored]
    first = stored[0].checkpoint
    assert (first.n, first.from_seq, first.head_seq) == (1, 0, PER_APPEND)
    assert all(b.checkpoint.from_seq == a.checkpoint.head_seq for a, b in itertools.pairwise(stored))


# ------------------------------------------------------------------ the documented formula, monotonic time


def test_the_documented_hash_formula_is_the_codes(trail: tuple[Path, Path, Ed25519PrivateKey]) -> None:
    record_hash = doc_formula()
    store = StateStore(f"sqlite:///{trail[0]}")
    try:
        rows = list(store.iter_audit())
    finally:
        store.close()
    assert len(rows) == N
    assert all(record_hash(r.seq, r.prev_hash, r.content) == r.hash for r in rows)
    unicode = {"reason": "Zürich desk \u2713", "n": 1}
    assert record_hash(7, "sha256:" + "0" * 64, unicode) == chain_hash(7, "sha256:" + "0" * 64, unicode)


def test_time_only_moves_forward(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    store = StateStore(f"sqlite:///{db}")
    try:
        late = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
        store.append([AuditEvent("a", late, "svc", "schedule", EventKind.RUN_PLANNED)])
        # a concurrent run read the clock before this head was written: stamped with the head's time
        rows = store.append([AuditEvent("b", late - timedelta(seconds=3), "svc", "http", EventKind.RUN_PLANNED)])
        assert rows[0].at == late.isoformat()
    finally:
        store.close()
    c, _, head = _row(db, 2)
    _put(db, 3, {**c, "at": (late - timedelta(days=2)).isoformat(), "actor": "Chief Compliance Officer"}, head)
    store = StateStore(f"sqlite:///{db}")
    try:
        report = verify_chain(store.audit, [], None)
    finally:
        store.close()
    assert report.problem is not None and report.problem.kind == "time" and report.problem.seq == 3
    assert "back-dated" in report.problem.detail


# ------------------------------------------------------------------ laundering on the real PostgreSQL


def key_file(where: Path) -> Path:
    key = where / "key.pem"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key.chmod(0o600)
    return key


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_checkpoint_laundering_is_refused_on_postgres(
    audit_db: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer INSERTs a back-dated, correctly chained ``override`` by the CCO; the next ordinary
    run must not sign it: it stops (critical alert), and ``audit verify`` names the forged record."""
    owner, writer, db = audit_db["provisioner_owner"], audit_db["provisioner_writer"], audit_db["provisioner"]
    StateStore(_url(owner, db)).close()
    with psycopg.connect(_dsn_for(owner, db), autocommit=True) as conn:
        for statement in doc_sql("grants", audit_db):
            conn.execute(statement)
    key = key_file(tmp_path)
    shipped = tmp_path / "worm"
    with webhook_server() as hook:
        monkeypatch.setenv("TEST_HOOK", hook.url)
        cfg = alert_config(tmp_path / "c", f"""
[audit]
signing_key = "file:{key}"
checkpoint_dir = "{shipped}"

[alerts]
retry_backoff = "0s"

[[alerts.webhooks]]
name = "sec"
url = "env:TEST_HOOK"
""")
        text = cfg.path.read_text().replace(cfg.state.url, _url(writer, db))  # type: ignore[union-attr]
        cfg.path.write_text(text)  # type: ignore[union-attr]
        cfg = load_config(cfg.path)  # type: ignore[arg-type]

        store = open_store(cfg)
        try:
            ctx = RunContext(datetime.now(UTC), "svc", "schedule", store=store)
            with recorded_run(ctx, "apply", cfg):
                ctx.audit([ctx.event(EventKind.RUN_PLANNED, reason="ordinary")])
            head_seq, head = store.audit.head()
            signed = store.audit.latest_checkpoint()
            assert signed is not None and signed.checkpoint.head_seq == head_seq

            forged = {**ctx.event(EventKind.OVERRIDE, target="pg", reason="approved by the CCO").content(),
                      "actor": "Chief Compliance Officer", "at": (datetime.now(UTC) - timedelta(days=3)).isoformat()}
            with psycopg.connect(_dsn_for(writer, db), autocommit=True) as conn:  # the writer can INSERT
                conn.execute(
                    "INSERT INTO provisioner_audit (seq, run_id, at, kind, actor, target, role, content, prev_hash, hash)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (head_seq + 1, forged["run_id"], forged["at"], "override", forged["actor"], "pg", None,
                     json.dumps(forged, sort_keys=True), head, chain_hash(head_seq + 1, head, forged)),
                )

            ctx2 = RunContext(datetime.now(UTC), "jdoe", "manual", store=store)
            with pytest.raises(ProvisionerError, match="refusing to sign"), recorded_run(ctx2, "plan", cfg):
                ctx2.audit([ctx2.event(EventKind.RUN_PLANNED, reason="the next ordinary plan")])
            assert store.audit.latest_checkpoint() == signed  # nothing new signed
            assert store.audit.head()[0] == head_seq + 1  # and nothing of the refused run appended
        finally:
            store.close()
    assert [b["alert"]["key"] for b in hook.bodies] == ["audit_chain_broken"]
    assert hook.bodies[0]["alert"]["severity"] == "critical"

    for extra in ((), ("--checkpoints", str(shipped))):
        res = run_cli("audit", "verify", "-c", str(cfg.path), *extra)
        assert res.returncode == 1, res.stdout
        assert f"first bad record seq {head_seq + 1}: time: timestamp" in res.stdout and "back-dated" in res.stdout
        assert f"unsigned-tail: record(s) {head_seq + 1} after the newest checkpoint" in res.stdout


# ------------------------------------------------------------------ the run history in the chain


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    key = key_file(tmp_path)
    cfg = alert_config(tmp_path / "c", f'[audit]\nsigning_key = "file:{key}"')
    store = open_store(cfg)
    try:
        ids = []
        for outcome in ("ok", "boom"):
            ctx = RunContext(datetime.now(UTC), "svc", "schedule", store=store)
            try:
                with recorded_run(ctx, "apply", cfg):
                    ctx.audit([ctx.event(EventKind.RUN_PLANNED)])
                    if outcome == "boom":
                        raise ProvisionerError("target down")
            except ProvisionerError:
                pass
            ids.append(ctx.run_id)
    finally:
        store.close()
    assert run_cli("audit", "verify", "-c", str(cfg.path)).returncode == 0
    yield tmp_path / "c" / "state.db", str(cfg.path)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("UPDATE provisioner_runs SET outcome = 'ok', error = NULL WHERE outcome = 'failed'",
         "the run history row differs from the chained record in error, outcome (row edited)"),
        ("DELETE FROM provisioner_runs WHERE outcome = 'failed'", "missing from the run history (row deleted)"),
        ("INSERT INTO provisioner_runs (run_id, started_at, finished_at, trigger, actor, mode, outcome) VALUES "
         "('forged', '2099-01-01 00:00:00', '2099-01-01 00:01:00', 'manual', 'cco', 'apply', 'ok')",
         "run forged: in the run history but not in the audit chain (row inserted)"),
    ],
    ids=["edited", "deleted", "inserted"],
)
def test_the_run_history_cannot_be_edited_unnoticed(recorded: tuple[Path, str], tamper: str, message: str) -> None:
    db, cfg = recorded
    sql(db, tamper)
    res = run_cli("audit", "verify", "-c", cfg)
    assert res.returncode == 1 and "BROKEN run history: run " in res.stdout and message in res.stdout, res.stdout


def test_checkpoints_go_to_syslog_and_a_webhook_and_a_dead_sink_fails_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from provisioner.store.shipping import shipper

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(10)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with webhook_server() as hook:
        monkeypatch.setenv("TEST_CP_HOOK", hook.url)
        cfg = alert_config(tmp_path / "c", f"""
[audit]
checkpoint_dir = "{blocker / 'sub'}"
checkpoint_syslog = "127.0.0.1:{udp.getsockname()[1]}"
checkpoint_webhook = "env:TEST_CP_HOOK"
""")
        ship = shipper(cfg.audit, cfg.base_dir)
        assert ship is not None
        store = StateStore(f"sqlite:///{tmp_path / 's.db'}", signer=Signer(Ed25519PrivateKey.generate()),
                           on_checkpoint=ship)
        try:
            store.append([AuditEvent("r", datetime.now(UTC), "svc", "schedule", EventKind.RUN_PLANNED)])
            signed = store.audit.latest_checkpoint()
        finally:
            store.close()
    assert signed is not None and ship.failures == 1  # the directory sink failed; the append did not
    line = udp.recv(65536).decode().rstrip("\x00")
    udp.close()
    assert "provisioner-audit: checkpoint " in line and json.loads(line.split("checkpoint ", 1)[1]) == signed.to_json()
    assert [b["provisioner_audit_checkpoint"] for b in hook.bodies] == [signed.to_json()]
