"""Audit records, their hash chain, chain verification and checkpoints.

Pure: hashing and checking only, no storage, no signing library.

Each record's hash covers its sequence number, the previous record's hash and
its canonical JSON content, so editing, deleting, inserting or reordering any
record breaks the chain at that record.  A signed checkpoint (count, head seq,
head hash) pins the head, so a truncated tail or a rewritten chain is caught
too (see ``docs/audit.md``).
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
    APPLY_INTENT = "apply_intent"
    APPLY_BEGUN = "apply_begun"
    """The target holds its lock; ``after.transaction`` names the transaction about to commit (issue 14)."""
    CHANGE_APPLIED = "change_applied"
    APPLY_COMPLETED = "apply_completed"
    CHANGE_RECOVERED = "change_recovered"
    CHANGE_FAILED = "change_failed"
    """A change the target refused; isolated, the rest of the run applied (issue 14)."""
    PLAN_REFUSED = "plan_refused"
    BREAKER_TRIPPED = "breaker_tripped"
    OVERRIDE = "override"
    RUN_FAILED = "run_failed"
    RUN_FINISHED = "run_finished"
    VIOLATION = "violation"
    REVIEW = "review"


CHANGE_KINDS = frozenset({EventKind.CHANGE_APPLIED, EventKind.CHANGE_RECOVERED})
"""Records that state a change committed on a target."""


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


# ------------------------------------------------------------------ verification


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first bad record: its sequence number and why."""

    seq: int
    kind: str
    """edited | moved | inserted | deleted | relinked | truncated | checkpoint"""
    detail: str

    def describe(self) -> str:
        return f"record seq {self.seq}: {self.kind}: {self.detail}"


class ChainVerifier:
    """Checks a chain fed in ``seq`` order, one record at a time, in constant memory.

    ``feed`` returns the first problem found (and keeps returning it); ``finish``
    checks the end of the chain against the heads it must still contain.
    """

    __slots__ = ("_pins", "_prev", "_prevprev", "count", "head_hash", "head_seq", "pinned", "problem")

    def __init__(self, pins: Mapping[int, str] | None = None) -> None:
        self._prev = GENESIS
        self._prevprev: str | None = None
        self.head_seq = 0
        self.head_hash = GENESIS
        self.count = 0
        self.problem: ChainProblem | None = None
        self._pins = dict(pins or {})
        """seq -> hash every checkpoint says the chain holds at that seq."""
        self.pinned: dict[int, str] = {}

    def feed(
        self,
        seq: int,
        content: Mapping[str, Any],
        prev_hash: str,
        digest: str,
        column_mismatch: str | None = None,
    ) -> ChainProblem | None:
        """``column_mismatch`` names a searchable column that disagrees with the content."""
        if self.problem is not None:
            return self.problem
        expected = self.head_seq + 1
        recomputed = chain_hash(seq, prev_hash, content)
        if seq != expected:
            if seq > expected:
                missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
                self.problem = ChainProblem(
                    expected, "deleted", f"record(s) {missing} missing: seq {seq} follows {self.head_seq}"
                )
            else:
                self.problem = ChainProblem(seq, "moved", f"seq {seq} appears after {self.head_seq}")
        elif recomputed != digest:
            if prev_hash == self._prev:
                self.problem = ChainProblem(seq, "edited", "content does not match the stored hash")
            elif self._prevprev is not None and prev_hash == self._prevprev:
                self.problem = ChainProblem(
                    self.head_seq,
                    "inserted",
                    f"record {self.head_seq} is not in the original chain: record {seq} links past it",
                )
            else:
                self.problem = ChainProblem(
                    seq, "moved", "record does not belong at this position (reordered or replaced)"
                )
        elif column_mismatch is not None:
            self.problem = ChainProblem(seq, "edited", f"column {column_mismatch!r} disagrees with the content")
        elif prev_hash != self._prev:
            self.problem = ChainProblem(
                seq, "relinked", f"prev_hash does not match the hash of record {self.head_seq}"
            )
        elif seq in self._pins and self._pins[seq] != digest:
            self.problem = ChainProblem(
                seq, "checkpoint", "hash differs from the signed checkpoint (chain rewritten up to here)"
            )
        if self.problem is not None:
            return self.problem
        if seq in self._pins:
            self.pinned[seq] = digest
        self._prevprev, self._prev = self._prev, digest
        self.head_seq, self.head_hash = seq, digest
        self.count += 1
        return None

    def finish(self) -> ChainProblem | None:
        if self.problem is not None:
            return self.problem
        beyond = [s for s in self._pins if s > self.head_seq]
        if beyond:
            self.problem = ChainProblem(
                self.head_seq + 1,
                "truncated",
                f"chain ends at seq {self.head_seq} but a checkpoint covers seq {max(beyond)} "
                "(tail deleted)",
            )
        return self.problem


# ------------------------------------------------------------------ checkpoints


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The signed statement "the chain held ``count`` records ending in ``head_hash``"."""

    count: int
    head_seq: int
    head_hash: str
    at: str
    key_id: str

    def payload(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "at": self.at,
            "key_id": self.key_id,
        }

    def message(self) -> bytes:
        """The bytes that are signed."""
        return b"provisioner-audit-checkpoint-v1\n" + canonical(self.payload())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        return cls(
            int(data["count"]),
            int(data["head_seq"]),
            str(data["head_hash"]),
            str(data["at"]),
            str(data["key_id"]),
        )


def key_id(raw_public_key: bytes) -> str:
    """Fingerprint of an Ed25519 public key (its 32 raw bytes)."""
    return "ed25519:" + hashlib.sha256(raw_public_key).hexdigest()[:32]
