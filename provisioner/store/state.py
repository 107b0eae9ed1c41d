"""The state store (SQLAlchemy): run history, the audit chain, key/value state.

SQLite by default, PostgreSQL in production.  The audit table is append-only
by contract: this module never updates or deletes audit rows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from provisioner.core.audit import GENESIS, AuditEvent, chain_hash
from provisioner.errors import TemporaryError

metadata = MetaData()

runs = Table(
    "provisioner_runs",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("trigger", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("outcome", String(32)),
    Column("summary", JSON),
    Column("error", Text),
)

audit = Table(
    "provisioner_audit",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("run_id", String(36), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("target", String(200), index=True),
    Column("role", String(200), index=True),
    Column("content", Text, nullable=False),
    Column("prev_hash", String(80), nullable=False),
    Column("hash", String(80), nullable=False, unique=True),
)

kv = Table(
    "provisioner_state",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class StoreUnavailable(TemporaryError):
    """The state store cannot be reached or written."""


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    content: dict[str, Any]
    prev_hash: str
    hash: str


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class StateStore:
    def __init__(self, url: str, base_dir: Path | None = None) -> None:
        parsed = make_url(url)
        if parsed.drivername.startswith("sqlite") and parsed.database and parsed.database != ":memory:":
            db = Path(parsed.database)
            if not db.is_absolute() and base_dir is not None:
                db = base_dir / db
            db.parent.mkdir(parents=True, exist_ok=True)
            parsed = parsed.set(database=str(db))
        elif parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            self.engine: Engine = create_engine(parsed, future=True)
            metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                f"state store {parsed.render_as_string(hide_password=True)}: {exc}"
            ) from exc

    def close(self) -> None:
        self.engine.dispose()

    # ---------------------------------------------------------------- runs
    def start_run(self, trigger: str, actor: str, mode: str, run_id: str | None = None) -> str:
        rid = run_id or str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(
                insert(runs).values(
                    run_id=rid, started_at=datetime.now(UTC), trigger=trigger, actor=actor, mode=mode
                )
            )
        return rid

    def finish_run(
        self, run_id: str, outcome: str, summary: dict[str, Any], error: str | None = None
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.run_id == run_id)
                .values(finished_at=datetime.now(UTC), outcome=outcome, summary=summary, error=error)
            )

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(runs).order_by(runs.c.started_at.desc()).limit(limit)).mappings()
            return [dict(r) for r in rows]

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.run_id == run_id)).mappings().first()
            return dict(row) if row else None

    # ---------------------------------------------------------------- audit
    def append(self, events: Sequence[AuditEvent]) -> list[AuditRow]:
        """Chain and insert ``events`` atomically after the current head."""
        if not events:
            return []
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("LOCK TABLE provisioner_audit IN EXCLUSIVE MODE")
                head = conn.execute(
                    select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
                ).first()
                seq, prev = (head[0], head[1]) if head else (0, GENESIS)
                rows = []
                for event in events:
                    seq += 1
                    content = event.content()
                    digest = chain_hash(seq, prev, content)
                    rows.append(AuditRow(seq, content, prev, digest))
                    prev = digest
                conn.execute(insert(audit), [self._row(r) for r in rows])
            return rows
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"cannot append to the audit trail: {exc}") from exc

    @staticmethod
    def _row(r: AuditRow) -> dict[str, Any]:
        c = r.content
        return {
            "seq": r.seq,
            "run_id": c["run_id"],
            "at": datetime.fromisoformat(c["at"]),
            "kind": c["kind"],
            "actor": c["actor"],
            "target": c["target"],
            "role": c["role"],
            "content": json.dumps(c, sort_keys=True, ensure_ascii=False, default=str),
            "prev_hash": r.prev_hash,
            "hash": r.hash,
        }

    def iter_audit(self, run_id: str | None = None, batch: int = 5000) -> Iterator[AuditRow]:
        last = 0
        while True:
            q = select(audit).where(audit.c.seq > last).order_by(audit.c.seq).limit(batch)
            if run_id:
                q = q.where(audit.c.run_id == run_id)
            with self.engine.connect() as conn:
                rows = list(conn.execute(q).mappings())
            if not rows:
                return
            for r in rows:
                yield AuditRow(int(r["seq"]), json.loads(r["content"]), r["prev_hash"], r["hash"])
            last = int(rows[-1]["seq"])

    # ---------------------------------------------------------------- key/value
    def get(self, key: str, default: Any = None) -> Any:
        with self.engine.connect() as conn:
            row = conn.execute(select(kv.c.value).where(kv.c.key == key)).first()
            return row[0] if row else default

    def put(self, key: str, value: Any) -> None:
        self.put_many([(key, value)])

    def put_many(self, items: Iterable[tuple[str, Any]]) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for key, value in items:
                done = conn.execute(update(kv).where(kv.c.key == key).values(value=value, updated_at=now))
                if done.rowcount == 0:
                    conn.execute(insert(kv).values(key=key, value=value, updated_at=now))
