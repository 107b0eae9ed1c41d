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
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from provisioner.core.governance.encode import Canonical as Canonical
from provisioner.core.governance.encode import Record as Record
from provisioner.core.governance.encode import RecordText
from provisioner.core.governance.encode import canonical_text as canonical_text

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
    AUTHORISED = "apply_authorised"
    RUN_RECORDED = "run_recorded"


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
    change: Mapping[str, Any] | Canonical | None = None
    reason: str = ""
    before: Mapping[str, Any] | Canonical = field(default_factory=dict)
    after: Mapping[str, Any] | Canonical = field(default_factory=dict)
    """``change``, ``before``, ``after``: mappings, or their canonical text where the
    engine composed it (a transaction's change records, core/governance/encode.py)."""

    def content(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "trigger": self.trigger,
            "kind": self.kind.value,
            "target": self.target,
            "role": self.role,
            "change": _plain(self.change) if self.change is not None else None,
            "reason": self.reason,
            "before": _plain(self.before),
            "after": _plain(self.after),
        }

    def with_after(self, **extra: Any) -> AuditEvent:
        """This record with more keys in ``after``."""
        return replace(self, after={**_plain(self.after), **extra})

    def record(self, texts: RecordText, at: str | None = None) -> Record:
        """This record ready for the chain; ``at``: ``self.at.isoformat()`` when the caller has it."""
        return (
            self.run_id, self.kind.value, self.actor, self.target, self.role, at or self.at.isoformat(),
            *self.around_at(texts),
        )

    def around_at(self, texts: RecordText) -> tuple[str, str]:
        """:func:`canonical_text` of :meth:`content` before and after the ``at`` value."""
        return texts.around_at(
            self.actor, self.after, self.before, self.change, self.kind.value, self.reason, self.role,
            self.run_id, self.target, self.trigger,
        )


def _plain(value: Mapping[str, Any] | Canonical) -> dict[str, Any]:
    return value.value() if isinstance(value, Canonical) else dict(value)


def canonical(content: Mapping[str, Any]) -> bytes:
    return canonical_text(content).encode()


def chain_hash(seq: int, prev_hash: str, content: Mapping[str, Any]) -> str:
    return chain_hash_text(seq, prev_hash, canonical_text(content))


def chain_hash_text(seq: int, prev_hash: str, text: str) -> str:
    """:func:`chain_hash` of a record whose :func:`canonical_text` is ``text``."""
    h = hashlib.sha256()
    h.update(f"{seq}\n{prev_hash}\n{text}".encode())
    return "sha256:" + h.hexdigest()


def record_time(content: Mapping[str, Any]) -> datetime | None:
    """The record's ``at`` as an aware datetime (naive means UTC), or None when unparsable."""
    try:
        at = datetime.fromisoformat(str(content.get("at")))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


