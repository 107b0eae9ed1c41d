"""The audit store keeps each record as the very text the chain hashed (issue 19: a
record is encoded once), so an outside verifier can hash the stored column as it is."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from provisioner.core.governance.audit import AuditEvent, EventKind, canonical, chain_hash, chain_hash_text
from provisioner.store.signing import verify_chain
from provisioner.store.state import StateStore
from tests.audit.chain import content


def test_the_stored_text_is_what_the_chain_hashed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = StateStore(url)
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    try:
        store.audit.append_contents([content(i) for i in range(1, 50)])
        # a record stamped before the head is moved to the head's time, and that is what is hashed and stored
        store.append([AuditEvent("late", at - timedelta(days=1), "svc", "manual", EventKind.RUN_FINISHED,
                                 reason="ok", after={"non-ascii": "Zoë ✓", "n": 1.5})])
        report = verify_chain(store.audit, [], None)
        assert report.ok and report.count == 50, report
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        rows = db.execute("SELECT seq, content, prev_hash, hash FROM provisioner_audit ORDER BY seq").fetchall()
    assert len(rows) == 50
    for seq, text, prev, digest in rows:
        assert digest == "sha256:" + hashlib.sha256(f"{seq}\n{prev}\n{text}".encode()).hexdigest()
        assert digest == chain_hash_text(seq, prev, text)
    last = rows[-1][1]
    assert "Zoë ✓" in last and '"at":"2026-01-05T09:00:49+00:00"' in last, last


def test_chain_hash_of_a_record_and_of_its_text_agree() -> None:
    record = content(7)
    assert chain_hash(7, "sha256:x", record) == chain_hash_text(7, "sha256:x", canonical(record).decode())
