"""The audit chain and its checkpoints in the state store (SQLAlchemy).

Append-only: this module never updates or deletes an audit or checkpoint row.
On PostgreSQL the schema setup also installs an always-enabled trigger that
refuses UPDATE, DELETE and TRUNCATE on both tables (see ``docs/audit.md``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    case,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from provisioner.core.governance.audit import (
    GENESIS,
    AuditEvent,
    Checkpoint,
    EventKind,
    chain_hash,
    chain_hash_text,
    record_time,
)
from provisioner.core.governance.encode import Record, RecordText, split_at, text_of
from provisioner.errors import PermanentError, TemporaryError
from provisioner.store.audit_schema import audit, checkpoints, insert_rows
from provisioner.store.auditfilter import AuditFilter, matches, where
from provisioner.store.signer import Signer

__all__ = ["Appended", "AuditFilter", "AuditLog", "AuditRow", "AuditTampered", "AuditUnavailable", "StoredCheckpoint"]


class AuditUnavailable(TemporaryError):
    """The audit trail cannot be read or written."""


class AuditTampered(PermanentError):
    """The chain after the newest signed checkpoint is not what this provisioner wrote: nothing is signed."""


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    content: dict[str, Any]
    prev_hash: str
    hash: str
    column_mismatch: str | None = None


@dataclass(frozen=True, slots=True)
class Appended:
    """A record just appended: its place in the chain and the ``at`` it was stamped with."""

    seq: int
    hash: str
    at: Any


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    checkpoint: Checkpoint
    signature: str
    """hex Ed25519 signature of ``checkpoint.message()``"""
    public_key: str
    """hex raw public key of the signer (informational: trust comes from the configured key)"""

    def to_json(self) -> dict[str, Any]:
        return {**self.checkpoint.payload(), "signature": self.signature, "public_key": self.public_key}




def _parse_at(value: str) -> datetime:
    at = datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _mismatch(r: Any, content: dict[str, Any]) -> str | None:
    for col in ("run_id", "kind", "actor", "target", "role"):
        if r[col] != content.get(col):
            return col
    try:
        if _utc(r["at"]) != _parse_at(str(content.get("at"))):
            return "at"
    except ValueError:
        return "at"
    return None


CheckpointSink = Callable[[StoredCheckpoint], None]


class AuditLog:
    """The chain in the store.  With a ``signer`` every append verifies the chain
    after the newest signed checkpoint first (it must end exactly at that head)
    and ends with a new signed checkpoint over what it wrote, in the same
    transaction; ``on_checkpoint`` ships each new checkpoint after the commit."""

    def __init__(
        self, engine: Engine, signer: Signer | None = None, on_checkpoint: CheckpointSink | None = None
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.on_checkpoint = on_checkpoint

    # ------------------------------------------------------------ writing
    def append(self, events: Sequence[AuditEvent | Record]) -> list[Appended]:
        """Chain and insert ``events`` (or records already encoded) atomically after the current head."""
        texts = RecordText()  # the header strings every record of the batch repeats, encoded once
        items: list[Record] = []
        when: tuple[datetime | None, str] = (None, "")  # records of a batch mostly share one time
        for e in events:
            if not isinstance(e, AuditEvent):
                items.append(e)
                continue
            if when[0] is not e.at:
                when = (e.at, e.at.isoformat())
            items.append(e.record(texts, when[1]))
        return self._append(items)

    def append_contents(self, contents: Iterable[dict[str, Any]], chunk: int = 5000) -> list[Appended]:
        """Chain and insert records given as content dicts (each with ``at``)."""
        return self._append(
            [(c["run_id"], c["kind"], c["actor"], c["target"], c["role"], c["at"], *split_at(c)) for c in contents],
            chunk,
        )

    def _append(self, items: list[Record], chunk: int = 5000) -> list[Appended]:
        if not items:
            return []
        try:
            with self.engine.begin() as conn:
                seq, prev = self._lock_head(conn)
                last = self._check_signed_head(conn, seq, prev) if self.signer else None
                start_seq, start_hash = seq, prev
                last_at = self._head_time(conn, seq)
                out: list[Appended] = []
                values: list[tuple[Any, ...]] = []
                parsed: tuple[Any, datetime | None] = (None, None)
                for run_id, kind, actor, target, role, stamp, head, tail in items:
                    seq += 1
                    if parsed[0] is not stamp:
                        parsed = (stamp, record_time({"at": stamp}))
                    at = parsed[1]
                    if at is not None and last_at is not None and at < last_at:
                        # monotonic per record: a run that read the clock before a concurrent
                        # run appended is stamped with the head's time, never earlier
                        stamp, at = last_at.isoformat(), last_at
                    else:
                        last_at = at or last_at
                    text = head + text_of(stamp) + tail  # what is hashed is what is stored
                    digest = chain_hash_text(seq, prev, text)
                    out.append(Appended(seq, digest, stamp))
                    at = at if at is not None else _parse_at(str(stamp))
                    values.append((seq, run_id, at, kind, actor, target, role, text, prev, digest))
                    prev = digest
                insert_rows(conn, values, chunk)
                stored = self._sign(conn, last, start_seq, start_hash, seq, prev) if self.signer else None
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"cannot append to the audit trail: {exc}") from exc
        if stored is not None:
            self._ship(stored)
        return out

    def sign_head(self, adopt: bool = False) -> StoredCheckpoint:
        """A signed checkpoint of the current head (the newest one when it already covers the head).

        ``adopt``: sign a head that no checkpoint of this key vouches for (a trail
        written before the key was configured, or after a key rotation) -- only after
        a full ``audit verify``; the CLI's ``audit checkpoint`` does that."""
        if self.signer is None:
            raise AuditUnavailable("no signing key configured")
        try:
            with self.engine.begin() as conn:
                seq, prev = self._lock_head(conn)
                last = self._latest(conn)
                if not adopt:
                    last = self._check_signed_head(conn, seq, prev)
                    if last is not None and (last.checkpoint.head_seq, last.checkpoint.head_hash) == (seq, prev):
                        return last
                start_seq, start_hash = (
                    (last.checkpoint.head_seq, last.checkpoint.head_hash)
                    if last is not None and not adopt
                    else (seq, prev)
                )
                stored = self._sign(conn, last, start_seq, start_hash, seq, prev)
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"cannot sign the audit head: {exc}") from exc
        self._ship(stored)
        return stored

    def check_signed(self) -> None:
        """Verify before sign, without writing: raise :class:`AuditTampered` when the newest
        checkpoint does not end exactly at the chain's head (no-op without a signer)."""
        if self.signer is None:
            return
        try:
            with self.engine.begin() as conn:  # under the append lock: never between a concurrent append's rows
                seq, head = self._lock_head(conn)
                self._check_signed_head(conn, seq, head)
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"cannot read the audit trail: {exc}") from exc

    def _ship(self, stored: StoredCheckpoint) -> None:
        if self.on_checkpoint is not None:
            self.on_checkpoint(stored)

    def _check_signed_head(self, conn: Connection, seq: int, head: str) -> StoredCheckpoint | None:
        """Verify before sign: the newest checkpoint is ours and the chain ends exactly at its head."""
        assert self.signer is not None
        last = self._latest(conn)
        if last is None:
            if seq == 0:
                return None
            raise AuditTampered(
                f"audit trail: {seq} record(s) but no signed checkpoint (checkpoint rows deleted, or written "
                "before [audit] signing_key was configured); refusing to sign them. Check with 'provisioner "
                "audit verify' and adopt the trail with 'provisioner audit checkpoint'"
            )
        cp = last.checkpoint
        if not cp.n or not self.signer.vouches_for(cp, last.signature):
            raise AuditTampered(
                f"audit trail: the newest checkpoint (head seq {cp.head_seq}) is not a valid signature of "
                f"the configured key {self.signer.key_id}; refusing to sign. Check with 'provisioner audit verify'"
            )
        if seq != cp.head_seq or head != cp.head_hash:
            what = (
                f"record(s) {cp.head_seq + 1}..{seq} after it are signed by nobody (written outside provisioner)"
                if seq > cp.head_seq
                else f"the chain now ends at seq {seq} with {head} (records deleted or rewritten)"
            )
            raise AuditTampered(
                f"audit trail broken after the newest signed checkpoint n={cp.n} (head seq {cp.head_seq}): "
                f"{what}; refusing to sign. Check with 'provisioner audit verify'"
            )
        if seq:
            r = conn.execute(select(audit).where(audit.c.seq == seq)).mappings().first()
            content = json.loads(r["content"]) if r is not None else None
            if (
                r is None
                or not isinstance(content, dict)
                or chain_hash(seq, r["prev_hash"], content) != r["hash"]
                or _mismatch(r, content) is not None
            ):
                raise AuditTampered(
                    f"audit trail: record {seq} (the signed head) was edited; refusing to sign. "
                    "Check with 'provisioner audit verify'"
                )
        return last

    def _sign(
        self, conn: Connection, last: StoredCheckpoint | None, from_seq: int, from_hash: str, seq: int, head: str
    ) -> StoredCheckpoint:
        assert self.signer is not None
        n = (last.checkpoint.n if last is not None else 0) + 1
        cp = Checkpoint(seq, seq, head, datetime.now(UTC).isoformat(), self.signer.key_id, n, from_seq, from_hash)
        stored = StoredCheckpoint(cp, self.signer.sign(cp), self.signer.public_hex)
        conn.execute(
            insert(checkpoints).values(
                head_seq=cp.head_seq,
                payload=json.dumps(cp.payload(), sort_keys=True),
                signature=stored.signature,
                public_key=stored.public_key,
            )
        )
        return stored

    @staticmethod
    def _latest(conn: Connection) -> StoredCheckpoint | None:
        r = conn.execute(select(checkpoints).order_by(checkpoints.c.id.desc()).limit(1)).mappings().first()
        return _stored(r) if r is not None else None

    @staticmethod
    def _head_time(conn: Connection, seq: int) -> datetime | None:
        """The head record's time, from its ``at`` column: the same instant as its content's
        ``at`` (``audit verify`` checks that the two agree), without parsing the content -- an
        apply intent's is megabytes, and one is the head before each transaction's next record."""
        if not seq:
            return None
        at = conn.execute(select(audit.c.at).where(audit.c.seq == seq)).scalar()
        return _utc(at) if isinstance(at, datetime) else None

    @staticmethod
    def _lock_head(conn: Connection) -> tuple[int, str]:
        if conn.dialect.name == "postgresql":
            # an advisory lock needs no privilege beyond INSERT/SELECT (LOCK TABLE would need UPDATE)
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('provisioner_audit'))")
        return _head(conn)

    # ------------------------------------------------------------ reading
    def head(self) -> tuple[int, str]:
        with self.engine.connect() as conn:
            head = conn.execute(select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)).first()
            return (int(head[0]), str(head[1])) if head else (0, GENESIS)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit)).scalar_one())

    def iter_rows(self, flt: AuditFilter | None = None, batch: int = 5000) -> Iterator[AuditRow]:
        """Every record in ``seq`` order, ``batch`` rows per query (constant memory)."""
        last = 0
        while True:
            q = select(audit).where(audit.c.seq > last).order_by(audit.c.seq).limit(batch)
            q = where(q, flt, audit) if flt else q
            try:
                with self.engine.connect() as conn:
                    rows = list(conn.execute(q).mappings())
            except SQLAlchemyError as exc:
                raise AuditUnavailable(f"cannot read the audit trail: {exc}") from exc
            if not rows:
                return
            for r in rows:
                try:
                    content = json.loads(r["content"])
                except ValueError:
                    content = {"unreadable": r["content"]}
                if not isinstance(content, dict):
                    content = {"unreadable": content}
                row = AuditRow(int(r["seq"]), content, r["prev_hash"], r["hash"], _mismatch(r, content))
                if flt is None or matches(row.content, flt):
                    yield row
            last = int(rows[-1]["seq"])

    # ------------------------------------------------------------ checkpoints
    def add_checkpoint(self, stored: StoredCheckpoint) -> None:
        cp = stored.checkpoint
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(checkpoints).values(
                        head_seq=cp.head_seq,
                        payload=json.dumps(cp.payload(), sort_keys=True),
                        signature=stored.signature,
                        public_key=stored.public_key,
                    )
                )
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"cannot store the audit checkpoint: {exc}") from exc

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        with self.engine.connect() as conn:
            return self._latest(conn)

    def iter_checkpoints(self) -> Iterator[tuple[int, StoredCheckpoint | None]]:
        """(row id, checkpoint) in insertion order; None for a row that does not parse."""
        with self.engine.connect() as conn:
            for r in conn.execute(select(checkpoints).order_by(checkpoints.c.id)).mappings():
                try:
                    yield int(r["id"]), _stored(r)
                except (ValueError, KeyError, TypeError):
                    yield int(r["id"]), None

    # ------------------------------------------------------------ queries for runs and alerts
    def contents_since(self, since: datetime, kinds: Iterable[EventKind]) -> Iterator[dict[str, Any]]:
        q = select(audit.c.content).where(audit.c.at >= since, audit.c.kind.in_([k.value for k in kinds]))
        with self.engine.connect() as conn:
            for (text,) in conn.execute(q.order_by(audit.c.seq)):
                yield json.loads(text)

    def unresolved_intents(self, after_seq: int) -> list[AuditRow]:
        """APPLY_INTENT records after ``after_seq`` without an APPLY_COMPLETED of the same run and target."""
        kinds = (EventKind.APPLY_INTENT.value, EventKind.APPLY_COMPLETED.value)
        # an intent's content lists every change (megabytes after a first sync): only the
        # completions' contents are read for the pairing, the open intents' ones at the end
        done = case((audit.c.kind == EventKind.APPLY_COMPLETED.value, audit.c.content), else_=None)
        q = (
            select(audit.c.seq, audit.c.kind, audit.c.run_id, audit.c.target, done.label("content"))
            .where(audit.c.seq > after_seq, audit.c.kind.in_(kinds))
            .order_by(audit.c.seq)
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        # A run may have several transactions per target (removals first, then the rest;
        # large plans split): each completion closes the latest open intent of its run and
        # target, or the one it names (``intent_seq``, written by recovery).
        open_intents: dict[tuple[Any, Any], list[Any]] = {}
        for r in rows:
            key = (r["run_id"], r["target"])
            if r["kind"] == EventKind.APPLY_INTENT.value:
                open_intents.setdefault(key, []).append(r)
                continue
            pending = open_intents.get(key, [])
            named = json.loads(r["content"]).get("after", {}).get("intent_seq")
            if named is not None:
                pending[:] = [i for i in pending if int(i["seq"]) != int(named)]
            elif pending:
                pending.pop()
        left = sorted(int(r["seq"]) for rs in open_intents.values() for r in rs)
        if not left:
            return []
        out: list[AuditRow] = []
        with self.engine.connect() as conn:
            for at in range(0, len(left), 500):  # bounded parameter lists
                chunk = select(audit).where(audit.c.seq.in_(left[at : at + 500])).order_by(audit.c.seq)
                for r in conn.execute(chunk).mappings():
                    out.append(AuditRow(int(r["seq"]), json.loads(r["content"]), r["prev_hash"], r["hash"]))
        return out


def _head(conn: Connection) -> tuple[int, str]:
    head = conn.execute(select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)).first()
    return (int(head[0]), str(head[1])) if head else (0, GENESIS)


def _stored(r: Any) -> StoredCheckpoint:
    return StoredCheckpoint(Checkpoint.from_json(json.loads(r["payload"])), r["signature"], r["public_key"])
