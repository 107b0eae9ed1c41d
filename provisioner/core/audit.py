"""Audit records and their hash chain.  Pure: hashing only, no storage.

Each record's hash covers its canonical JSON content and the previous
record's hash, so editing, deleting, inserting or reordering any record
breaks every hash after it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

GENESIS = "sha256:" + "0" * 64


class EventKind(StrEnum):
    RUN_PLANNED = "run_planned"
    CHANGE_APPLIED = "change_applied"
    PLAN_REFUSED = "plan_refused"
    BREAKER_TRIPPED = "breaker_tripped"
    OVERRIDE = "override"
    RUN_FAILED = "run_failed"
    RUN_FINISHED = "run_finished"
    VIOLATION = "violation"
    REVIEW = "review"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What happened, before it is chained."""

    run_id: str
    at: datetime
    actor: str
    trigger: str
    kind: EventKind
    target: str | None = None
    role: str | None = None
    change: Mapping[str, Any] | None = None
    reason: str = ""
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)

    def content(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "trigger": self.trigger,
            "kind": self.kind.value,
            "target": self.target,
            "role": self.role,
            "change": dict(self.change) if self.change is not None else None,
            "reason": self.reason,
            "before": dict(self.before),
            "after": dict(self.after),
        }


def canonical(content: Mapping[str, Any]) -> bytes:
    return json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def chain_hash(seq: int, prev_hash: str, content: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(str(seq).encode() + b"\n" + prev_hash.encode() + b"\n" + canonical(content))
    return "sha256:" + h.hexdigest()