# ------------------------------------------------------------------ verification


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first bad record: its sequence number and why."""

    seq: int
    kind: str
    """edited | moved | inserted | deleted | relinked | truncated | checkpoint | time"""
    detail: str

    def describe(self) -> str:
        return f"record seq {self.seq}: {self.kind}: {self.detail}"


class ChainVerifier:
    """Checks a chain fed in ``seq`` order, one record at a time, in constant memory.

    ``feed`` returns the first problem found (and keeps returning it); ``finish``
    checks the end of the chain against the heads it must still contain.
    """

    __slots__ = (
        "_last_at", "_pins", "_prev", "_prevprev", "count", "head_hash", "head_seq", "pinned", "problem"
    )

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
        self._last_at: datetime | None = None

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
        at = record_time(content)
        if self.problem is None:
            if at is None:
                self.problem = ChainProblem(seq, "time", f"timestamp {content.get('at')!r} is not an ISO 8601 time")
            elif self._last_at is not None and at < self._last_at:
                self.problem = ChainProblem(
                    seq,
                    "time",
                    f"timestamp {content.get('at')} is earlier than record {self.head_seq}'s "
                    f"{self._last_at.isoformat()} (back-dated)",
                )
        if self.problem is not None:
            return self.problem
        self._last_at = at
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
    """The signed statement "the chain held ``count`` records ending in ``head_hash``".

    Version 2 (``n`` > 0) also says "and I, the provisioner, wrote records
    ``from_seq + 1 .. head_seq`` myself": checkpoint ``n`` follows checkpoint
    ``n - 1``, whose head is ``from_seq`` / ``from_hash``.  Every append of a
    process holding the signing key ends with one, in the same transaction, so a
    record no checkpoint covers was written by something else (see docs/audit.md).
    """

    count: int
    head_seq: int
    head_hash: str
    at: str
    key_id: str
    n: int = 0
    from_seq: int = 0
    from_hash: str = GENESIS

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": self.count,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "at": self.at,
            "key_id": self.key_id,
        }
        if self.n:
            out.update(n=self.n, from_seq=self.from_seq, from_hash=self.from_hash)
        return out

    def message(self) -> bytes:
        """The bytes that are signed."""
        version = b"provisioner-audit-checkpoint-v2\n" if self.n else b"provisioner-audit-checkpoint-v1\n"
        return version + canonical(self.payload())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Checkpoint:
        return cls(
            int(data["count"]),
            int(data["head_seq"]),
            str(data["head_hash"]),
            str(data["at"]),
            str(data["key_id"]),
            int(data.get("n", 0)),
            int(data.get("from_seq", 0)),
            str(data.get("from_hash", GENESIS)),
        )


@dataclass(frozen=True, slots=True)
class CoverageProblem:
    """Why the signed checkpoints do not vouch for the whole chain."""

    kind: str
    """no-checkpoint | checkpoint-deleted | forged | unsigned-tail | stale-checkpoint | shipped-missing |
    shipped-differs | foreign-key"""
    detail: str

    def describe(self) -> str:
        return f"{self.kind}: {self.detail}"


def coverage(
    stored: Sequence[Checkpoint],
    head_seq: int,
    now: datetime,
    max_age: timedelta | None = None,
    shipped: Sequence[tuple[str, Checkpoint]] = (),
) -> list[CoverageProblem]:
    """Do the (signature-checked) v2 checkpoints cover every record up to ``head_seq``?

    ``stored``: the checkpoints in the store; ``shipped``: (where, checkpoint)
    copies found outside the host.  Pure; the chain itself is checked by
    :class:`ChainVerifier` (with every checkpoint's heads as pins)."""
    out: list[CoverageProblem] = []
    by_n = {c.n: c for c in stored if c.n}
    for where, cp in shipped:
        if not cp.n:
            continue
        mine = by_n.get(cp.n)
        if mine is None:
            out.append(CoverageProblem(
                "shipped-missing",
                f"checkpoint n={cp.n} (head seq {cp.head_seq}, shipped to {where}) is missing from the store: "
                "checkpoint rows deleted",
            ))
        elif mine.payload() != cp.payload():
            out.append(CoverageProblem(
                "shipped-differs", f"checkpoint n={cp.n} in the store differs from the copy shipped to {where}"
            ))
    # the shipped copies fill gaps left by deleted rows, so coverage below is judged on both
    merged = dict(by_n)
    for _, cp in shipped:
        if cp.n and cp.n not in merged:
            merged[cp.n] = cp
    if not merged:
        if head_seq > 0:
            out.append(CoverageProblem(
                "no-checkpoint",
                f"{head_seq} record(s) but no signed checkpoint although a signing key is configured: "
                "checkpoint rows deleted, or the trail was never signed (adopt it with 'provisioner audit checkpoint')",
            ))
        return out
    ordered = sorted(merged.values(), key=lambda c: c.n)
    first = ordered[0]
    if first.n != 1:
        out.append(CoverageProblem(
            "checkpoint-deleted", f"checkpoint(s) n=1..{first.n - 1} missing: checkpoint rows deleted"
        ))
    for prev, cur in itertools.pairwise(ordered):
        if cur.n != prev.n + 1:
            missing = f"{prev.n + 1}" if cur.n == prev.n + 2 else f"{prev.n + 1}..{cur.n - 1}"
            out.append(
                CoverageProblem("checkpoint-deleted", f"checkpoint(s) n={missing} missing: checkpoint rows deleted")
            )
        elif cur.from_seq > prev.head_seq:
            rng = _range(prev.head_seq + 1, cur.from_seq)
            out.append(CoverageProblem(
                "forged",
                f"record(s) {rng} are covered by no signed checkpoint (between n={prev.n} and n={cur.n}): "
                "written outside provisioner",
            ))
        elif cur.from_seq != prev.head_seq or cur.from_hash != prev.head_hash:
            out.append(CoverageProblem(
                "checkpoint-deleted", f"checkpoint n={cur.n} does not continue checkpoint n={prev.n}"
            ))
    last = ordered[-1]
    if head_seq > last.head_seq:
        out.append(CoverageProblem(
            "unsigned-tail",
            f"record(s) {_range(last.head_seq + 1, head_seq)} after the newest checkpoint n={last.n} are not signed: "
            "written outside provisioner, or the newest checkpoint rows were deleted",
        ))
    if max_age is not None:
        at = record_time({"at": last.at})
        if at is None or now - at > max_age:
            out.append(CoverageProblem(
                "stale-checkpoint", f"the newest checkpoint n={last.n} was signed at {last.at}, more than {max_age} ago"
            ))
    return out


def _range(lo: int, hi: int) -> str:
    return f"{lo}" if lo == hi else f"{lo}..{hi}"


def key_id(raw_public_key: bytes) -> str:
    """Fingerprint of an Ed25519 public key (its 32 raw bytes)."""
    return "ed25519:" + hashlib.sha256(raw_public_key).hexdigest()[:32]
