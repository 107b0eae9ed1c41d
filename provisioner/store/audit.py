"""The audit chain and its checkpoints in the state store (SQLAlchemy).

Append-only: this module never updates or deletes an audit or checkpoint row.
On PostgreSQL the schema setup also installs an always-enabled trigger that
refuses UPDATE, DELETE and TRUNCATE on both tables (see ``docs/audit.md``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from provisioner.core.audit import GENESIS, AuditEvent, Checkpoint, EventKind, chain_hash
from provisioner.errors import TemporaryError

audit_metadata = MetaData()

_SEQ = BigInteger().with_variant(Integer, "sqlite")

audit = Table(
    "provisioner_audit",
    audit_metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=False),
    Column("run_id", String(36), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("kind", String(32), nullable=False, index=True),
    Column("actor", String(200), nullable=False),
    Column("target", String(200), index=True),
    Column("role", String(200), index=True),
    Column("content", Text, nullable=False),
    Column("prev_hash", String(80), nullable=False),
    Column("hash", String(80), nullable=False, unique=True),
)

checkpoints = Table(
    "provisioner_audit_checkpoints",
    audit_metadata,
    Column("id", _SEQ, primary_key=True, autoincrement=True),
    Column("head_seq", _SEQ, nullable=False),
    Column("payload", Text, nullable=False),
    Column("signature", String(200), nullable=False),
    Column("public_key", String(200), nullable=False),
)

_PG_GUARD = """
CREATE OR REPLACE FUNCTION provisioner_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
    MESSAGE = 'provisioner audit tables are insert-only: ' || TG_OP || ' on ' || TG_TABLE_NAME || ' refused';
END $$
"""


class AuditUnavailable(TemporaryError):
    """The audit trail cannot be read or written."""


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    content: dict[str, Any]
    prev_hash: str
    hash: str
    column_mismatch: str | None = None


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    checkpoint: Checkpoint
    signature: str
    """hex Ed25519 signature of ``checkpoint.message()``"""
    public_key: str
    """hex raw public key of the signer (informational: trust comes from the configured key)"""

    def to_json(self) -> dict[str, Any]:
        return {**self.checkpoint.payload(), "signature": self.signature, "public_key": self.public_key}


@dataclass(frozen=True, slots=True)
class AuditFilter:
    user: str | None = None
    """the role the change was made to (a login role)"""
    role: str | None = None
    """a granted / revoked group role, or the role itself"""
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    run_id: str | None = None
    kinds: tuple[str, ...] = ()


def install_schema(engine: Engine) -> None:
    audit_metadata.create_all(engine)
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        for table in ("provisioner_audit", "provisioner_audit_checkpoints"):
            have = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = %(t)s::regclass "
                "AND tgname IN ('provisioner_audit_no_change', 'provisioner_audit_no_truncate')",
                {"t": table},
            ).scalar_one()
            if have == 2:
                continue
            conn.exec_driver_sql(_PG_GUARD)
            for name, when in (
                ("provisioner_audit_no_change", "BEFORE UPDATE OR DELETE ON {t} FOR EACH ROW"),
                ("provisioner_audit_no_truncate", "BEFORE TRUNCATE ON {t} FOR EACH STATEMENT"),
            ):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
                conn.exec_driver_sql(
                    f"CREATE TRIGGER {name} {when.format(t=table)} EXECUTE FUNCTION provisioner_audit_refuse()"
                )
                conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")


def _parse_at(value: str) -> datetime:
    at = datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _row(seq: int, content: dict[str, Any], prev: str, digest: str) -> dict[str, Any]:
    return {
        "seq": seq,
        "run_id": content["run_id"],
        "at": _parse_at(content["at"]),
        "kind": content["kind"],
        "actor": content["actor"],
        "target": content["target"],
        "role": content["role"],
        "content": json.dumps(content, sort_keys=True, ensure_ascii=False, default=str),
        "prev_hash": prev,
        "hash": digest,
    }


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


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------ writing
    def append(self, events: Sequence[AuditEvent]) -> list[AuditRow]:
        """Chain and insert ``events`` atomically after the current head."""
        return self.append_contents([e.content() for e in events])

    def append_contents(self, contents: Iterable[dict[str, Any]], chunk: int = 5000) -> list[AuditRow]:
        contents = list(contents)
        if not contents:
            return []
        try:
            with self.engine.begin() as conn:
                seq, prev = self._lock_head(conn)
                rows: list[AuditRow] = []
                for content in contents:
                    seq += 1
                    digest = chain_hash(seq, prev, content)
                    rows.append(AuditRow(seq, content, prev, digest))
                    prev = digest
                for i in range(0, len(rows), chunk):
                    conn.execute(
                        insert(audit), [_row(r.seq, r.content, r.prev_hash, r.hash) for r in rows[i : i + chunk]]
                    )
            return rows
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"cannot append to the audit trail: {exc}") from exc

    @staticmethod
    def _lock_head(conn: Connection) -> tuple[int, str]:
        if conn.dialect.name == "postgresql":
            # an advisory lock needs no privilege beyond INSERT/SELECT (LOCK TABLE would need UPDATE)
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('provisioner_audit'))")
        head = conn.execute(select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)).first()
        return (int(head[0]), str(head[1])) if head else (0, GENESIS)

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
            q = _where(q, flt) if flt else q
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
                if flt is None or _matches(row, flt):
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
            r = conn.execute(select(checkpoints).order_by(checkpoints.c.id.desc()).limit(1)).mappings().first()
        if r is None:
            return None
        return StoredCheckpoint(Checkpoint.from_json(json.loads(r["payload"])), r["signature"], r["public_key"])

    # ------------------------------------------------------------ queries for runs and alerts
    def contents_since(self, since: datetime, kinds: Iterable[EventKind]) -> Iterator[dict[str, Any]]:
        q = select(audit.c.content).where(audit.c.at >= since, audit.c.kind.in_([k.value for k in kinds]))
        with self.engine.connect() as conn:
            for (text,) in conn.execute(q.order_by(audit.c.seq)):
                yield json.loads(text)

    def unresolved_intents(self, after_seq: int) -> list[AuditRow]:
        """APPLY_INTENT records after ``after_seq`` without an APPLY_COMPLETED of the same run and target."""
        kinds = (EventKind.APPLY_INTENT.value, EventKind.APPLY_COMPLETED.value)
        q = select(audit).where(audit.c.seq > after_seq, audit.c.kind.in_(kinds)).order_by(audit.c.seq)
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
        left = sorted((r for rs in open_intents.values() for r in rs), key=lambda r: int(r["seq"]))
        return [AuditRow(int(r["seq"]), json.loads(r["content"]), r["prev_hash"], r["hash"]) for r in left]


def _where(q: Any, f: AuditFilter) -> Any:
    if f.user:
        q = q.where(audit.c.role == f.user)
    if f.target:
        q = q.where(audit.c.target == f.target)
    if f.since:
        q = q.where(audit.c.at >= f.since)
    if f.until:
        q = q.where(audit.c.at <= f.until)
    if f.run_id:
        q = q.where(audit.c.run_id == f.run_id)
    if f.kinds:
        q = q.where(audit.c.kind.in_(f.kinds))
    return q


def _matches(row: AuditRow, f: AuditFilter) -> bool:
    if not f.role:
        return True
    change = row.content.get("change") or {}
    params = change.get("params") or {} if isinstance(change, dict) else {}
    return f.role in (row.content.get("role"), params.get("group"))
