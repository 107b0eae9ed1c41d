"""The state store (SQLAlchemy): run history, the audit chain, key/value state.

SQLite by default, PostgreSQL in production.  The audit table is append-only
by contract: this module never updates or deletes audit rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
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

from provisioner.core.audit import AuditEvent
from provisioner.errors import TemporaryError
from provisioner.store.audit import AuditLog, AuditRow, audit, install_schema

__all__ = ["AuditRow", "StateStore", "StoreUnavailable", "audit"]

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

kv = Table(
    "provisioner_state",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class StoreUnavailable(TemporaryError):
    """The state store cannot be reached or written."""


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
        connect_args: dict[str, int] = {}
        if parsed.drivername.startswith("postgresql"):
            # TCP keepalives: a vanished server is noticed in about a minute (docs/daemon.md)
            connect_args = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
        try:
            self.engine: Engine = create_engine(parsed, future=True, connect_args=connect_args)
            metadata.create_all(self.engine)
            install_schema(self.engine)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                f"state store {parsed.render_as_string(hide_password=True)}: {exc}"
            ) from exc

        self.audit = AuditLog(self.engine)

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
        """Chain and insert ``events`` atomically after the current head (see store/audit.py)."""
        return self.audit.append(events)

    def iter_audit(self, run_id: str | None = None, batch: int = 5000) -> Iterator[AuditRow]:
        from provisioner.store.audit import AuditFilter

        return self.audit.iter_rows(AuditFilter(run_id=run_id) if run_id else None, batch)

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
