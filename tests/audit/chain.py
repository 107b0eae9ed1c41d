"""Helpers for audit tests: synthetic records, bulk-loaded chains, SQL tampering."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from provisioner.core.governance.audit import GENESIS, chain_hash
from provisioner.store.state import StateStore

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def content(i: int) -> dict[str, Any]:
    """A change_applied record as the runtime writes it (i from 1)."""
    user = f"user{i % 97:03d}"
    group = ("trade_executor", "trade_reader", "ops_settlement", "trade_approver")[i % 4]
    return {
        "run_id": f"00000000-0000-0000-0000-{i // 100:012d}",
        "at": (T0 + timedelta(seconds=i)).isoformat(),
        "actor": "svc-provisioner",
        "trigger": "schedule",
        "kind": "change_applied",
        "target": "pg",
        "role": user,
        "change": {
            "kind": "grant_membership",
            "role": user,
            "params": {"group": group},
            "reasons": [{"rule": "desk-traders", "text": "matched", "attributes": {"department": "Trading"}}],
            "before": {"member_of": []},
            "after": {"member_of": [group]},
            "summary": f"grant {group} to {user}",
        },
        "reason": "desk-traders: department=Trading",
        "before": {"member_of": []},
        "after": {"member_of": [group]},
    }


def chain(n: int) -> list[tuple[int, dict[str, Any], str, str]]:
    """(seq, content, prev_hash, hash) for a valid chain of n records."""
    out = []
    prev = GENESIS
    for seq in range(1, n + 1):
        c = content(seq)
        digest = chain_hash(seq, prev, c)
        out.append((seq, c, prev, digest))
        prev = digest
    return out


def sqlite_store(path: Path, n: int) -> StateStore:
    store = StateStore(f"sqlite:///{path}")
    store.audit.append_contents(content(i) for i in range(1, n + 1))
    return store


def sql(path: Path, statement: str, *params: Any) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(statement, params)
        conn.commit()
    finally:
        conn.close()
